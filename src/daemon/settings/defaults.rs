//! The built-in defaults: `config/default.toml`, cut of its comments at compile time.

/// `config/default.toml` as shipped: documented, nine tenths of it comments.
const DEFAULT_TOML_DOCUMENTED: &str = include_str!("../../../config/default.toml");

/// The built-in defaults the daemon parses on every start: `config/default.toml` without its
/// comment lines and blank lines, cut at compile time (about 0.1 ms less before the first dial,
/// `scripts/bench-startup`). Only whole-line comments go, which is safe while the file has no
/// multi-line strings (checked below).
pub(super) const DEFAULT_TOML: &str = match std::str::from_utf8(&DEFAULT_TOML_BYTES) {
    Ok(s) => s,
    Err(_) => panic!("config/default.toml lost its UTF-8 when stripped"),
};
const DEFAULT_TOML_BYTES: [u8; strip_comment_lines(DEFAULT_TOML_DOCUMENTED.as_bytes(), None)] = {
    let mut out = [0u8; strip_comment_lines(DEFAULT_TOML_DOCUMENTED.as_bytes(), None)];
    strip_comment_lines(DEFAULT_TOML_DOCUMENTED.as_bytes(), Some(&mut out));
    out
};

/// Copies the lines of `toml` that are neither blank nor a `#` comment into `out` (when given)
/// and returns the length they take. Refuses (at compile time) a file with a multi-line
/// string, where a line starting with `#` would be content.
const fn strip_comment_lines(toml: &[u8], mut out: Option<&mut [u8]>) -> usize {
    let (mut i, mut len) = (0, 0);
    while i < toml.len() {
        let start = i;
        while i < toml.len() && toml[i] != b'\n' {
            if i + 2 < toml.len()
                && (toml[i] == b'"' || toml[i] == b'\'')
                && toml[i + 1] == toml[i]
                && toml[i + 2] == toml[i]
            {
                panic!("config/default.toml has a multi-line string: strip_comment_lines cannot cut it");
            }
            i += 1;
        }
        let end = if i < toml.len() { i + 1 } else { i };
        let mut first = start;
        while first < i && (toml[first] == b' ' || toml[first] == b'\t' || toml[first] == b'\r') {
            first += 1;
        }
        if first < i && toml[first] != b'#' {
            if let Some(out) = &mut out {
                let mut k = start;
                while k < end {
                    out[len + k - start] = toml[k];
                    k += 1;
                }
            }
            len += end - start;
        }
        i = end;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::{Config, File, FileFormat};

    /// The stripped defaults say what the documented file says, and are much shorter.
    #[test]
    fn stripped_defaults_are_the_documented_ones() {
        let table = |toml: &str| -> serde_json::Value {
            Config::builder()
                .add_source(File::from_str(toml, FileFormat::Toml))
                .build()
                .unwrap()
                .try_deserialize()
                .unwrap()
        };
        assert_eq!(table(DEFAULT_TOML), table(DEFAULT_TOML_DOCUMENTED));
        assert!(DEFAULT_TOML.len() * 4 < DEFAULT_TOML_DOCUMENTED.len(), "{} bytes", DEFAULT_TOML.len());
        assert!(!DEFAULT_TOML.lines().any(|l| l.trim().is_empty() || l.trim_start().starts_with('#')));
    }
}
