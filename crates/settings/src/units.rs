//! Durations (`5`, `500ms`, `30s`, `2m`) and byte sizes (`1048576`, `1MiB`).

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// Parses a duration: an integer is seconds, otherwise a number with a unit
/// (`ms`, `s`, `m`, `h`, as humantime reads them: `500ms`, `30s`, `2m`).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    // humantime's own messages (`expected number at 0`) point into a string
    // the reader does not see; say what was wrong with the value instead.
    humantime::parse_duration(raw).map_err(|e| {
        let what = match e {
            humantime::DurationError::UnknownUnit { unit, .. } if !unit.is_empty() => {
                format!("`{unit}` is not a unit of time")
            }
            humantime::DurationError::NumberOverflow => format!("`{raw}` is too large"),
            _ => format!("`{raw}` is not a duration"),
        };
        format!(
            "{what}; expected whole seconds (`5`) or a number with a unit (`500ms`, `30s`, `2m`)"
        )
    })
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Secs(u64),
    Float(f64),
    Text(String),
}

/// `serde(with)` helper for durations.
pub mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match DurationRepr::deserialize(d)? {
            DurationRepr::Secs(s) => Ok(Duration::from_secs(s)),
            DurationRepr::Float(f) if (0.0..1e12).contains(&f) => Ok(Duration::from_secs_f64(f)),
            DurationRepr::Float(_) => Err(serde::de::Error::custom(
                "expected a non-negative number of seconds",
            )),
            DurationRepr::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A size in bytes; reads `1048576`, `1MiB`, `512KiB`, `64kB`, `1MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a size with an optional unit (B, kB/KB, KiB, MB, MiB).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (digits, unit) = raw.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{raw}` is not a size; expected bytes (`1048576`) or `1MiB`"))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" | "k" | "K" => 1_000,
            "KiB" => 1_024,
            "MB" | "M" => 1_000_000,
            "MiB" => 1_048_576,
            other => {
                return Err(format!(
                    "unknown size unit `{other}`; use B, KiB, MiB, kB or MB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{raw}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 && self.0.is_multiple_of(1_048_576) {
            write!(f, "{}MiB", self.0 / 1_048_576)
        } else if self.0 != 0 && self.0.is_multiple_of(1_024) {
            write!(f, "{}KiB", self.0 / 1_024)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(ByteSize(n)),
            Repr::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}
