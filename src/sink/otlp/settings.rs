//! The OTLP sink's effective settings: the `[[sink]]` entry, then the `OTEL_*` environment,
//! then defaults (DESIGN "Interfaces": config file > `OTEL_*` > defaults).
//!
//! For each setting the first source that has it wins:
//!
//! | setting | file key | environment (traces-specific first, then generic) | default |
//! |---|---|---|---|
//! | protocol | `protocol` | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | endpoint | `endpoint` | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `v1/traces` for HTTP) | `http://localhost:4317` / `http://localhost:4318/v1/traces` |
//! | headers | `headers`, `headers_env` | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | none |
//! | compression | `compression` | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_COMPRESSION` | `none` |
//! | timeout | `timeout` | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (ms; `0` = no limit) | 10 s |
//! | CA file | `ca_file` | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CERTIFICATE` | system roots only |
//!
//! Headers merge per name: a header the file names wins over the environment's; the
//! traces-specific variable replaces the generic one as a whole (the spec's "overridable by
//! a signal specific option"). An empty variable counts as unset (OTel "common" rules).
//!
//! Decisions where the spec leaves room or the DESIGN differs from it:
//! - The default protocol is `grpc` (DESIGN), not the spec's `http/protobuf`.
//! - The file's `endpoint` is the traces URL, used as is, except that an HTTP endpoint with
//!   no path (`https://collector:4318`) gets `/v1/traces`: nobody means to POST to `/`.
//! - A gRPC endpoint from the environment without a scheme (`collector:4317`) is `https`
//!   unless `OTEL_EXPORTER_OTLP_(TRACES_)INSECURE=true`.
//! - `http/json` and any unknown value are errors, as are malformed headers, timeouts and
//!   compressions: a daemon that starts without its authentication header is worse than
//!   one that refuses to start. Exceptions, as the spec asks: a negative timeout warns and
//!   takes the default; an `OTEL_RESOURCE_ATTRIBUTES` that does not decode warns and is
//!   discarded whole.
//! - Client certificates (`OTEL_EXPORTER_OTLP_CLIENT_KEY`/`_CERTIFICATE`) are not
//!   supported: a warning says they are ignored.
//!
//! Resource (`service.name`, `service.instance.id`, `host.name`, then the other
//! `OTEL_RESOURCE_ATTRIBUTES` in their order): `service_name` set in the file or by
//! `--service-name`/`AUDITSPAN_SERVICE_NAME` > `OTEL_SERVICE_NAME` > `service.name` in
//! `OTEL_RESOURCE_ATTRIBUTES` > `"vault"`; `instance_id` set in the file >
//! `service.instance.id` in `OTEL_RESOURCE_ATTRIBUTES` > the host name; `host.name` in
//! `OTEL_RESOURCE_ATTRIBUTES` > the host name.

use std::{fmt, path::PathBuf, time::Duration};

use crate::config::{Compression, Config, OtlpConfig, OtlpProtocol, REDACTED, Secret};
use crate::sink::SinkError;

pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
pub const OTEL_EXPORTER_OTLP_INSECURE: &str = "OTEL_EXPORTER_OTLP_INSECURE";
pub const OTEL_EXPORTER_OTLP_TRACES_INSECURE: &str = "OTEL_EXPORTER_OTLP_TRACES_INSECURE";
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// mTLS variables we do not support; set, they cause a warning.
const UNSUPPORTED: &[&str] = &[
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
];

pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The path appended to a base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`) for OTLP/HTTP.
const TRACES_PATH: &str = "v1/traces";

/// Reads one environment variable; `None` when unset. Injected so that tests do not touch
/// the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (a variable that is not UTF-8 counts as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where an effective value came from; shown by `auditspan check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `[[sink]]` entry (or, for the resource, `--service-name` / `AUDITSPAN_*`).
    File,
    Env(&'static str),
    /// A generic base URL with `v1/traces` appended.
    EnvBase(&'static str),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File => f.write_str("config"),
            Source::Env(name) => f.write_str(name),
            Source::EnvBase(name) => write!(f, "{name} + {TRACES_PATH}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// What the resource is built from besides the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDefaults {
    pub service_name: String,
    pub service_name_given: bool,
    pub instance_id: String,
    pub instance_id_given: bool,
    pub host_name: String,
}

impl ResourceDefaults {
    pub fn from_config(config: &Config) -> ResourceDefaults {
        let resource = crate::sink::Resource::from_config(config);
        ResourceDefaults {
            service_name: resource.service_name,
            service_name_given: config.service_name_given,
            instance_id: resource.instance_id,
            instance_id_given: config.instance_id_given,
            host_name: resource.host_name,
        }
    }
}

/// One request header: its lower-case name, its value (a secret: never printed) and where
/// it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Secret,
    pub source: Source,
}

/// The effective settings of one OTLP sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub protocol: (OtlpProtocol, Source),
    /// An absolute http(s) URL: for HTTP the URL to POST to, for gRPC the server.
    pub endpoint: (String, Source),
    pub headers: Vec<Header>,
    pub compression: (Compression, Source),
    /// Per request; `None`: no limit (`OTEL_EXPORTER_OTLP_TIMEOUT=0`).
    pub timeout: (Option<Duration>, Source),
    pub ca_file: Option<(PathBuf, Source)>,
    /// Resource attributes in the order they are sent, each with where it came from.
    pub resource: Vec<(String, String, Source)>,
    /// Things worth a log line (ignored or discarded variables).
    pub warnings: Vec<String>,
}

impl Settings {
    /// Resolves `sink`'s settings. Errors name the variable or key, never a header value.
    pub fn resolve(
        sink: &OtlpConfig,
        defaults: &ResourceDefaults,
        env: Env<'_>,
    ) -> Result<Settings, SinkError> {
        let get = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
        let pick = |traces: &'static str, generic: &'static str| {
            get(traces)
                .map(|v| (v, traces))
                .or_else(|| get(generic).map(|v| (v, generic)))
        };
        let mut warnings = Vec::new();
        for name in UNSUPPORTED {
            if get(name).is_some() {
                warnings.push(format!(
                    "{name} is set but client certificates are not supported; it is ignored"
                ));
            }
        }
        let connection = &sink.connection;

        let protocol = match sink.protocol {
            Some(p) => (p, Source::File),
            None => match pick(
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                OTEL_EXPORTER_OTLP_PROTOCOL,
            ) {
                Some((value, var)) => (parse_protocol(&value, var)?, Source::Env(var)),
                None => (OtlpProtocol::Grpc, Source::Default),
            },
        };
        let http = protocol.0 == OtlpProtocol::HttpProtobuf;

        let endpoint = match &connection.endpoint {
            Some(url) => (file_endpoint(url, http)?, Source::File),
            None => {
                let insecure = pick(
                    OTEL_EXPORTER_OTLP_TRACES_INSECURE,
                    OTEL_EXPORTER_OTLP_INSECURE,
                )
                .is_some_and(|(v, _)| v.trim().eq_ignore_ascii_case("true"));
                if let Some(url) = get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
                    let var = OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
                    (env_endpoint(&url, var, http, insecure)?, Source::Env(var))
                } else if let Some(url) = get(OTEL_EXPORTER_OTLP_ENDPOINT) {
                    let var = OTEL_EXPORTER_OTLP_ENDPOINT;
                    let url = env_endpoint(&url, var, http, insecure)?;
                    if http {
                        (append_traces_path(&url), Source::EnvBase(var))
                    } else {
                        (url, Source::Env(var))
                    }
                } else if http {
                    (DEFAULT_HTTP_ENDPOINT.to_owned(), Source::Default)
                } else {
                    (DEFAULT_GRPC_ENDPOINT.to_owned(), Source::Default)
                }
            }
        };

        let mut headers: Vec<Header> = connection
            .headers
            .iter()
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.clone(),
                source: Source::File,
            })
            .collect();
        if let Some((text, var)) = pick(
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            OTEL_EXPORTER_OTLP_HEADERS,
        ) {
            for (name, value) in parse_headers(&text, var)? {
                if !headers.iter().any(|h| h.name == name) {
                    headers.push(Header {
                        name,
                        value: Secret::Value(value),
                        source: Source::Env(var),
                    });
                }
            }
        }

        for header in &headers {
            if let Secret::Env(var) = &header.value
                && env(var).is_none()
            {
                warnings.push(format!(
                    "header {}: environment variable {var} is not set here; the sink cannot start without it",
                    header.name
                ));
            }
        }

        let compression = match connection.compression {
            Some(c) => (c, Source::File),
            None => match pick(
                OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
                OTEL_EXPORTER_OTLP_COMPRESSION,
            ) {
                Some((value, var)) => match value.trim() {
                    "gzip" => (Compression::Gzip, Source::Env(var)),
                    "none" => (Compression::None, Source::Env(var)),
                    other => {
                        return Err(SinkError::Env {
                            setting: format!("{var}=\"{other}\""),
                            reason: "the compression must be gzip or none".to_owned(),
                        });
                    }
                },
                None => (Compression::None, Source::Default),
            },
        };

        let timeout = match connection.timeout {
            Some(t) => (Some(t), Source::File),
            None => match pick(
                OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                OTEL_EXPORTER_OTLP_TIMEOUT,
            ) {
                Some((value, var)) => match value.trim().parse::<i64>() {
                    Ok(0) => (None, Source::Env(var)),
                    Ok(ms) if ms > 0 => (
                        Some(Duration::from_millis(ms.unsigned_abs())),
                        Source::Env(var),
                    ),
                    Ok(_) => {
                        warnings.push(format!(
                            "{var}={value} is negative; the default timeout ({}s) applies",
                            DEFAULT_TIMEOUT.as_secs()
                        ));
                        (Some(DEFAULT_TIMEOUT), Source::Default)
                    }
                    Err(_) => {
                        return Err(SinkError::Env {
                            setting: format!("{var}=\"{value}\""),
                            reason: "the timeout must be an integer number of milliseconds"
                                .to_owned(),
                        });
                    }
                },
                None => (Some(DEFAULT_TIMEOUT), Source::Default),
            },
        };

        let ca_file = match &connection.ca_file {
            Some(path) => Some((path.clone(), Source::File)),
            None => pick(
                OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CERTIFICATE,
            )
            .map(|(path, var)| (PathBuf::from(path), Source::Env(var))),
        };

        let resource = resource(defaults, &get, &mut warnings);
        Ok(Settings {
            protocol,
            endpoint,
            headers,
            compression,
            timeout,
            ca_file,
            resource,
            warnings,
        })
    }

    /// The settings as TOML comment lines for `auditspan check`: every value with its
    /// source, header values redacted.
    pub fn describe(&self, sink: &str) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = format!(
            "# sink {}: effective OTLP settings (config > OTEL_* environment > defaults)\n",
            quote(sink)
        );
        let protocol = match self.protocol.0 {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        };
        let mut line = |key: &str, value: String, source: &dyn fmt::Display| {
            out.push_str(&format!("#   {key:<11} {value}  # {source}\n"));
        };
        line(
            "protocol",
            format!("= {}", quote(protocol)),
            &self.protocol.1,
        );
        line(
            "endpoint",
            format!("= {}", quote(&self.endpoint.0)),
            &self.endpoint.1,
        );
        let compression = match self.compression.0 {
            Compression::Gzip => "gzip",
            Compression::None => "none",
        };
        line(
            "compression",
            format!("= {}", quote(compression)),
            &self.compression.1,
        );
        let timeout = match self.timeout.0 {
            Some(t) => quote(&format!("{t:?}")),
            None => quote("none (no limit)"),
        };
        line("timeout", format!("= {timeout}"), &self.timeout.1);
        match &self.ca_file {
            Some((path, source)) => line(
                "ca_file",
                format!("= {}", quote(&path.to_string_lossy())),
                source,
            ),
            None => line("ca_file", "= none".to_owned(), &"system roots only"),
        }
        for header in &self.headers {
            let source = match &header.value {
                Secret::Value(_) => header.source.to_string(),
                Secret::Env(var) => format!("{}, value from ${var}", header.source),
            };
            let value = format!("{} = {}", quote(&header.name), quote(REDACTED));
            line("header", value, &source);
        }
        for (key, value, source) in &self.resource {
            line(
                "resource",
                format!("{} = {}", quote(key), quote(value)),
                source,
            );
        }
        for warning in &self.warnings {
            out.push_str(&format!("#   warning: {warning}\n"));
        }
        out
    }
}

fn parse_protocol(value: &str, var: &str) -> Result<OtlpProtocol, SinkError> {
    match value.trim() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        "http/json" => Err(SinkError::Env {
            setting: format!("{var}=http/json"),
            reason: "OTLP/JSON is not supported; use grpc or http/protobuf".to_owned(),
        }),
        other => Err(SinkError::Env {
            setting: format!("{var}=\"{other}\""),
            reason: "the protocol must be grpc or http/protobuf".to_owned(),
        }),
    }
}

/// The file's endpoint (already checked by the config): as is, but an HTTP URL without a
/// path gets `/v1/traces`.
fn file_endpoint(url: &str, http: bool) -> Result<String, SinkError> {
    let parsed = url::Url::parse(url).map_err(|e| SinkError::Endpoint {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if http && parsed.path() == "/" && parsed.query().is_none() {
        return Ok(append_traces_path(url));
    }
    Ok(url.to_owned())
}

/// An endpoint from `var`, checked like the file's. A gRPC target without a scheme gets
/// `https://`, or `http://` when `insecure`.
fn env_endpoint(url: &str, var: &str, http: bool, insecure: bool) -> Result<String, SinkError> {
    let url = url.trim();
    let url = if !http && !url.contains("://") {
        let scheme = if insecure { "http" } else { "https" };
        format!("{scheme}://{url}")
    } else {
        url.to_owned()
    };
    crate::config::check_endpoint(&url).map_err(|reason| SinkError::Env {
        setting: var.to_owned(),
        reason,
    })?;
    Ok(url)
}

/// `base` with `v1/traces` appended after exactly one slash.
fn append_traces_path(base: &str) -> String {
    let base = base.trim_end_matches('/');
    format!("{base}/{TRACES_PATH}")
}

/// `name=value,name2=value2` with percent-encoded names and values (W3C Baggage without
/// properties). Names are lower-cased (HTTP headers are case-insensitive; gRPC metadata
/// keys must be lower case). Errors name the variable and the entry's position only.
fn parse_headers(text: &str, var: &str) -> Result<Vec<(String, String)>, SinkError> {
    let env_error = |reason: String| SinkError::Env {
        setting: var.to_owned(),
        reason,
    };
    let entries = parse_list(text).map_err(env_error)?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, (name, value)) in entries.into_iter().enumerate() {
        let name = name.to_ascii_lowercase();
        if !name.chars().all(token) {
            return Err(env_error(format!(
                "entry {} has an invalid header name \"{name}\"",
                i + 1
            )));
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(env_error(format!(
                "the value of header {name} holds control characters"
            )));
        }
        // A later entry for the same name replaces the earlier one.
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    }
    Ok(headers)
}

/// The resource attributes (see the module doc for the order of precedence).
fn resource(
    defaults: &ResourceDefaults,
    get: &dyn Fn(&'static str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<(String, String, Source)> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    if let Some(text) = get(OTEL_RESOURCE_ATTRIBUTES) {
        match parse_list(&text) {
            Ok(list) => {
                for (key, value) in list {
                    attributes.retain(|(k, _)| *k != key);
                    attributes.push((key, value));
                }
            }
            Err(e) => warnings.push(format!(
                "{OTEL_RESOURCE_ATTRIBUTES} is discarded whole: {e}"
            )),
        }
    }
    let mut take = |key: &str| {
        let index = attributes.iter().position(|(k, _)| k == key)?;
        Some(attributes.remove(index).1)
    };
    let attrs = Source::Env(OTEL_RESOURCE_ATTRIBUTES);
    let from_attributes = take("service.name");
    let service_name = if defaults.service_name_given {
        (defaults.service_name.clone(), Source::File)
    } else if let Some(name) = get(OTEL_SERVICE_NAME) {
        (name, Source::Env(OTEL_SERVICE_NAME))
    } else if let Some(name) = from_attributes {
        (name, attrs)
    } else {
        (defaults.service_name.clone(), Source::Default)
    };
    let from_attributes = take("service.instance.id");
    let instance_id = if defaults.instance_id_given {
        (defaults.instance_id.clone(), Source::File)
    } else if let Some(id) = from_attributes {
        (id, attrs)
    } else {
        (defaults.instance_id.clone(), Source::Default)
    };
    let host_name = match take("host.name") {
        Some(name) => (name, attrs),
        None => (defaults.host_name.clone(), Source::Default),
    };
    let mut out = vec![
        ("service.name".to_owned(), service_name.0, service_name.1),
        (
            "service.instance.id".to_owned(),
            instance_id.0,
            instance_id.1,
        ),
        ("host.name".to_owned(), host_name.0, host_name.1),
    ];
    out.extend(attributes.into_iter().map(|(k, v)| (k, v, attrs)));
    out
}

/// `key=value` entries separated by commas, whitespace around each trimmed, keys and
/// values percent-decoded. Errors never quote a value.
fn parse_list(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let position = i + 1;
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!("entry {position} has no '='"));
        };
        let key = percent_decode(key.trim())
            .ok_or_else(|| format!("entry {position}: the key is not valid percent-encoding"))?;
        if key.is_empty() {
            return Err(format!("entry {position} has an empty key"));
        }
        let value = percent_decode(value.trim()).ok_or_else(|| {
            format!("entry {position} ({key}): the value is not valid percent-encoding")
        })?;
        out.push((key, value));
    }
    Ok(out)
}

/// `%XX` sequences decoded; `None` for a broken sequence or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Connection;

    fn defaults() -> ResourceDefaults {
        ResourceDefaults {
            service_name: "vault".into(),
            service_name_given: false,
            instance_id: "host-1".into(),
            instance_id_given: false,
            host_name: "host-1".into(),
        }
    }

    fn resolve(sink: &OtlpConfig, env: &[(&str, &str)]) -> Result<Settings, String> {
        resolve_with(sink, &defaults(), env)
    }

    fn resolve_with(
        sink: &OtlpConfig,
        defaults: &ResourceDefaults,
        env: &[(&str, &str)],
    ) -> Result<Settings, String> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::resolve(sink, defaults, &|name| map.get(name).cloned()).map_err(|e| e.to_string())
    }

    fn file(protocol: Option<OtlpProtocol>, endpoint: Option<&str>) -> OtlpConfig {
        OtlpConfig {
            protocol,
            connection: Connection {
                endpoint: endpoint.map(str::to_owned),
                ..Connection::default()
            },
        }
    }

    /// Nothing set: gRPC to localhost:4317, no compression, 10 s, the config's resource.
    #[test]
    fn defaults_without_file_or_environment() {
        let s = resolve(&OtlpConfig::default(), &[]).unwrap();
        assert_eq!(s.protocol, (OtlpProtocol::Grpc, Source::Default));
        assert_eq!(
            s.endpoint,
            ("http://localhost:4317".to_owned(), Source::Default)
        );
        assert_eq!(s.compression, (Compression::None, Source::Default));
        assert_eq!(s.timeout, (Some(Duration::from_secs(10)), Source::Default));
        assert_eq!(s.ca_file, None);
        assert!(s.headers.is_empty());
        assert_eq!(
            s.resource,
            [
                (
                    "service.name".to_owned(),
                    "vault".to_owned(),
                    Source::Default
                ),
                (
                    "service.instance.id".to_owned(),
                    "host-1".to_owned(),
                    Source::Default
                ),
                ("host.name".to_owned(), "host-1".to_owned(), Source::Default),
            ]
        );
        assert!(s.warnings.is_empty());

        let s = resolve(&file(Some(OtlpProtocol::HttpProtobuf), None), &[]).unwrap();
        assert_eq!(s.endpoint.0, "http://localhost:4318/v1/traces");
    }

    /// The generic endpoint is a base URL for HTTP (`v1/traces` appended after one slash)
    /// and the target itself for gRPC; the traces endpoint is used as is and wins.
    #[test]
    fn endpoint_rules() {
        let http = [(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf")];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Source);
        let cases: &[Case<'_>] = &[
            (
                &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318")],
                "http://collector:4318/v1/traces",
                Source::EnvBase(OTEL_EXPORTER_OTLP_ENDPOINT),
            ),
            (
                &[(
                    OTEL_EXPORTER_OTLP_ENDPOINT,
                    "http://collector:4318/mycollector/",
                )],
                "http://collector:4318/mycollector/v1/traces",
                Source::EnvBase(OTEL_EXPORTER_OTLP_ENDPOINT),
            ),
            (
                &[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://collector:4318")],
                "http://collector:4318",
                Source::Env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
            ),
            (
                &[
                    (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4318"),
                    (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "https://traces:4318/x"),
                ],
                "https://traces:4318/x",
                Source::Env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
            ),
        ];
        for (env, expected, source) in cases {
            let mut env = env.to_vec();
            env.extend(http);
            let s = resolve(&OtlpConfig::default(), &env).unwrap();
            assert_eq!(s.endpoint, ((*expected).to_owned(), *source), "{env:?}");
        }

        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317")],
        )
        .unwrap();
        assert_eq!(s.endpoint.0, "http://collector:4317", "gRPC: no path");
        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4317")],
        )
        .unwrap();
        assert_eq!(s.endpoint.0, "https://collector:4317", "no scheme: secure");
        let s = resolve(
            &OtlpConfig::default(),
            &[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "collector:4317"),
                (OTEL_EXPORTER_OTLP_INSECURE, "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.endpoint.0, "http://collector:4317");

        // The file wins; an HTTP endpoint without a path gets /v1/traces.
        let env = [(OTEL_EXPORTER_OTLP_ENDPOINT, "http://env:4318")];
        let s = resolve(
            &file(
                Some(OtlpProtocol::HttpProtobuf),
                Some("https://api.honeycomb.io"),
            ),
            &env,
        )
        .unwrap();
        assert_eq!(
            s.endpoint,
            (
                "https://api.honeycomb.io/v1/traces".to_owned(),
                Source::File
            )
        );
        let s = resolve(
            &file(
                Some(OtlpProtocol::HttpProtobuf),
                Some("https://otel.example/custom/path"),
            ),
            &env,
        )
        .unwrap();
        assert_eq!(s.endpoint.0, "https://otel.example/custom/path");
        let s = resolve(&file(None, Some("https://api.honeycomb.io:443")), &env).unwrap();
        assert_eq!(s.endpoint.0, "https://api.honeycomb.io:443", "gRPC as is");

        for bad in ["ftp://x", "http://user:pw@x:4318", "not a url"] {
            let err = resolve(
                &file(Some(OtlpProtocol::HttpProtobuf), None),
                &[(OTEL_EXPORTER_OTLP_ENDPOINT, bad)],
            )
            .unwrap_err();
            assert!(err.starts_with(OTEL_EXPORTER_OTLP_ENDPOINT), "{err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    /// Protocol: file > traces-specific > generic > grpc; http/json is a clear error.
    #[test]
    fn protocol_precedence_and_errors() {
        let s = resolve(
            &OtlpConfig::default(),
            &[
                (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
                (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/protobuf"),
            ],
        )
        .unwrap();
        assert_eq!(
            s.protocol,
            (
                OtlpProtocol::HttpProtobuf,
                Source::Env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
            )
        );
        let s = resolve(
            &file(Some(OtlpProtocol::Grpc), None),
            &[(OTEL_EXPORTER_OTLP_PROTOCOL, "http/json")],
        )
        .unwrap();
        assert_eq!(s.protocol, (OtlpProtocol::Grpc, Source::File));
        let err = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_PROTOCOL, "http/json")],
        )
        .unwrap_err();
        assert!(err.contains("OTLP/JSON is not supported"), "{err}");
        let err = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "thrift")],
        )
        .unwrap_err();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"thrift\""),
            "{err}"
        );
        // An empty variable is unset.
        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "")],
        )
        .unwrap();
        assert_eq!(s.protocol, (OtlpProtocol::Grpc, Source::Default));
    }

    /// Headers: percent-decoded, lower-cased; the file wins per name; the traces variable
    /// replaces the generic one; errors never quote a value.
    #[test]
    fn headers_merge_and_decode() {
        let sink = OtlpConfig {
            protocol: None,
            connection: Connection {
                headers: vec![
                    ("authorization".into(), Secret::Value("from-file".into())),
                    ("x-team".into(), Secret::Env("TEAM_KEY".into())),
                ],
                ..Connection::default()
            },
        };
        let s = resolve(
            &sink,
            &[(
                OTEL_EXPORTER_OTLP_HEADERS,
                " Authorization = from-env , X-Scope=a%20b%2Cc%3D , empty= ",
            )],
        )
        .unwrap();
        assert_eq!(s.warnings.len(), 1, "TEAM_KEY is unset: {:?}", s.warnings);
        assert!(s.warnings[0].contains("TEAM_KEY"), "{:?}", s.warnings);
        let headers: Vec<(&str, &Secret, Source)> = s
            .headers
            .iter()
            .map(|h| (h.name.as_str(), &h.value, h.source))
            .collect();
        let env = Source::Env(OTEL_EXPORTER_OTLP_HEADERS);
        assert_eq!(
            headers,
            [
                (
                    "authorization",
                    &Secret::Value("from-file".into()),
                    Source::File
                ),
                ("x-team", &Secret::Env("TEAM_KEY".into()), Source::File),
                ("x-scope", &Secret::Value("a b,c=".into()), env),
                ("empty", &Secret::Value(String::new()), env),
            ]
        );

        let s = resolve(
            &OtlpConfig::default(),
            &[
                (OTEL_EXPORTER_OTLP_HEADERS, "a=1,b=2"),
                (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "c=3"),
            ],
        )
        .unwrap();
        let names: Vec<&str> = s.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["c"]);

        for bad in [
            "novalue",
            "k=%zz-secret",
            "bad name=secret",
            "k=sec\u{1}ret",
        ] {
            let err =
                resolve(&OtlpConfig::default(), &[(OTEL_EXPORTER_OTLP_HEADERS, bad)]).unwrap_err();
            assert!(err.starts_with(OTEL_EXPORTER_OTLP_HEADERS), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    /// Timeout in integer milliseconds (0 = no limit, negative warns), compression gzip or
    /// none, CA file from the environment; the file wins over each.
    #[test]
    fn timeout_compression_and_certificate() {
        let env = [
            (OTEL_EXPORTER_OTLP_TIMEOUT, "2500"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
            (OTEL_EXPORTER_OTLP_CERTIFICATE, "/etc/ca.pem"),
        ];
        let s = resolve(&OtlpConfig::default(), &env).unwrap();
        assert_eq!(
            s.timeout,
            (
                Some(Duration::from_millis(2500)),
                Source::Env(OTEL_EXPORTER_OTLP_TIMEOUT)
            )
        );
        assert_eq!(
            s.compression,
            (
                Compression::Gzip,
                Source::Env(OTEL_EXPORTER_OTLP_COMPRESSION)
            )
        );
        assert_eq!(
            s.ca_file,
            Some((
                PathBuf::from("/etc/ca.pem"),
                Source::Env(OTEL_EXPORTER_OTLP_CERTIFICATE)
            ))
        );

        let sink = OtlpConfig {
            protocol: None,
            connection: Connection {
                timeout: Some(Duration::from_secs(3)),
                compression: Some(Compression::None),
                ca_file: Some(PathBuf::from("/file/ca.pem")),
                ..Connection::default()
            },
        };
        let s = resolve(&sink, &env).unwrap();
        assert_eq!(s.timeout, (Some(Duration::from_secs(3)), Source::File));
        assert_eq!(s.compression, (Compression::None, Source::File));
        assert_eq!(s.ca_file.unwrap().0, PathBuf::from("/file/ca.pem"));

        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "0")],
        )
        .unwrap();
        assert_eq!(s.timeout.0, None);
        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_EXPORTER_OTLP_TIMEOUT, "-5")],
        )
        .unwrap();
        assert_eq!(s.timeout, (Some(DEFAULT_TIMEOUT), Source::Default));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        for (var, bad) in [
            (OTEL_EXPORTER_OTLP_TIMEOUT, "10s"),
            (OTEL_EXPORTER_OTLP_COMPRESSION, "zstd"),
        ] {
            let err = resolve(&OtlpConfig::default(), &[(var, bad)]).unwrap_err();
            assert!(err.contains(var), "{err}");
        }
        let s = resolve(
            &OtlpConfig::default(),
            &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")],
        )
        .unwrap();
        assert!(s.warnings[0].contains("not supported"), "{:?}", s.warnings);
    }

    /// Resource: a set service_name/instance_id beats the environment; unset, the
    /// environment beats the defaults; OTEL_SERVICE_NAME beats service.name in
    /// OTEL_RESOURCE_ATTRIBUTES; other attributes follow in their order.
    #[test]
    fn resource_precedence() {
        let env = [
            (OTEL_SERVICE_NAME, "from-service-name"),
            (
                OTEL_RESOURCE_ATTRIBUTES,
                "service.name=from-attrs,deployment.environment=prod%2Ceu,service.instance.id=i-7,host.name=h,team=a=b",
            ),
        ];
        let s = resolve(&OtlpConfig::default(), &env).unwrap();
        let attrs = Source::Env(OTEL_RESOURCE_ATTRIBUTES);
        let entry = |k: &str, v: &str, source| (k.to_owned(), v.to_owned(), source);
        assert_eq!(
            s.resource,
            [
                entry(
                    "service.name",
                    "from-service-name",
                    Source::Env(OTEL_SERVICE_NAME)
                ),
                entry("service.instance.id", "i-7", attrs),
                entry("host.name", "h", attrs),
                entry("deployment.environment", "prod,eu", attrs),
                entry("team", "a=b", attrs),
            ]
        );
        let s = resolve(&OtlpConfig::default(), &env[1..]).unwrap();
        assert_eq!(s.resource[0].1, "from-attrs");

        let given = ResourceDefaults {
            service_name: "from-file".into(),
            service_name_given: true,
            instance_id: "file-instance".into(),
            instance_id_given: true,
            host_name: "host-1".into(),
        };
        let s = resolve_with(&OtlpConfig::default(), &given, &env).unwrap();
        assert_eq!(s.resource[0].1, "from-file");
        assert_eq!(s.resource[0].2, Source::File);
        assert_eq!(s.resource[1].1, "file-instance");
        assert_eq!(s.resource.len(), 5, "the other attributes still apply");

        // A broken OTEL_RESOURCE_ATTRIBUTES is discarded whole, with a warning.
        let s = resolve(
            &OtlpConfig::default(),
            &[(OTEL_RESOURCE_ATTRIBUTES, "a=1,b=%G0,service.name=x")],
        )
        .unwrap();
        assert_eq!(
            s.resource,
            resolve(&OtlpConfig::default(), &[]).unwrap().resource
        );
        assert!(s.warnings[0].contains(OTEL_RESOURCE_ATTRIBUTES));
    }

    /// `describe` shows sources and header names, never header values.
    #[test]
    fn describe_redacts_header_values() {
        let sink = OtlpConfig {
            protocol: None,
            connection: Connection {
                headers: vec![(
                    "authorization".into(),
                    Secret::Value("Bearer s3cret".into()),
                )],
                ..Connection::default()
            },
        };
        let s = resolve(
            &sink,
            &[
                (OTEL_EXPORTER_OTLP_HEADERS, "x-api-key=t0psecret"),
                (OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf"),
                (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            ],
        )
        .unwrap();
        let text = s.describe("otlp");
        assert!(
            !text.contains("s3cret") && !text.contains("t0psecret"),
            "{text}"
        );
        assert!(
            text.contains("header      \"authorization\" = \"<redacted>\"  # config"),
            "{text}"
        );
        assert!(text.contains("\"x-api-key\" = \"<redacted>\""), "{text}");
        assert!(
            text.contains(
                "= \"http://c:4318/v1/traces\"  # OTEL_EXPORTER_OTLP_ENDPOINT + v1/traces"
            ),
            "{text}"
        );
        assert!(
            text.contains("\"http/protobuf\"  # OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
    }
}
