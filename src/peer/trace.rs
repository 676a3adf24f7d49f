//! Per-message logs of one connection, as btcd's peer writes them (`peer/peer.go` `logMessage`
//! and `peer/log.go` `messageSummary`): at debug, each message sent and received with its
//! command and wire length; at trace, the same line also carries a summary of the decoded
//! message (every field of `version`) and a hex dump of the v1 frame, bounded to its first
//! [`HEX_DUMP_LIMIT`] bytes so a block or a 50,000-entry `inv` cannot flood the log.
//!
//! Nothing is formatted, allocated or re-serialized unless trace is enabled for [`TARGET`]: the
//! summary and the dump are `Display` wrappers over borrowed data, evaluated by the subscriber.

use std::fmt;

use tracing::Level;

use crate::wire::{self, Inventory, Message};

/// The log target of both lines (the peer actor's, so existing filters keep working).
pub(crate) const TARGET: &str = "btcpeer::peer::actor";

/// Bytes of a frame shown in a trace line; the line always says the whole length.
pub(crate) const HEX_DUMP_LIMIT: usize = 1024;

/// Which way a message went.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Send,
    Recv,
}

/// True when per-message trace lines are on (their frame dumps cost an encoding on v2).
pub(crate) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, Level::TRACE)
}

/// Logs one message: `frame` is its whole v1 frame (header and payload), `msg` the decoded
/// message when there is one (a received block stays raw: its summary comes from the frame).
pub(crate) fn message(dir: Direction, command: &'static str, frame: &[u8], msg: Option<&Message>) {
    let len = frame.len();
    if tracing::enabled!(target: TARGET, Level::TRACE) {
        let summary = Summary { command, frame, msg };
        let hex = HexDump(frame);
        match dir {
            Direction::Send => tracing::trace!(target: TARGET, command, len, %summary, frame = %hex, "send"),
            Direction::Recv => tracing::trace!(target: TARGET, command, len, %summary, frame = %hex, "recv"),
        }
    } else {
        match dir {
            Direction::Send => tracing::debug!(target: TARGET, command, len, "send"),
            Direction::Recv => tracing::debug!(target: TARGET, command, len, "recv"),
        }
    }
}

/// Lower-case hex of the first [`HEX_DUMP_LIMIT`] bytes, then how many bytes were left out.
pub(crate) struct HexDump<'a>(pub(crate) &'a [u8]);

impl fmt::Display for HexDump<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let shown = &self.0[..self.0.len().min(HEX_DUMP_LIMIT)];
        let mut buf = [0u8; 128];
        for chunk in shown.chunks(buf.len() / 2) {
            for (i, b) in chunk.iter().enumerate() {
                buf[2 * i] = DIGITS[usize::from(b >> 4)];
                buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
            }
            // Only ASCII hex digits were written.
            f.write_str(std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?)?;
        }
        let rest = self.0.len() - shown.len();
        if rest > 0 {
            write!(f, "... ({rest} more of {} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// A one-line summary of a message's fields, in the spirit of btcd's `messageSummary`.
struct Summary<'a> {
    command: &'static str,
    frame: &'a [u8],
    msg: Option<&'a Message>,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(msg) = self.msg else {
            // A received block is not parsed for the log; its header is enough.
            let header = self.frame.get(wire::limits::HEADER_SIZE..wire::limits::HEADER_SIZE + 80);
            return match header
                .and_then(|h| bitcoin::consensus::deserialize::<bitcoin::block::Header>(h).ok())
            {
                Some(h) if self.command == "block" => {
                    write!(f, "hash={} prev={}", h.block_hash(), h.prev_blockhash)
                }
                _ => Ok(()),
            };
        };
        match msg {
            Message::Version(v) => write!(
                f,
                "protocol={} services={:#x} user_agent={} start_height={} relay={} nonce={:#018x} \
                 timestamp={} receiver={} sender={}",
                v.version,
                v.services.to_u64(),
                Text(&v.user_agent),
                v.start_height,
                v.relay,
                v.nonce,
                v.timestamp,
                AddrField(&v.receiver),
                AddrField(&v.sender),
            ),
            Message::SendCmpct(s) => write!(f, "announce={} version={}", s.send_compact, s.version),
            Message::FeeFilter(rate) => write!(f, "feerate={rate} sat/kvB"),
            Message::Ping(nonce) | Message::Pong(nonce) => write!(f, "nonce={nonce:#018x}"),
            Message::Inv(items) | Message::GetData(items) | Message::NotFound(items) => inventory(f, items),
            Message::Addr(list) => write!(f, "count={}", list.len()),
            Message::AddrV2(list) => write!(f, "count={}", list.len()),
            Message::Headers(headers) => match (headers.first(), headers.last()) {
                (Some(first), Some(last)) => write!(
                    f,
                    "count={} first={} last={}",
                    headers.len(),
                    first.block_hash(),
                    last.block_hash()
                ),
                _ => f.write_str("count=0"),
            },
            Message::GetHeaders(m) => {
                locator(f, m.version, m.locator_hashes.first(), m.locator_hashes.len(), &m.stop_hash)
            }
            Message::GetBlocks(m) => {
                locator(f, m.version, m.locator_hashes.first(), m.locator_hashes.len(), &m.stop_hash)
            }
            Message::Tx(tx) => write!(
                f,
                "txid={} wtxid={} inputs={} outputs={} locktime={}",
                tx.compute_txid(),
                tx.compute_wtxid(),
                tx.input.len(),
                tx.output.len(),
                tx.lock_time
            ),
            Message::Block(b) => write!(f, "hash={} txs={}", b.block_hash(), b.txdata.len()),
            Message::Reject(r) => write!(
                f,
                "message={:?} code={:?} reason={} hash={}",
                r.message.as_ref(),
                r.ccode,
                Text(&r.reason),
                r.hash
            ),
            Message::Unknown { command, payload } => {
                write!(f, "command={:?} payload_len={}", command.as_ref(), payload.len())
            }
            // verack, sendheaders, wtxidrelay, sendaddrv2, getaddr, mempool, ...: the command says
            // it all; other messages are in the dump.
            _ => Ok(()),
        }
    }
}

/// Characters of a peer's string shown (btcd's `maxRejectReasonLen` is 250; Core's user agent
/// limit is 256): a `reject` reason or a user agent can be megabytes.
const TEXT_LIMIT: usize = 256;

/// A peer's string, quoted and escaped, cut after [`TEXT_LIMIT`] characters.
struct Text<'a>(&'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(TEXT_LIMIT) {
            Some((end, _)) => write!(f, "{:?}...", &self.0[..end]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// A `version` address as `ip:port` (`?` for an onion-cat or otherwise unmappable one).
struct AddrField<'a>(&'a wire::Address);

impl fmt::Display for AddrField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.socket_addr() {
            Ok(addr) => write!(f, "{addr}"),
            Err(_) => f.write_str("?"),
        }
    }
}

fn inventory(f: &mut fmt::Formatter<'_>, items: &[Inventory]) -> fmt::Result {
    write!(f, "count={}", items.len())?;
    if let Some(first) = items.first() {
        write!(f, " first={first:?}")?;
    }
    Ok(())
}

fn locator(
    f: &mut fmt::Formatter<'_>,
    version: u32,
    first: Option<&bitcoin::BlockHash>,
    len: usize,
    stop: &bitcoin::BlockHash,
) -> fmt::Result {
    write!(f, "version={version} locator_len={len}")?;
    if let Some(first) = first {
        write!(f, " locator_first={first}")?;
    }
    write!(f, " stop={stop}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::version::{build, LocalVersion};
    use crate::wire::Codec;

    #[test]
    fn hex_dump_is_bounded_and_says_the_length() {
        assert_eq!(HexDump(&[0xf9, 0xbe, 0x0a]).to_string(), "f9be0a");
        let big = vec![0xab; HEX_DUMP_LIMIT + 10];
        let dump = HexDump(&big).to_string();
        assert!(dump.starts_with(&"ab".repeat(HEX_DUMP_LIMIT)));
        assert!(dump.ends_with(&format!("... (10 more of {} bytes)", HEX_DUMP_LIMIT + 10)), "{dump}");
        assert_eq!(dump.len(), 2 * HEX_DUMP_LIMIT + "... (10 more of 1034 bytes)".len());
    }

    #[test]
    fn version_summary_has_every_handshake_field() {
        let local = LocalVersion {
            version: 70016,
            relay: true,
            nonce: 0x1234,
            start_height: 7,
            ..Default::default()
        };
        let msg = Message::Version(build(&local, None));
        let frame = Codec::new(crate::Network::Regtest.magic()).encode_to_bytes(&msg);
        let s = Summary { command: "version", frame: &frame, msg: Some(&msg) }.to_string();
        for field in
            ["protocol=70016", "services=0x0", "start_height=7", "relay=true", "nonce=0x0000000000001234"]
        {
            assert!(s.contains(field), "{field} missing in {s}");
        }
        assert!(s.contains(&format!("user_agent={:?}", crate::wire::version::user_agent(None))), "{s}");
    }

    /// Records the field names of every event, enabling levels up to `max`.
    struct Fields {
        max: Level,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<&'static str>>>>,
    }

    struct Names(Vec<&'static str>);

    impl tracing::field::Visit for Names {
        fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn fmt::Debug) {
            self.0.push(field.name());
        }
    }

    impl tracing::Subscriber for Fields {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() <= self.max
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::from_level(self.max))
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut names = Names(Vec::new());
            event.record(&mut names);
            self.seen.lock().expect("not poisoned").push(names.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    fn fields_logged_at(max: Level) -> Vec<Vec<&'static str>> {
        let seen = std::sync::Arc::default();
        let subscriber = Fields { max, seen: std::sync::Arc::clone(&seen) };
        let frame = Codec::new(crate::Network::Regtest.magic()).encode_to_bytes(&Message::Ping(1));
        tracing::subscriber::with_default(subscriber, || {
            message(Direction::Send, "ping", &frame, Some(&Message::Ping(1)));
            message(Direction::Recv, "ping", &frame, Some(&Message::Ping(1)));
        });
        let seen = seen.lock().expect("not poisoned").clone();
        seen
    }

    #[test]
    fn summary_and_dump_only_when_trace_is_on() {
        let debug = fields_logged_at(Level::DEBUG);
        assert_eq!(debug, vec![vec!["message", "command", "len"]; 2]);
        let trace = fields_logged_at(Level::TRACE);
        assert_eq!(trace, vec![vec!["message", "command", "len", "summary", "frame"]; 2]);
        assert!(fields_logged_at(Level::INFO).is_empty());
    }

    #[test]
    fn peer_strings_are_escaped_and_bounded() {
        assert_eq!(Text("/a\n/").to_string(), "\"/a\\n/\"");
        let long = "x".repeat(TEXT_LIMIT + 1000);
        assert_eq!(Text(&long).to_string(), format!("{:?}...", "x".repeat(TEXT_LIMIT)));
    }

    #[test]
    fn received_block_summary_comes_from_the_raw_header() {
        let block = bitcoin::constants::genesis_block(bitcoin::Network::Regtest);
        let frame =
            Codec::new(crate::Network::Regtest.magic()).encode_to_bytes(&Message::Block(block.clone()));
        let s = Summary { command: "block", frame: &frame, msg: None }.to_string();
        assert!(s.starts_with(&format!("hash={}", block.block_hash())), "{s}");
    }
}
