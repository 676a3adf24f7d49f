//! The outbound path: a byte budget that bounds what may wait for the socket, and the writer task
//! that drains frames in order and confirms each one once written.
//!
//! actix's `FramedWrite` has no backpressure on tokio streams, so we keep our own: frames are
//! encoded by the actor, reserved against the budget, written by one task, and released when the
//! kernel accepted them. A peer that stops reading exhausts the budget instead of our memory.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

pub use super::machine::SendRefused;
use super::PeerState;

/// Default cap on bytes waiting for the socket: Core's send buffer (`DEFAULT_MAXSENDBUFFER` ×
/// 1000 = 1 MB) plus room for one maximum-size message.
pub const DEFAULT_MAX_SEND_QUEUE_BYTES: usize = 5_000_000;
/// How long the writer may spend flushing and closing after a disconnect.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a message was not (or could not be confirmed as) sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Messages can only be sent once the handshake is done.
    #[error("peer is not ready (state {state:?})")]
    NotReady {
        /// The current state.
        state: PeerState,
    },
    /// The outbound budget is exhausted.
    #[error("send queue full: {queued} bytes queued, {len} more would exceed {cap}")]
    QueueFull {
        /// Bytes waiting.
        queued: usize,
        /// Size of the refused frame.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The message would break the protocol with this peer (Core would disconnect us).
    #[error("refused: {0}")]
    Refused(#[from] SendRefused),
    /// The connection closed before the bytes were written.
    #[error("peer disconnected before the message was written")]
    Disconnected,
}

/// Byte accounting of frames handed to the writer and not yet written.
#[derive(Debug, Clone)]
pub struct OutboundBudget {
    queued: usize,
    cap: usize,
}

impl OutboundBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        OutboundBudget { queued: 0, cap }
    }

    /// Reserves room for a frame of `len` bytes. A frame larger than the whole cap is accepted
    /// only into an empty queue, so one maximum-size message can always go out.
    pub fn try_reserve(&mut self, len: usize) -> Result<(), SendError> {
        let fits = self.queued.checked_add(len).is_some_and(|total| total <= self.cap);
        if fits || self.queued == 0 {
            self.queued += len;
            Ok(())
        } else {
            Err(SendError::QueueFull { queued: self.queued, len, cap: self.cap })
        }
    }

    /// A frame of `len` bytes was written.
    pub fn release(&mut self, len: usize) {
        self.queued = self.queued.saturating_sub(len);
    }

    /// Bytes waiting.
    pub fn queued(&self) -> usize {
        self.queued
    }
}

/// Commands for the writer task.
#[derive(Debug)]
pub enum WriteCmd {
    /// Write this frame, then report it and answer `done`.
    Frame {
        /// The encoded frame.
        bytes: Bytes,
        /// Its command, for statistics.
        command: &'static str,
        /// Confirmation for the sender, if it waits.
        done: Option<oneshot::Sender<Result<(), SendError>>>,
    },
    /// Transport bytes that are no message (the BIP324 handshake): written in order, not
    /// counted as a message nor against the budget (a few KB once per connection).
    Raw(Bytes),
    /// Flush what is queued before this, then close the write side.
    Close,
}

/// What the writer reports back.
#[derive(Debug)]
pub enum WriteEvent {
    /// A frame went out.
    Written {
        /// Command name.
        command: &'static str,
        /// Frame size.
        len: usize,
    },
    /// The socket failed; nothing more will be written.
    Failed {
        /// The OS error.
        error: String,
        /// Which of the connection's writers (0 from `run_writer`; the owner numbers them so
        /// a report from a writer it already replaced, the v2 attempt's, is recognised).
        writer: u64,
    },
}

/// Writes frames in order until `Close`, the channel closes, or the socket fails.
pub async fn run_writer<W, F>(mut writer: W, mut rx: mpsc::UnboundedReceiver<WriteCmd>, mut report: F)
where
    W: AsyncWrite + Unpin,
    F: FnMut(WriteEvent),
{
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriteCmd::Frame { bytes, command, done } => match writer.write_all(&bytes).await {
                Ok(()) => {
                    report(WriteEvent::Written { command, len: bytes.len() });
                    if let Some(done) = done {
                        let _ = done.send(Ok(()));
                    }
                }
                Err(e) => {
                    report(WriteEvent::Failed { error: e.to_string(), writer: 0 });
                    if let Some(done) = done {
                        let _ = done.send(Err(SendError::Disconnected));
                    }
                    break;
                }
            },
            WriteCmd::Raw(bytes) => {
                if let Err(e) = writer.write_all(&bytes).await {
                    report(WriteEvent::Failed { error: e.to_string(), writer: 0 });
                    break;
                }
            }
            WriteCmd::Close => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
                break;
            }
        }
    }
    // Anything still queued will never be written: tell the waiting senders.
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        if let WriteCmd::Frame { done: Some(done), .. } = cmd {
            let _ = done.send(Err(SendError::Disconnected));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_beyond_cap_and_frees_on_release() {
        let mut b = OutboundBudget::new(100);
        b.try_reserve(60).unwrap();
        assert_eq!(b.try_reserve(50), Err(SendError::QueueFull { queued: 60, len: 50, cap: 100 }));
        b.try_reserve(40).unwrap();
        b.release(60);
        b.try_reserve(50).unwrap();
        assert_eq!(b.queued(), 90);
    }

    #[test]
    fn one_oversized_frame_fits_an_empty_queue() {
        let mut b = OutboundBudget::new(10);
        b.try_reserve(1000).unwrap();
        assert!(b.try_reserve(1).is_err());
        b.release(1000);
        assert_eq!(b.queued(), 0);
    }

    #[tokio::test]
    async fn writer_confirms_in_order_and_reports_failures_to_waiters() {
        let (client, mut server) = tokio::io::duplex(64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (d1, r1) = oneshot::channel();
        tx.send(WriteCmd::Frame { bytes: Bytes::from_static(b"hello"), command: "ping", done: Some(d1) })
            .unwrap();
        tx.send(WriteCmd::Close).unwrap();
        let (d2, r2) = oneshot::channel();
        tx.send(WriteCmd::Frame { bytes: Bytes::from_static(b"late"), command: "ping", done: Some(d2) })
            .unwrap();
        let mut events = Vec::new();
        run_writer(client, rx, |e| events.push(format!("{e:?}"))).await;
        assert_eq!(r1.await.unwrap(), Ok(()));
        assert_eq!(r2.await.unwrap(), Err(SendError::Disconnected));
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut server, &mut got).await.unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(events, ["Written { command: \"ping\", len: 5 }"]);
    }
}
