//! [`HumanDuration`]: durations as people write them, for settings files and command lines —
//! the one duration parser of the workspace (`--lock-wait`, `--keep-within`, `--at`'s ages, the
//! `storage:` timeouts). `humantime` reads the units; a bare number is seconds.
//!
//! `humantime-serde` is not used: it reads strings only, and the `storage:` timeouts accept a
//! YAML number of seconds (`connect_timeout: 5`), so one `FromStr` serves both serde and clap.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::written::Written;

/// A duration written as seconds or with units (`90s`, `10m`, `1h 30m`, `7d`, `2w`; `0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// Parses a duration as [`HumanDuration`] does (for clap's `value_parser`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<HumanDuration>().map(|d| d.0)
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(HumanDuration(Duration::from_secs(secs)));
        }
        humantime::parse_duration(t)
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. 90s, 10m, 36h or 7d)"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Written::deserialize(d)? {
            Written::Whole(secs) => Ok(HumanDuration(Duration::from_secs(secs))),
            Written::Number(secs) => Duration::try_from_secs_f64(secs)
                .map(HumanDuration)
                .map_err(|_| de::Error::custom(format!("invalid duration {secs}"))),
            Written::Text(t) => t.parse().map_err(de::Error::custom),
        }
    }
}

/// Serde for an `Option<Duration>` field written as a [`HumanDuration`] (`within: 30d`).
pub(crate) mod optional {
    use super::HumanDuration;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(HumanDuration).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<HumanDuration>::deserialize(d)?.map(|h| h.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        let secs = |s: &str| s.parse::<HumanDuration>().unwrap().0.as_secs();
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("10m"), 600);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("7d"), 7 * 86400);
        assert_eq!(secs("2w"), 14 * 86400);
        assert_eq!(secs("0"), 0);
        assert_eq!(secs(" 900 "), 900);
        let err = "soon".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("\"soon\"") && err.contains("10m"), "{err}");
    }

    #[test]
    fn yaml_takes_numbers_and_strings_and_writes_units() {
        let d: HumanDuration = serde_json::from_str("5").unwrap();
        assert_eq!(d.0, Duration::from_secs(5));
        let d: HumanDuration = serde_json::from_str("\"36h\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(36 * 3600));
        assert!(serde_json::from_str::<HumanDuration>("-1").is_err());
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1day 12h\"");
    }
}
