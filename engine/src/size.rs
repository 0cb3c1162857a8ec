//! [`ByteSize`]: sizes as people write them, for settings and command lines.
//!
//! Not the `bytesize` crate: its parser reads `K`, `KB`, `M`, `MB`, ... as powers of 1000
//! (`16MB` = 16 000 000 bytes, `16M` too), while the README and every config written so far use
//! them as powers of 1024 (`part_size: 16M` is 16 MiB, a part size S3 and the bench expect).
//! Taking the crate would silently change what existing configs mean.

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::written::Written;

/// A size in bytes, written as a number or with a binary unit (`512KiB`, `16MiB`, `16M`, `1GiB`,
/// `2T`; `K`, `KB` and `KiB` all mean 1024), in settings files and on command lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. 16MiB or 16777216"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size unit in {s:?}: use B, KiB, MiB, GiB or TiB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Written::deserialize(d)? {
            Written::Whole(n) => Ok(ByteSize(n)),
            Written::Number(n) => Err(de::Error::custom(format!(
                "invalid size {n}: write a whole number of bytes, or e.g. 16MiB"
            ))),
            Written::Text(t) => t.parse().map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("16MiB".parse::<ByteSize>().unwrap(), ByteSize(16 << 20));
        assert_eq!("8 M".parse::<ByteSize>().unwrap(), ByteSize(8 << 20));
        assert_eq!("4k".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("2G".parse::<ByteSize>().unwrap(), ByteSize(2 << 30));
        assert_eq!("1TiB".parse::<ByteSize>().unwrap(), ByteSize(1 << 40));
        assert_eq!("1024".parse::<ByteSize>().unwrap(), ByteSize(1024));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999T".parse::<ByteSize>().is_err());
    }
}
