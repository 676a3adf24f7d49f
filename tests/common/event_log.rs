//! Reading btcpeerd's JSON-lines event log (`--events FILE`) while the daemon writes it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long [`wait_for_event`] waits: a deadline for failures, not a pace.
pub const EVENT_WAIT: Duration = Duration::from_secs(60);

/// The complete lines of the log, parsed. A line the daemon is still writing (no newline yet)
/// is left for the next read; a complete line that is not JSON fails the test.
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}")))
        .collect()
}

/// Polls the log until an event matches `pred` (at most [`EVENT_WAIT`]), and returns it.
pub fn wait_for_event(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    super::wait_until_blocking(EVENT_WAIT, what, || {
        found = read_events(path).into_iter().find(|e| pred(e));
        found.is_some()
    });
    found.unwrap()
}
