//! `[[input]]`: where audit lines come from, and the validation of its keys.
//!
//! Invariants: input names are unique (they are the `input` metric label and the
//! dead-letter field), and no two inputs listen on the same path. A `type` that DESIGN
//! plans but this version lacks is reported as "not supported yet" (from the type probe in
//! [`from_toml_str`](super::from_toml_str)), before any key only that type would take is
//! looked at.

use std::path::PathBuf;

use toml::Spanned;

use super::error::ConfigError;
use super::raw::RawInput;
use super::units::{MIB, parse_mode};
use super::validate::Ctx;

/// The input types this version implements, for error messages.
pub(super) const INPUT_TYPES: &str = "unix";
/// The input types DESIGN plans: "not supported yet" rather than "unknown".
pub(super) const INPUT_TYPES_LATER: &[&str] = &["tcp", "udp", "file", "fifo", "stdin", "syslog"];

const DEFAULT_SOCKET_PATH: &str = "./auditspan.sock";
const DEFAULT_SOCKET_MODE: u32 = 0o600;
const DEFAULT_MAX_LINE_BYTES: usize = 4 * MIB as usize;

/// One `[[input]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputConfig {
    /// Unique among inputs; the `input` metric label and dead-letter field.
    pub name: String,
    pub kind: InputKind,
    /// The socket path (unix); relative to the working directory if relative.
    pub path: PathBuf,
    /// Permission bits of the socket file, at most `0o777`.
    pub mode: u32,
    /// Text the audit device writes before each JSON object; stripped when present.
    pub prefix: String,
    /// Longer lines are rejected as `too_long`.
    pub max_line_bytes: usize,
}

/// The input types this version implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Unix,
}

impl InputKind {
    /// The `type` value in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Unix => "unix",
        }
    }
}

/// An input of `kind` with every key at its default.
pub(super) fn default_input(kind: InputKind) -> InputConfig {
    InputConfig {
        name: kind.as_str().to_owned(),
        kind,
        path: PathBuf::from(DEFAULT_SOCKET_PATH),
        mode: DEFAULT_SOCKET_MODE,
        prefix: String::new(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
    }
}

impl Ctx<'_> {
    pub(super) fn input_kind(&self, kind: &Spanned<String>) -> Result<InputKind, ConfigError> {
        match kind.get_ref().as_str() {
            "unix" => Ok(InputKind::Unix),
            other => Err(ConfigError::UnsupportedType {
                origin: self.origin(),
                line: self.line(kind.span()),
                section: "input",
                kind: other.to_owned(),
            }),
        }
    }

    pub(super) fn inputs(
        &self,
        entries: Vec<Spanned<RawInput>>,
    ) -> Result<Vec<InputConfig>, ConfigError> {
        if entries.is_empty() {
            return Err(self.invalid(
                None,
                "input",
                "at least one [[input]] is needed (leave the key out for the default)".to_owned(),
            ));
        }
        let mut inputs: Vec<InputConfig> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let n = i + 1;
            let entry_span = entry.span();
            let raw = entry.into_inner();
            let kind = match &raw.kind {
                Some(k) => self.input_kind(k)?,
                None => InputKind::Unix,
            };
            let mut input = default_input(kind);
            if let Some(v) = raw.name {
                input.name = self.non_empty(v, &format!("input #{n}.name"))?;
            }
            if let Some(v) = raw.path {
                input.path = PathBuf::from(self.non_empty(v, &format!("input #{n}.path"))?);
            }
            if let Some(v) = raw.mode {
                input.mode = parse_mode(&v.get_ref().0)
                    .map_err(|r| self.invalid(Some(v.span()), &format!("input #{n}.mode"), r))?;
            }
            if let Some(v) = raw.prefix {
                input.prefix = v.into_inner();
            }
            input.max_line_bytes = self.size_usize(
                raw.max_line_bytes,
                &format!("input #{n}.max_line_bytes"),
                input.max_line_bytes,
            )?;
            if let Some(j) = inputs.iter().position(|other| other.name == input.name) {
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("input #{n}.name"),
                    format!(
                        "duplicate input name \"{}\" (input #{} has it too; names must be unique)",
                        input.name,
                        j + 1
                    ),
                ));
            }
            if let Some(j) = inputs.iter().position(|other| other.path == input.path) {
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("input #{n}.path"),
                    format!(
                        "input #{} already listens on \"{}\"",
                        j + 1,
                        input.path.display()
                    ),
                ));
            }
            inputs.push(input);
        }
        Ok(inputs)
    }
}
