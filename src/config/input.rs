//! `[[input]]`: where audit lines come from, and the validation of its keys.
//!
//! Invariants of a validated input:
//! - Its name is unique (it is the `input` metric label and the dead-letter field).
//! - No two inputs use the same path (socket, file pattern or FIFO), or listen on the same
//!   address with the same transport (port 0, "any free port", excepted).
//! - It holds only the keys its type takes: any other key is an error naming it, never
//!   silently ignored (as for sinks).
//! - A `type` that DESIGN plans but this version lacks would be reported as "not supported
//!   yet" (from the type probe in [`from_toml_str`](super::from_toml_str)), before any key
//!   only that type would take is looked at; every input type DESIGN plans exists now.
//!
//! The file types (file, fifo, stdin) are validated in `input_file.rs`, the network types
//! (tcp, udp, http, syslog) in `input_net.rs`.

use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::error::ConfigError;
pub use super::input_file::{FifoInput, FileInput, StartAt, StdinInput, Tee};
pub use super::input_net::{Ack, HttpAuth, HttpInput, SyslogInput, SyslogSocket, TlsFiles};
use super::raw::RawInput;
use super::units::{MIB, parse_mode};
use super::validate::Ctx;

/// The input types this version implements, for error messages.
pub(super) const INPUT_TYPES: &str = "unix, file, fifo, stdin, tcp, udp, http, syslog";
/// The input types DESIGN plans: "not supported yet" rather than "unknown".
pub(super) const INPUT_TYPES_LATER: &[&str] = &[];

const DEFAULT_SOCKET_PATH: &str = "./auditspan.sock";
pub(super) const DEFAULT_SOCKET_MODE: u32 = 0o600;
const DEFAULT_MAX_LINE_BYTES: usize = 4 * MIB as usize;

/// One `[[input]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputConfig {
    /// Unique among inputs; the `input` metric label and dead-letter field.
    pub name: String,
    pub kind: InputKind,
    /// Text the audit device writes before each JSON object; stripped when present.
    pub prefix: String,
    /// Longer lines are rejected as `too_long`.
    pub max_line_bytes: usize,
}

/// The input types this version implements, with their type-specific settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    Unix(UnixInput),
    /// Files followed like `tail -F`: Vault's `file` audit device.
    File(FileInput),
    /// A named pipe auditspan owns: the `file` audit device pointed at it.
    Fifo(FifoInput),
    /// The daemon's standard input (`bao server … | auditspan run`).
    Stdin(StdinInput),
    /// A TCP listener: Vault's socket device with `socket_type = "tcp"`.
    Tcp(std::net::SocketAddr),
    /// A UDP socket: Vault's socket device with `socket_type = "udp"`.
    Udp(std::net::SocketAddr),
    Http(HttpInput),
    Syslog(SyslogInput),
}

/// `type = "unix"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixInput {
    /// The socket path; relative to the working directory if relative.
    pub path: PathBuf,
    /// Permission bits of the socket file, at most `0o777`.
    pub mode: u32,
}

impl InputKind {
    /// The `type` value in the file.
    pub fn as_str(&self) -> &'static str {
        match self {
            InputKind::Unix(_) => "unix",
            InputKind::File(_) => "file",
            InputKind::Fifo(_) => "fifo",
            InputKind::Stdin(_) => "stdin",
            InputKind::Tcp(_) => "tcp",
            InputKind::Udp(_) => "udp",
            InputKind::Http(_) => "http",
            InputKind::Syslog(_) => "syslog",
        }
    }

    /// What the input owns or listens on, for the "two inputs on one path or socket"
    /// check: a path (socket, file pattern, FIFO), or a transport and address; `None` for
    /// port 0 (any free port) and inputs without one (stdin).
    fn listens_on(&self) -> Option<String> {
        let address = |transport: &str, a: &std::net::SocketAddr| {
            (a.port() != 0).then(|| format!("{transport} {a}"))
        };
        match self {
            InputKind::Unix(u) => Some(format!("{}", u.path.display())),
            InputKind::File(f) => Some(f.path.clone()),
            InputKind::Fifo(f) => Some(format!("{}", f.path.display())),
            InputKind::Stdin(_) => None,
            InputKind::Tcp(a) => address("tcp", a),
            InputKind::Udp(a) => address("udp", a),
            InputKind::Http(h) => address("tcp", &h.address),
            InputKind::Syslog(s) => match &s.socket {
                SyslogSocket::Unix { path, .. } => Some(format!("{}", path.display())),
                SyslogSocket::Udp(a) => address("udp", a),
                SyslogSocket::Tcp(a) => address("tcp", a),
            },
        }
    }
}

/// The default unix input: `./auditspan.sock`, mode 0600, named "unix".
pub(super) fn default_input() -> InputConfig {
    InputConfig {
        name: "unix".to_owned(),
        kind: InputKind::Unix(UnixInput {
            path: PathBuf::from(DEFAULT_SOCKET_PATH),
            mode: DEFAULT_SOCKET_MODE,
        }),
        prefix: String::new(),
        max_line_bytes: DEFAULT_MAX_LINE_BYTES,
    }
}

/// Every type-specific key of `raw` that is set, with its span: what a type that does not
/// take a key reports. Keys every type takes (`type`, `name`, `prefix`,
/// `max_line_bytes`) are not listed.
fn typed_keys(raw: &RawInput) -> [Option<(Range<usize>, &'static str)>; 11] {
    [
        raw.path.as_ref().map(|v| (v.span(), "path")),
        raw.mode.as_ref().map(|v| (v.span(), "mode")),
        // File inputs (input_file.rs).
        raw.start_at.as_ref().map(|v| (v.span(), "start_at")),
        raw.tee.as_ref().map(|v| (v.span(), "tee")),
        // Network inputs (input_net.rs).
        raw.address.as_ref().map(|v| (v.span(), "address")),
        raw.protocol.as_ref().map(|v| (v.span(), "protocol")),
        raw.auth.as_ref().map(|v| (v.span(), "auth")),
        raw.auth_token_env
            .as_ref()
            .map(|v| (v.span(), "auth_token_env")),
        raw.tls_cert.as_ref().map(|v| (v.span(), "tls_cert")),
        raw.tls_key.as_ref().map(|v| (v.span(), "tls_key")),
        raw.ack.as_ref().map(|v| (v.span(), "ack")),
    ]
}

impl Ctx<'_> {
    /// Checks an input `type`; the settings are filled in by [`Ctx::inputs`].
    pub(super) fn input_kind(&self, kind: &Spanned<String>) -> Result<&'static str, ConfigError> {
        match kind.get_ref().as_str() {
            "unix" => Ok("unix"),
            "file" => Ok("file"),
            "fifo" => Ok("fifo"),
            "stdin" => Ok("stdin"),
            "tcp" => Ok("tcp"),
            "udp" => Ok("udp"),
            "http" => Ok("http"),
            "syslog" => Ok("syslog"),
            other => Err(ConfigError::UnsupportedType {
                origin: self.origin(),
                line: self.line(kind.span()),
                section: "input",
                kind: other.to_owned(),
            }),
        }
    }

    /// A key of input #`n` that its type does not take: an error naming it.
    pub(super) fn stray_input_key(
        &self,
        raw: &RawInput,
        type_name: &str,
        n: usize,
        takes: &[&str],
    ) -> Result<(), ConfigError> {
        let stray = typed_keys(raw)
            .into_iter()
            .flatten()
            .find(|(_, key)| !takes.contains(key));
        match stray {
            Some((span, key)) => Err(self.invalid(
                Some(span),
                &format!("input #{n}.{key}"),
                format!("a {type_name} input does not take this key"),
            )),
            None => Ok(()),
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
            let mut raw = entry.into_inner();
            let type_name = match &raw.kind {
                Some(k) => self.input_kind(k)?,
                None => "unix",
            };
            let kind = match type_name {
                "unix" => self.unix_input(&mut raw, n)?,
                file @ ("file" | "fifo" | "stdin") => {
                    self.file_input(file, &mut raw, n, entry_span.clone())?
                }
                net => self.net_input(net, &mut raw, n, entry_span.clone())?,
            };
            let mut input = default_input();
            input.name = kind.as_str().to_owned();
            input.kind = kind;
            if let Some(v) = raw.name {
                input.name = self.non_empty(v, &format!("input #{n}.name"))?;
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
            if let Some(on) = input.kind.listens_on()
                && let Some(j) = inputs
                    .iter()
                    .position(|other| other.kind.listens_on().as_ref() == Some(&on))
            {
                let key = if matches!(
                    &input.kind,
                    InputKind::Unix(_)
                        | InputKind::File(_)
                        | InputKind::Fifo(_)
                        | InputKind::Syslog(SyslogInput {
                            socket: SyslogSocket::Unix { .. }
                        })
                ) {
                    "path"
                } else {
                    "address"
                };
                return Err(self.invalid(
                    Some(entry_span),
                    &format!("input #{n}.{key}"),
                    format!("input #{} already listens on \"{on}\"", j + 1),
                ));
            }
            self.one_stdin(&inputs, &input, n, entry_span)?;
            inputs.push(input);
        }
        Ok(inputs)
    }

    /// `type = "unix"`: `path` and `mode`.
    fn unix_input(&self, raw: &mut RawInput, n: usize) -> Result<InputKind, ConfigError> {
        self.stray_input_key(raw, "unix", n, &["path", "mode"])?;
        let mut unix = UnixInput {
            path: PathBuf::from(DEFAULT_SOCKET_PATH),
            mode: DEFAULT_SOCKET_MODE,
        };
        if let Some(v) = raw.path.take() {
            unix.path = PathBuf::from(self.non_empty(v, &format!("input #{n}.path"))?);
        }
        if let Some(v) = raw.mode.take() {
            unix.mode = self.input_mode(v, n)?;
        }
        Ok(InputKind::Unix(unix))
    }

    /// A socket file's `mode`.
    pub(super) fn input_mode(
        &self,
        v: Spanned<super::raw::ModeText>,
        n: usize,
    ) -> Result<u32, ConfigError> {
        parse_mode(&v.get_ref().0)
            .map_err(|r| self.invalid(Some(v.span()), &format!("input #{n}.mode"), r))
    }
}
