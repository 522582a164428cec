//! The file types of `[[input]]`: `file` (files followed like `tail -F`), `fifo` (a named
//! pipe auditspan owns) and `stdin`, and the validation of their keys.
//!
//! Rules beyond each key's own: `path` is required for file and fifo (for file it is a
//! glob pattern); at most one input reads stdin; and `tee = "stdout"` cannot be combined
//! with a stdout sink, since both would write to the one stdout (the error names both).

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::error::ConfigError;
use super::input::{DEFAULT_SOCKET_MODE, InputConfig, InputKind};
use super::raw::RawInput;
use super::sink::{SinkConfig, SinkKind};
use super::validate::Ctx;

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// A path or a glob pattern (`*`, `?`, `[...]`); relative to the working directory if
    /// relative. Every file it matches is followed, each with its own event clock.
    pub path: String,
    pub start_at: StartAt,
}

/// Where a file found at the first start (no checkpoint yet) is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From its first byte (the default): what the file holds is imported.
    Beginning,
    /// From its end: only what is written from now on. Files that appear later, and every
    /// file after a restart, are read from where the checkpoint says (or their beginning).
    End,
}

impl StartAt {
    pub fn as_str(self) -> &'static str {
        match self {
            StartAt::Beginning => "beginning",
            StartAt::End => "end",
        }
    }
}

/// `type = "fifo"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoInput {
    /// The named pipe; created (with `mode`) when missing.
    pub path: PathBuf,
    /// Permission bits of the pipe, at most `0o777`.
    pub mode: u32,
    pub tee: Option<Tee>,
}

/// `type = "stdin"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdinInput {
    pub tee: Option<Tee>,
}

/// Where an input copies every raw line it reads, byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    /// The daemon's stdout (so `kubectl logs` still shows the audit log).
    Stdout,
}

impl Tee {
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Stdout => "stdout",
        }
    }
}

impl InputKind {
    /// The input's `tee`, for the types that take one.
    pub fn tee(&self) -> Option<Tee> {
        match self {
            InputKind::Fifo(f) => f.tee,
            InputKind::Stdin(s) => s.tee,
            _ => None,
        }
    }
}

/// The entry number and span of every `tee` in the file, taken before the entries are
/// validated, so that [`Ctx::tee_and_stdout_sink`] can name its line.
pub(super) fn tee_spans(entries: Option<&Vec<Spanned<RawInput>>>) -> Vec<(usize, Range<usize>)> {
    entries
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, e)| e.get_ref().tee.as_ref().map(|t| (i + 1, t.span())))
        .collect()
}

impl Ctx<'_> {
    /// `type = "file" | "fifo" | "stdin"`: their keys; a key the type does not take is an
    /// error naming it.
    pub(super) fn file_input(
        &self,
        type_name: &str,
        raw: &mut RawInput,
        n: usize,
        entry_span: Range<usize>,
    ) -> Result<InputKind, ConfigError> {
        let takes: &[&str] = match type_name {
            "file" => &["path", "start_at"],
            "fifo" => &["path", "mode", "tee"],
            _ => &["tee"],
        };
        self.stray_input_key(raw, type_name, n, takes)?;
        let tee = self.tee(raw, n)?;
        match type_name {
            "file" => {
                let path = self.required_path(raw, type_name, n, entry_span)?;
                if let Err(e) = glob::Pattern::new(&path) {
                    return Err(self.invalid(
                        None,
                        &format!("input #{n}.path"),
                        format!("\"{path}\" is not a valid glob pattern: {e}"),
                    ));
                }
                let start_at = match raw.start_at.take() {
                    None => StartAt::Beginning,
                    Some(v) => match v.get_ref().as_str() {
                        "beginning" => StartAt::Beginning,
                        "end" => StartAt::End,
                        other => {
                            return Err(self.invalid(
                                Some(v.span()),
                                &format!("input #{n}.start_at"),
                                format!("\"{other}\" is not \"beginning\" or \"end\""),
                            ));
                        }
                    },
                };
                Ok(InputKind::File(FileInput { path, start_at }))
            }
            "fifo" => {
                let path = PathBuf::from(self.required_path(raw, type_name, n, entry_span)?);
                let mode = match raw.mode.take() {
                    Some(v) => self.input_mode(v, n)?,
                    None => DEFAULT_SOCKET_MODE,
                };
                Ok(InputKind::Fifo(FifoInput { path, mode, tee }))
            }
            _ => Ok(InputKind::Stdin(StdinInput { tee })),
        }
    }

    fn required_path(
        &self,
        raw: &mut RawInput,
        type_name: &str,
        n: usize,
        entry_span: Range<usize>,
    ) -> Result<String, ConfigError> {
        match raw.path.take() {
            Some(v) => self.non_empty(v, &format!("input #{n}.path")),
            None => Err(self.invalid(
                Some(entry_span),
                &format!("input #{n}.path"),
                format!("a {type_name} input needs a path"),
            )),
        }
    }

    fn tee(&self, raw: &mut RawInput, n: usize) -> Result<Option<Tee>, ConfigError> {
        match raw.tee.take() {
            None => Ok(None),
            Some(v) if v.get_ref() == "stdout" => Ok(Some(Tee::Stdout)),
            Some(v) => Err(self.invalid(
                Some(v.span()),
                &format!("input #{n}.tee"),
                format!("\"{}\" is not a tee target (only \"stdout\")", v.get_ref()),
            )),
        }
    }

    /// At most one input reads stdin.
    pub(super) fn one_stdin(
        &self,
        inputs: &[InputConfig],
        input: &InputConfig,
        n: usize,
        entry_span: Range<usize>,
    ) -> Result<(), ConfigError> {
        if !matches!(input.kind, InputKind::Stdin(_)) {
            return Ok(());
        }
        match inputs
            .iter()
            .position(|i| matches!(i.kind, InputKind::Stdin(_)))
        {
            Some(j) => Err(self.invalid(
                Some(entry_span),
                &format!("input #{n}.type"),
                format!("input #{} reads stdin already; there is one stdin", j + 1),
            )),
            None => Ok(()),
        }
    }

    /// `tee = "stdout"` and a stdout sink would both write to stdout: an error naming both.
    pub(super) fn tee_and_stdout_sink(
        &self,
        inputs: &[InputConfig],
        sinks: &[SinkConfig],
        tee_spans: &[(usize, Range<usize>)],
    ) -> Result<(), ConfigError> {
        let Some((i, input)) = inputs
            .iter()
            .enumerate()
            .find(|(_, i)| i.kind.tee() == Some(Tee::Stdout))
        else {
            return Ok(());
        };
        let Some((j, sink)) = sinks
            .iter()
            .enumerate()
            .find(|(_, s)| s.kind == SinkKind::Stdout)
        else {
            return Ok(());
        };
        let n = i + 1;
        let span = tee_spans
            .iter()
            .find(|(entry, _)| *entry == n)
            .map(|(_, span)| span.clone());
        Err(self.invalid(
            span,
            &format!("input #{n}.tee"),
            format!(
                "input \"{}\" copies its lines to stdout (tee = \"stdout\") and sink #{} \
                 (\"{}\") writes spans to stdout; choose one (the default sink is stdout: \
                 add a [[sink]] of another type)",
                input.name,
                j + 1,
                sink.name
            ),
        ))
    }
}
