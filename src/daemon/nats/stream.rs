//! The JetStream stream the sink publishes to: created on start if missing, otherwise checked
//! against what the daemon needs (a mismatch is named by stream and field; the daemon exits 2).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// What the daemon needs from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamSpec {
    /// Stream name.
    pub name: String,
    /// `<prefix>.>`.
    pub subject: String,
    /// De-duplication window.
    pub duplicate_window: Duration,
    /// Age limit of a stream we create (zero: none).
    pub max_age: Duration,
}

/// A stream that exists but does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream}: field {field} is {found}, expected {expected}")]
pub(crate) struct Mismatch {
    /// Stream name.
    pub stream: String,
    /// The stream configuration field (JetStream's JSON name).
    pub field: &'static str,
    /// Its value.
    pub found: String,
    /// What the daemon needs.
    pub expected: String,
}

/// Why the stream could not be made ready.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    /// It exists with another configuration.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// The server did not answer or refused.
    #[error("cannot create or read stream {stream}: {reason}")]
    Server {
        /// Stream name.
        stream: String,
        /// The server's or client's error.
        reason: String,
    },
}

impl StreamSpec {
    /// The configuration of a stream we create: file storage, limits retention (age), our
    /// subjects and de-duplication window.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subject.clone()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// Checks an existing stream. Only what breaks the promises is checked: storage on disk,
    /// our subjects captured, a de-duplication window (so N daemons store each tx once), and
    /// retention that keeps messages for consumers (a work-queue stream would delete them on
    /// the first ack). Limits (age, size) are the operator's choice.
    pub fn check(&self, found: &stream::Config) -> Result<(), Mismatch> {
        let mismatch = |field, found: String, expected: String| {
            Err(Mismatch { stream: self.name.clone(), field, found, expected })
        };
        if found.storage != stream::StorageType::File {
            return mismatch("storage", format!("{:?}", found.storage).to_lowercase(), "file".into());
        }
        if !found.subjects.iter().any(|s| s == &self.subject || s == ">") {
            return mismatch(
                "subjects",
                format!("{:?}", found.subjects),
                format!("to include {:?}", self.subject),
            );
        }
        if found.retention != stream::RetentionPolicy::Limits {
            return mismatch("retention", format!("{:?}", found.retention).to_lowercase(), "limits".into());
        }
        if found.duplicate_window < self.duplicate_window {
            return mismatch(
                "duplicate_window",
                format!("{}s", found.duplicate_window.as_secs_f64()),
                format!("at least {}s", self.duplicate_window.as_secs()),
            );
        }
        if found.sealed {
            return mismatch("sealed", "true".into(), "false".into());
        }
        Ok(())
    }

    /// Creates the stream, or checks the one that exists.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<(), StreamError> {
        let server = |e: &dyn std::fmt::Display| StreamError::Server {
            stream: self.name.clone(),
            reason: e.to_string(),
        };
        match js.get_stream(&self.name).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| server(&e))?;
                self.check(&info.config)?;
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                js.create_stream(self.config()).await.map_err(|e| server(&e))?;
                Ok(())
            }
            Err(e) => Err(server(&e)),
        }
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_stream_passes_and_each_broken_promise_is_named() {
        let spec = StreamSpec {
            name: "BTCPEER".into(),
            subject: "btcpeer.regtest.>".into(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(3600),
        };
        spec.check(&spec.config()).unwrap();
        let wider = stream::Config { subjects: vec!["other.>".into(), ">".into()], ..spec.config() };
        spec.check(&wider).unwrap();
        let cases: [(&str, stream::Config); 4] = [
            ("storage", stream::Config { storage: stream::StorageType::Memory, ..spec.config() }),
            ("subjects", stream::Config { subjects: vec!["btcpeer.mainnet.>".into()], ..spec.config() }),
            ("retention", stream::Config { retention: stream::RetentionPolicy::WorkQueue, ..spec.config() }),
            (
                "duplicate_window",
                stream::Config { duplicate_window: Duration::from_secs(5), ..spec.config() },
            ),
        ];
        for (field, config) in cases {
            let e = spec.check(&config).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.to_string().starts_with("stream BTCPEER: field"), "{e}");
        }
    }
}
