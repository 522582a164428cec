//! [`ConfigError`]: why a configuration was rejected, and where.
//!
//! Invariant: every message starts with where the value came from (the file and, when
//! known, its line; or the flag and environment variable of an override); it names the key
//! and quotes the offending value where there is one, never a secret. Lines and columns
//! are 1-based and columns count characters, as editors do.

use std::fmt;
use std::path::PathBuf;

use super::input::{INPUT_TYPES, INPUT_TYPES_LATER};
use super::sink::{SINK_TYPES, SINK_TYPES_LATER};

/// Why the configuration was rejected. Every message starts with where the value came
/// from (the file and, when known, the line) and quotes the offending key or value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read: missing, not permitted, a directory, or not
    /// UTF-8. The OS error is the `source`.
    #[error("cannot read config file {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The file is not valid TOML, has an unknown key, or a value of the wrong TOML type
    /// or an unknown enum value; `message` is toml's (it names the key or value).
    #[error("config file {}{}: {message}", .path.display(), Position(*.line, *.column))]
    Toml {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },

    /// An `[[input]]` or `[[sink]]` names a `type` this version does not implement.
    #[error(
        "{origin}{}: {section} type \"{kind}\" is {}",
        Position(*.line, None),
        unsupported_reason(.section, .kind)
    )]
    UnsupportedType {
        origin: String,
        line: Option<usize>,
        /// `"input"` or `"sink"`.
        section: &'static str,
        kind: String,
    },

    /// A value is malformed (duration, size, mode, address) or out of range, or values
    /// conflict (duplicate names, `max_value_bytes` > `max_span_bytes`).
    #[error("{origin}{}: {field}: {reason}", Position(*.line, None))]
    Invalid {
        /// `config file PATH`, or the flag and environment variable an override came from.
        origin: String,
        line: Option<usize>,
        /// Dotted key, with 1-based entry numbers for arrays: `input #2.mode`.
        field: String,
        /// Quotes the offending value.
        reason: String,
    },
}

/// `", line L, column C"` or nothing, for error messages.
struct Position(Option<usize>, Option<usize>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.0 {
            write!(f, ", line {line}")?;
            if let Some(column) = self.1 {
                write!(f, ", column {column}")?;
            }
        }
        Ok(())
    }
}

fn unsupported_reason(section: &str, kind: &str) -> String {
    let (now, later) = match section {
        "input" => (INPUT_TYPES, INPUT_TYPES_LATER),
        _ => (SINK_TYPES, SINK_TYPES_LATER),
    };
    if later.contains(&kind) {
        format!("not supported yet (this version supports: {now})")
    } else if later.is_empty() {
        format!("unknown (this version supports: {now})")
    } else {
        format!(
            "unknown (this version supports: {now}; planned: {})",
            later.join(", ")
        )
    }
}

/// 1-based (line, column) of byte `offset` in `text`; the column counts characters.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
