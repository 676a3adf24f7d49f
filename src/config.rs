//! Settings.
/// Configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError { /// key
 pub key: String, /// problem
 pub problem: String }
