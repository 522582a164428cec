//! The value formats of the config file: durations, sizes, file modes and listen
//! addresses, parsed from what the file says and printed back.
//!
//! Invariants: every parser's error quotes the value it refuses; a value printed by
//! [`FriendlyDuration`] or [`format_size`] parses back to the same value, which is what lets
//! `auditspan check` print a file that reads back equal. The accepted forms are documented
//! for operators in `docs/configuration.md` ("Formats").

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::Size;

pub(super) const KIB: u64 = 1 << 10;
pub(super) const MIB: u64 = 1 << 20;
pub(super) const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A positive duration in jiff's friendly format (or ISO 8601).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text.trim().parse().map_err(|e| {
        format!("\"{text}\" is not a duration ({e}); write e.g. \"10s\", \"5ms\", \"1m 30s\"")
    })?;
    let duration = Duration::try_from(signed)
        .map_err(|_| format!("\"{text}\" is negative; the duration must be positive"))?;
    if duration.is_zero() {
        return Err(format!("\"{text}\" is zero; the duration must be positive"));
    }
    Ok(duration)
}

/// A positive size in bytes: a number of bytes, or a number with a binary (`KiB`) or
/// decimal (`KB`, `K`) unit.
pub(super) fn parse_size(size: &Size) -> Result<u64, String> {
    let bytes = match size {
        Size::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("{n} is negative; the size must be positive"))?
        }
        Size::Text(text) => {
            let parsed: bytesize::ByteSize = text.trim().parse().map_err(|e| {
                format!("\"{text}\" is not a size ({e}); write e.g. \"4MiB\", \"64 MiB\", \"1GiB\" or a number of bytes")
            })?;
            // bytesize saturates on overflow instead of failing.
            if parsed.as_u64() == u64::MAX {
                return Err(format!("\"{text}\" is too large"));
            }
            parsed.as_u64()
        }
    };
    if bytes == 0 {
        return Err(format!(
            "{} is zero; the size must be positive",
            size_display(size)
        ));
    }
    Ok(bytes)
}

fn size_display(size: &Size) -> String {
    match size {
        Size::Bytes(n) => n.to_string(),
        Size::Text(t) => format!("\"{t}\""),
    }
}

/// The permission bits of a file mode written as an octal string: `"600"` or `"0600"`.
/// A string, not a TOML integer, because `mode = 600` would silently mean decimal 600.
pub(super) fn parse_mode(text: &str) -> Result<u32, String> {
    let well_formed =
        (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let mode = if well_formed {
        u32::from_str_radix(text, 8).ok()
    } else {
        None
    };
    match mode {
        Some(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "\"{text}\" is not a file mode; write 3 or 4 octal digits up to \"0777\", e.g. \"0600\""
        )),
    }
}

/// A socket address to listen on, or `""` for none.
pub(super) fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!(
            "\"{text}\" is not a socket address; write IP:PORT such as \"127.0.0.1:9464\" or \"[::1]:9464\", or \"\" to disable"
        )
    })
}

/// Prints a duration in the friendly format `parse_duration` reads back.
pub(super) struct FriendlyDuration(pub(super) Duration);

impl fmt::Display for FriendlyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::SignedDuration::try_from(self.0) {
            Ok(d) => write!(f, "{d:#}"),
            // Beyond i64 seconds (~292 billion years): cannot come from a parsed config.
            Err(_) => write!(f, "{}s", self.0.as_secs()),
        }
    }
}

/// A size in the largest unit that divides it exactly, else in bytes.
/// Decimal units are candidates too, so `"10GB"` prints back as itself, not `"9765625KiB"`.
pub(super) fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 8] = [
        (TIB, "TiB"),
        (1_000_000_000_000, "TB"),
        (GIB, "GiB"),
        (1_000_000_000, "GB"),
        (MIB, "MiB"),
        (1_000_000, "MB"),
        (KIB, "KiB"),
        (1_000, "KB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}
