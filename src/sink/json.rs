//! JSON pieces the HTTP JSON sinks (Zipkin, Honeycomb) share: ids as hex strings, values
//! written as JSON text inside a JSON string, strings cut to a byte limit, and RFC 3339
//! times with nanoseconds. All of them serialize straight into serde_json's output, with no
//! temporary `String` or `serde_json::Value`.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::attr::AttrRef;

/// Lowercase hex of an id (8 or 16 bytes) as a JSON string, formatted on the stack.
pub struct Hex<'a, const N: usize>(pub &'a [u8; N]);

impl<const N: usize> Serialize for Hex<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 32];
        let digits = &mut buf[..(2 * N).min(32)];
        for (pair, b) in digits.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII, so this never takes the error branch.
        s.serialize_str(std::str::from_utf8(digits).unwrap_or_default())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A string cut to at most `.1` bytes.
pub struct Cut<'a>(pub &'a str, pub usize);

impl Serialize for Cut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(cut(self.0, self.1))
    }
}

/// An attribute value's JSON text (`[1,2]`, `1.5`, `["a","b"]`) as a JSON string
/// (`"[1,2]"`), cut to at most `max` bytes of text. Written through serde_json's
/// `collect_str`, which escapes as it goes: nothing is allocated.
pub struct JsonText<'a> {
    pub value: AttrRef<'a>,
    pub max: usize,
}

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for JsonText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Budget { f, left: self.max };
        // `Budget` stops writing at its limit without failing, so an error here is the
        // formatter's own.
        serde_json::to_writer(&mut out, &self.value).map_err(|_| fmt::Error)
    }
}

/// An `io::Write` over a formatter that keeps at most `left` bytes and drops the rest.
struct Budget<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    left: usize,
}

impl std::io::Write for Budget<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // serde_json writes whole escape sequences and runs of a string cut at ASCII bytes,
        // so each piece is UTF-8; a piece that were not would be replaced, not lost.
        let text = String::from_utf8_lossy(buf);
        let kept = cut(&text, self.left);
        self.f
            .write_str(kept)
            .map_err(|_| std::io::Error::other("formatter error"))?;
        // Once something is cut, nothing after it is kept either.
        self.left = if kept.len() < text.len() {
            0
        } else {
            self.left - kept.len()
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `unix_nano` as RFC 3339 in UTC with nine fractional digits,
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`. Times before 1970 are written as the epoch (Vault's
/// clock is never there; the format has no room for negative years).
pub struct Rfc3339Nanos(pub i64);

impl Rfc3339Nanos {
    /// The 30 ASCII bytes of the time.
    pub fn bytes(&self) -> [u8; 30] {
        let nanos = self.0.max(0);
        let secs = nanos / 1_000_000_000;
        let frac = nanos % 1_000_000_000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, rem / 3600);
        put(14, 2, rem / 60 % 60);
        put(17, 2, rem % 60);
        put(20, 9, frac);
        out
    }
}

impl Serialize for Rfc3339Nanos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.bytes();
        // Digits and separators only: always UTF-8.
        s.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default())
    }
}

/// Year, month, day of `days` since 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_jiff() {
        for nanos in [
            0,
            1,
            951_782_400_000_000_000,       // 2000-02-29
            1_741_708_800_100_000_000,     // 2025-03-11T16:00:00.1
            1_795_625_839_459_973_533,     // the OpenBao session
            4_107_542_399_999_999_999,     // 2100-02-28T23:59:59.999999999
            i64::MAX,                      // 2262-04-11
            1_709_164_800_000_000_000 - 1, // the nanosecond before 2024-02-29
        ] {
            let ours = String::from_utf8(Rfc3339Nanos(nanos).bytes().to_vec()).unwrap();
            let parsed: jiff::Timestamp = ours.parse().unwrap();
            assert_eq!(parsed.as_nanosecond(), i128::from(nanos), "{ours}");
        }
        assert_eq!(
            serde_json::to_string(&Rfc3339Nanos(-5)).unwrap(),
            "\"1970-01-01T00:00:00.000000000Z\""
        );
    }

    #[test]
    fn json_text_is_serde_jsons_text_in_a_string() {
        let strings = ["a\"b", "é", "x"];
        let text = |value: AttrRef<'_>, max| {
            serde_json::to_string(&JsonText { value, max })
                .map(|s| serde_json::from_str::<String>(&s).unwrap())
                .unwrap()
        };
        assert_eq!(text(AttrRef::Int(-3), usize::MAX), "-3");
        assert_eq!(
            text(AttrRef::Float(1e20), usize::MAX),
            serde_json::to_string(&1e20).unwrap()
        );
        assert_eq!(text(AttrRef::Bool(true), usize::MAX), "true");
        assert_eq!(text(AttrRef::IntArray(&[1, 2]), usize::MAX), "[1,2]");
        let attrs: crate::attr::Attributes = [(
            "s",
            crate::attr::AttrValue::StrArray(strings.iter().map(|s| s.to_string()).collect()),
        )]
        .into_iter()
        .collect();
        let value = attrs.value(0);
        assert_eq!(text(value, usize::MAX), r#"["a\"b","é","x"]"#);
        // Cut on a char boundary: `é` is two bytes and does not fit in 10.
        assert_eq!(text(value, 10), r#"["a\"b",""#);
        assert_eq!(text(value, 11), r#"["a\"b","é"#);
        assert_eq!(text(value, 12), r#"["a\"b","é""#);
    }

    #[test]
    fn cut_keeps_whole_chars() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("héllo", 100), "héllo");
        assert_eq!(serde_json::to_string(&Cut("abc", 2)).unwrap(), "\"ab\"");
    }

    #[test]
    fn hex_ids() {
        assert_eq!(
            serde_json::to_string(&Hex(&[0u8, 0xff, 0x10, 0x0a, 1, 2, 3, 0xab])).unwrap(),
            "\"00ff100a010203ab\""
        );
    }
}
