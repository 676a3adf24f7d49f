//! Daemon runtime.
