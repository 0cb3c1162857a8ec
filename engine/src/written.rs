//! [`Written`]: a setting's value as a settings file holds it, a number or text, so that each
//! unit type ([`crate::ByteSize`], [`crate::HumanDuration`]) reads a file with its own `FromStr`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

pub(crate) enum Written {
    /// A whole number that is not negative.
    Whole(u64),
    /// Any other number (negative, or with a fraction).
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Written {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Written;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or text such as 16MiB or 5m")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Written, E> {
                Ok(Written::Whole(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Written, E> {
                Ok(u64::try_from(v).map_or(Written::Number(v as f64), Written::Whole))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Written, E> {
                Ok(Written::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Written, E> {
                Ok(Written::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
