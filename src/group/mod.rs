//! Keeps peers connected.
