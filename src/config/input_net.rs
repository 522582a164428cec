//! The network inputs' settings (`type = "tcp" | "udp" | "http" | "syslog"`) and the
//! validation of their keys.
//!
//! Decisions:
//! - `address` is `IP:PORT` (port 0: any free port); a host name is an error, as for
//!   `metrics.listen`, so that what is bound is what the file says.
//! - http: a bearer token is required unless `auth = "none"` says otherwise, and that is
//!   refused on an address that is not loopback. The token itself never sits in the file:
//!   `auth_token_env` names the environment variable holding it (read at start).
//! - `tls_cert` and `tls_key` come together.
//! - syslog: `path` (a unix datagram socket, `mode` 0600 by default) or `address` with
//!   `protocol = "udp"` (default) or `"tcp"`, not both.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::input::{DEFAULT_SOCKET_MODE, InputKind};
use super::raw::RawInput;
use super::validate::Ctx;

/// `type = "http"`: OpenBao's `http` audit device posts each entry to `POST /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpInput {
    pub address: SocketAddr,
    pub auth: HttpAuth,
    /// Serve HTTPS with these PEM files.
    pub tls: Option<TlsFiles>,
    pub ack: Ack,
}

/// How an http client proves it may post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `auth = "none"`: anyone who can connect (loopback addresses only).
    None,
    /// `Authorization: Bearer <token>`, the token read from this environment variable.
    BearerEnv(String),
}

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// When the http input answers a post with 2xx.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ack {
    /// Once every event of the body is durably committed (the default).
    #[default]
    Commit,
    /// Once every line of the body is parsed and handed to the correlator.
    Received,
}

/// `type = "syslog"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogInput {
    pub socket: SyslogSocket,
}

/// Where a syslog input listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogSocket {
    /// A unix datagram socket: what OpenBao's syslog device writes to (`/dev/log`).
    Unix { path: PathBuf, mode: u32 },
    /// Syslog over UDP (RFC 5426), one message per datagram.
    Udp(SocketAddr),
    /// Syslog over TCP (RFC 6587), newline or octet-counted framing.
    Tcp(SocketAddr),
}

impl Ctx<'_> {
    /// The settings of a network input (`type_name` is tcp, udp, http or syslog).
    pub(super) fn net_input(
        &self,
        type_name: &str,
        raw: &mut RawInput,
        n: usize,
        entry_span: Range<usize>,
    ) -> Result<InputKind, ConfigError> {
        let field = |key: &str| format!("input #{n}.{key}");
        let takes: &[&str] = match type_name {
            "http" => &[
                "address",
                "auth",
                "auth_token_env",
                "tls_cert",
                "tls_key",
                "ack",
            ],
            "syslog" => &["address", "protocol", "path", "mode"],
            _ => &["address"],
        };
        self.stray_input_key(raw, type_name, n, takes)?;
        let address = match raw.address.take() {
            None => None,
            Some(v) => Some(v.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.invalid(
                    Some(v.span()),
                    &field("address"),
                    format!(
                        "\"{}\" is not a socket address; write IP:PORT such as \"127.0.0.1:9090\" or \"[::1]:9090\"",
                        v.get_ref()
                    ),
                )
            })?),
        };
        let needs_address = || {
            self.invalid(
                Some(entry_span.clone()),
                &field("address"),
                format!("a {type_name} input needs an address (IP:PORT)"),
            )
        };
        match type_name {
            "tcp" => Ok(InputKind::Tcp(address.ok_or_else(needs_address)?)),
            "udp" => Ok(InputKind::Udp(address.ok_or_else(needs_address)?)),
            "http" => {
                let address = address.ok_or_else(needs_address)?;
                Ok(InputKind::Http(
                    self.http_input(raw, n, address, entry_span)?,
                ))
            }
            _ => Ok(InputKind::Syslog(
                self.syslog_input(raw, n, address, entry_span)?,
            )),
        }
    }

    fn http_input(
        &self,
        raw: &mut RawInput,
        n: usize,
        address: SocketAddr,
        entry_span: Range<usize>,
    ) -> Result<HttpInput, ConfigError> {
        let field = |key: &str| format!("input #{n}.{key}");
        let auth = match (raw.auth.take(), raw.auth_token_env.take()) {
            (Some(v), None) if v.get_ref() == "none" => {
                if !address.ip().is_loopback() {
                    return Err(self.invalid(
                        Some(v.span()),
                        &field("auth"),
                        format!(
                            "auth = \"none\" is refused on {address}, which is not a loopback \
                             address; set auth_token_env"
                        ),
                    ));
                }
                HttpAuth::None
            }
            (Some(v), None) => {
                return Err(self.invalid(
                    Some(v.span()),
                    &field("auth"),
                    format!(
                        "\"{}\" is not an auth mode; write auth = \"none\" (loopback only) or \
                         set auth_token_env instead",
                        v.get_ref()
                    ),
                ));
            }
            (None, Some(v)) => HttpAuth::BearerEnv(self.non_empty(v, &field("auth_token_env"))?),
            (Some(_), Some(v)) => {
                return Err(self.invalid(
                    Some(v.span()),
                    &field("auth_token_env"),
                    "give auth = \"none\" or auth_token_env, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    Some(entry_span),
                    &field("auth_token_env"),
                    "an http input needs auth_token_env (the environment variable holding the \
                     bearer token), or auth = \"none\" on a loopback address"
                        .to_owned(),
                ));
            }
        };
        let tls = match (raw.tls_cert.take(), raw.tls_key.take()) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: PathBuf::from(self.non_empty(cert, &field("tls_cert"))?),
                key: PathBuf::from(self.non_empty(key, &field("tls_key"))?),
            }),
            (Some(v), None) => {
                return Err(self.invalid(
                    Some(v.span()),
                    &field("tls_key"),
                    "tls_cert needs tls_key".to_owned(),
                ));
            }
            (None, Some(v)) => {
                return Err(self.invalid(
                    Some(v.span()),
                    &field("tls_cert"),
                    "tls_key needs tls_cert".to_owned(),
                ));
            }
        };
        let ack = match raw.ack.take() {
            None => Ack::default(),
            Some(v) => match v.get_ref().as_str() {
                "commit" => Ack::Commit,
                "received" => Ack::Received,
                other => {
                    return Err(self.invalid(
                        Some(v.span()),
                        &field("ack"),
                        format!("\"{other}\" is not an ack mode; write \"commit\" or \"received\""),
                    ));
                }
            },
        };
        Ok(HttpInput {
            address,
            auth,
            tls,
            ack,
        })
    }

    fn syslog_input(
        &self,
        raw: &mut RawInput,
        n: usize,
        address: Option<SocketAddr>,
        entry_span: Range<usize>,
    ) -> Result<SyslogInput, ConfigError> {
        let field = |key: &str| format!("input #{n}.{key}");
        let socket = match (raw.path.take(), address) {
            (Some(path), None) => {
                if let Some(v) = &raw.protocol {
                    return Err(self.invalid(
                        Some(v.span()),
                        &field("protocol"),
                        "protocol goes with address; a path is a unix datagram socket".to_owned(),
                    ));
                }
                let mode = match raw.mode.take() {
                    Some(v) => self.input_mode(v, n)?,
                    None => DEFAULT_SOCKET_MODE,
                };
                SyslogSocket::Unix {
                    path: PathBuf::from(self.non_empty(path, &field("path"))?),
                    mode,
                }
            }
            (None, Some(address)) => {
                if let Some(v) = &raw.mode {
                    return Err(self.invalid(
                        Some(v.span()),
                        &field("mode"),
                        "mode goes with path (a socket file), not with address".to_owned(),
                    ));
                }
                match raw.protocol.take() {
                    None => SyslogSocket::Udp(address),
                    Some(v) => match v.get_ref().as_str() {
                        "udp" => SyslogSocket::Udp(address),
                        "tcp" => SyslogSocket::Tcp(address),
                        other => {
                            return Err(self.invalid(
                                Some(v.span()),
                                &field("protocol"),
                                format!("\"{other}\" is not a protocol; write \"udp\" or \"tcp\""),
                            ));
                        }
                    },
                }
            }
            (Some(path), Some(_)) => {
                return Err(self.invalid(
                    Some(path.span()),
                    &field("path"),
                    "give path (a unix datagram socket) or address, not both".to_owned(),
                ));
            }
            (None, None) => {
                return Err(self.invalid(
                    Some(entry_span),
                    &field("path"),
                    "a syslog input needs path (a unix datagram socket) or address".to_owned(),
                ));
            }
        };
        Ok(SyslogInput { socket })
    }
}
