//! Memory quantities and durations as users write them in manifests.
//!
//! Manifests are written by people, so both forms Kubernetes users know are accepted:
//! a plain integer (bytes, or seconds for durations) or a string with a unit
//! (`512Mi`, `300M`, `1.5Gi`; `500ms`, `30s`, `2m`, `1h30m`). The raw form keeps what the
//! user wrote (so `invok apply` can write it back unchanged); parsing into numbers happens
//! during validation, where errors can name the field.
//!
//! Both are parsed here by hand, because their grammar is a contract: the JSON Schema
//! and the CRD publish it (`^[0-9]+(\.[0-9]+)?([a-zA-Z]+[0-9.a-zA-Z]*)?$`) and users
//! validate manifests against it in CI. The crates that parse durations (jiff,
//! humantime) accept a wider, different grammar (spaces, unit words, ISO 8601) and print
//! `1s500ms` where manifests say `1500ms`, so the operator would accept what the schema
//! rejects and show what users did not write; k8s-openapi's `Quantity` is a string
//! without arithmetic, and the small quantity crates return floats or lack these errors
//! (the "Kubernetes spells it" hint for `300MB`, overflow named as such).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value written either as an integer or as a string, as Kubernetes' `IntOrString`.
///
/// ```
/// use invok::api::IntOrString;
/// let q: IntOrString = serde_yaml::from_str("512Mi").unwrap();
/// assert_eq!(q.to_bytes(), Ok(512 * 1024 * 1024));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntOrString {
    /// A plain integer: bytes for memory, seconds for durations.
    Int(u64),
    /// A string with an optional unit suffix.
    String(String),
}

impl IntOrString {
    /// The value in bytes, accepting Kubernetes quantity suffixes.
    pub fn to_bytes(&self) -> Result<u64, String> {
        match self {
            IntOrString::Int(n) => Ok(*n),
            IntOrString::String(s) => parse_bytes(s),
        }
    }

    /// The value as a duration; a plain integer counts as seconds.
    pub fn to_duration(&self) -> Result<Duration, String> {
        match self {
            IntOrString::Int(n) => Ok(Duration::from_secs(*n)),
            IntOrString::String(s) => parse_duration(s),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> Self {
        IntOrString::String(s.to_string())
    }
}

impl From<u64> for IntOrString {
    fn from(n: u64) -> Self {
        IntOrString::Int(n)
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_u64(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer or a string with a unit, like 512Mi or 30s")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                u64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("must not be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for IntOrString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntOrString".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A non-negative integer, or a string with a unit (512Mi, 300M, 1G; 500ms, 30s, 2m, 1h).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([a-zA-Z]+[0-9.a-zA-Z]*)?$"}
            ]
        })
    }
}

/// Parses a Kubernetes memory quantity (`512Mi`, `300M`, `1.5Gi`, `1e9` is not accepted) into bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let hint = "expected bytes or a quantity like 512Mi, 300M, 1.5Gi";
    if num.is_empty() {
        return Err(format!("invalid quantity {s:?}: {hint}"));
    }
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "K" | "KB" | "MB" | "GB" | "KiB" | "MiB" | "GiB" => {
            return Err(format!(
                "invalid unit {unit:?} in {s:?}: Kubernetes spells it k, M, G (powers of 1000) or Ki, Mi, Gi (powers of 1024)"
            ))
        }
        _ => return Err(format!("invalid unit {unit:?} in {s:?}: {hint}")),
    };
    let value = if let Some((int, frac)) = num.split_once('.') {
        if int.is_empty() || frac.is_empty() || frac.contains('.') {
            return Err(format!("invalid quantity {s:?}: {hint}"));
        }
        let int: u64 = int
            .parse()
            .map_err(|_| format!("invalid quantity {s:?}: {hint}"))?;
        let scale = 10u64
            .checked_pow(frac.len() as u32)
            .ok_or_else(|| format!("too many decimals in {s:?}"))?;
        let frac: u64 = frac
            .parse()
            .map_err(|_| format!("invalid quantity {s:?}: {hint}"))?;
        let whole = int.checked_mul(multiplier);
        let part = (frac as u128 * multiplier as u128 / scale as u128) as u64;
        whole.and_then(|w| w.checked_add(part))
    } else {
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid quantity {s:?}: {hint}"))?;
        n.checked_mul(multiplier)
    };
    value.ok_or_else(|| format!("quantity {s:?} is too large"))
}

/// The longest duration accepted: Go's and so Kubernetes' (`time.Duration`, an `i64` of
/// nanoseconds), about 292 years.
pub const MAX_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

/// Parses a duration such as `500ms`, `30s`, `2m`, `1h` or `1m30s`; a bare number is seconds.
///
/// Exact to the nanosecond (decimals are read as decimals, not floats), and at most
/// [`MAX_DURATION`], as Kubernetes: what parses, [`format_duration`] prints back to the
/// same value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let hint = "expected a duration like 500ms, 30s, 2m or 1h";
    let out_of_range = || {
        format!("duration {s:?} is out of range: at most 2562047h47m16.854775807s (as Kubernetes)")
    };
    if t.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return decimal_nanos(t, NANOS_PER_SEC)
            .and_then(nanos_to_duration)
            .ok_or_else(out_of_range);
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit; {hint}"))?;
        let number = &rest[..digits];
        if digits == 0 || number.matches('.').count() > 1 || number == "." {
            return Err(format!("invalid duration {s:?}: {hint}"));
        }
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per_unit = match unit {
            "ms" => NANOS_PER_SEC / 1000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => return Err(format!("invalid unit {unit:?} in duration {s:?}: {hint}")),
        };
        total = decimal_nanos(number, per_unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(out_of_range)?;
    }
    nanos_to_duration(total).ok_or_else(out_of_range)
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `number` (digits, at most one `.`) units of `per_unit` nanoseconds, exact where the
/// unit allows (a fraction of a unit below a nanosecond is dropped); `None` on overflow.
fn decimal_nanos(number: &str, per_unit: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int.checked_mul(per_unit)?;
    let (mut num, mut den) = (0u128, 1u128);
    for d in frac.bytes().take(30) {
        num = num * 10 + u128::from(d - b'0');
        den *= 10;
    }
    nanos = nanos.checked_add(num.checked_mul(per_unit)? / den)?;
    Some(nanos)
}

fn nanos_to_duration(nanos: u128) -> Option<Duration> {
    let d = Duration::new(
        u64::try_from(nanos / NANOS_PER_SEC).ok()?,
        (nanos % NANOS_PER_SEC) as u32,
    );
    (d <= MAX_DURATION).then_some(d)
}

/// Formats a duration the way manifests write it (`30s`, `1m30s`, `500ms`, `1500ms`;
/// below a millisecond, `1.5ms`): what [`parse_duration`] reads back to the same value.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if !nanos.is_multiple_of(NANOS_PER_SEC) {
        let (ms, below) = (nanos / 1_000_000, nanos % 1_000_000);
        return match below {
            0 => format!("{ms}ms"),
            _ => format!("{ms}.{}ms", format!("{below:06}").trim_end_matches('0')),
        };
    }
    let secs = nanos / NANOS_PER_SEC;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_quantities_accept_every_kubernetes_suffix() {
        let cases = [
            ("0", 0),
            ("300000000", 300_000_000),
            ("1k", 1_000),
            ("300M", 300_000_000),
            ("1G", 1_000_000_000),
            ("2T", 2_000_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ki", 1024),
            ("512Mi", 512 << 20),
            ("1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("0.5M", 500_000),
            ("1Ti", 1 << 40),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bytes(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn byte_quantities_reject_wrong_forms_with_a_hint() {
        for bad in ["", "Mi", "12XB", "-5", "1.2.3M", "1.M", "99999999999E"] {
            assert!(parse_bytes(bad).is_err(), "{bad} should fail");
        }
        let err = parse_bytes("300MB").unwrap_err();
        assert!(err.contains("Kubernetes spells it"), "{err}");
    }

    #[test]
    fn durations_accept_ms_s_m_h_and_combinations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("45", Duration::from_secs(45)),
            ("1m30s500ms", Duration::from_millis(90_500)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn durations_reject_missing_or_unknown_units() {
        for bad in ["", "s", "10x", "1d", "ms10", "-1s", "1.2.3s", ".s", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for d in [
            0u64, 1, 500, 1000, 1500, 30_000, 90_000, 3_600_000, 3_690_000,
        ] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for d in [
            Duration::from_nanos(1_500),
            Duration::new(1, 500_000),
            MAX_DURATION,
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
        }
        assert_eq!(format_duration(Duration::from_nanos(1_500_000)), "1.5ms");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1500ms");
    }

    #[test]
    fn int_or_string_reads_integers_and_strings_from_yaml() {
        let i: IntOrString = serde_yaml::from_str("42").unwrap();
        assert_eq!(i, IntOrString::Int(42));
        let s: IntOrString = serde_yaml::from_str("30s").unwrap();
        assert_eq!(s.to_duration(), Ok(Duration::from_secs(30)));
        let neg = serde_yaml::from_str::<IntOrString>("-3").unwrap_err();
        assert!(neg.to_string().contains("must not be negative"), "{neg}");
        let float = serde_yaml::from_str::<IntOrString>("1.5").unwrap_err();
        assert!(float.to_string().contains("integer or a string"), "{float}");
    }
}
