//! The values JSON events are made of (ids, times, money, people, addresses, products, notes)
//! and a writer of JSON objects in field order.

use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use esbackup_engine::format::record;

use super::words::*;

/// A JSON object written field by field, in the order given (as .NET serializers do).
pub(super) struct Obj(String);

impl Obj {
    pub fn new() -> Obj {
        Obj(String::from("{"))
    }

    /// Adds `key` with an already rendered JSON value.
    pub fn raw(mut self, key: &str, value: &str) -> Obj {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&quote(key));
        self.0.push(':');
        self.0.push_str(value);
        self
    }

    pub fn str(self, key: &str, value: &str) -> Obj {
        self.raw(key, &quote(value))
    }

    /// The closed object's length once `key` and `value` are added.
    pub fn len_with(&self, key: &str, value: &str) -> usize {
        self.0.len() + usize::from(self.0.len() > 1) + key.len() + 3 + value.len() + 1
    }

    /// Adds each optional field that keeps the object within `target` bytes, then a
    /// free-text `note` in the room left (when there is some), and closes the object.
    pub fn fill(
        mut self,
        rng: &mut StdRng,
        optional: Vec<(&str, String)>,
        target: usize,
    ) -> String {
        for (key, value) in optional {
            if self.len_with(key, &value) <= target {
                self = self.raw(key, &value);
            }
        }
        let room = target.saturating_sub(self.len_with("note", "\"\""));
        if room >= 24 {
            let n = note(rng, room);
            self = self.str("note", &n);
        }
        self.end()
    }

    pub fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON array of rendered values.
pub(super) fn array(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

/// A JSON string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(super) fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list.choose(rng).expect("a non-empty list")
}

/// A random UUID, as a JSON string.
pub(super) fn uuid(rng: &mut StdRng) -> String {
    quote(&crate::node::new_guid(rng).to_string())
}

/// The UUID of entity `name` (a stream's order or account, user number N): the same in
/// every event that names it.
pub(super) fn entity(kind: &str, name: &str) -> String {
    let digest: [u8; 16] = Md5::new()
        .chain_update(kind)
        .chain_update(b"/")
        .chain_update(name)
        .finalize()
        .into();
    quote(
        &uuid::Builder::from_random_bytes(digest)
            .into_uuid()
            .to_string(),
    )
}

/// An ISO 8601 UTC time with .NET's seven fractional digits, `ms_before` milliseconds
/// (at most) before `ticks`.
pub(super) fn time(rng: &mut StdRng, ticks: i64, ms_before: i64) -> String {
    let ticks = ticks - rng.gen_range(0..=ms_before) * 10_000 - rng.gen_range(0..10_000);
    let t = record::ticks_to_time(ticks).expect("the simulator's clock is a valid time");
    quote(&format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        ticks.rem_euclid(10_000_000)
    ))
}

/// A date `days` days after `ticks` (negative: before).
pub(super) fn date(ticks: i64, days: i64) -> String {
    let t = record::ticks_to_time(ticks + days * 864_000_000_000).expect("a valid time");
    quote(&t.format("%Y-%m-%d").to_string())
}

/// An amount with two decimals between `lo` and `hi` (whole units), as a JSON number.
pub(super) fn money(rng: &mut StdRng, lo: u64, hi: u64) -> String {
    cents(rng.gen_range(lo * 100..=hi * 100))
}

pub(super) fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

pub(super) fn currency(rng: &mut StdRng) -> String {
    quote(pick(rng, CURRENCIES))
}

pub(super) fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10)))
        .collect()
}

pub(super) fn letters(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.gen_range(0..26)))
        .collect()
}

pub(super) fn alphanumeric(rng: &mut StdRng, n: usize) -> String {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| char::from(SET[rng.gen_range(0..SET.len())]))
        .collect()
}

/// A person's first name, last name and email address.
pub(super) fn person(rng: &mut StdRng) -> (&'static str, &'static str, String) {
    let (first, last) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
    let local: String = match rng.gen_range(0..3) {
        0 => format!("{first}.{last}"),
        1 => format!("{}{last}{}", &first[..1], rng.gen_range(1..100)),
        _ => format!("{first}_{last}{}", rng.gen_range(1960..2006)),
    };
    let local: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
        .collect::<String>()
        .to_lowercase();
    let email = format!("{local}@{}", pick(rng, EMAIL_DOMAINS));
    (first, last, email)
}

/// A postal address object, and its country code.
pub(super) fn address(rng: &mut StdRng) -> (String, &'static str) {
    let (city, country, _) = *CITIES.choose(rng).expect("cities");
    let line1 = format!(
        "{} {} {}",
        rng.gen_range(1..240),
        pick(rng, STREETS),
        pick(rng, STREET_KINDS)
    );
    let mut obj = Obj::new().str("line1", &line1);
    if rng.gen_bool(0.25) {
        obj = obj.str("line2", &format!("Apt {}", rng.gen_range(1..80)));
    }
    let postal = match country {
        "GB" => format!(
            "{}{} {}{}",
            letters(rng, 2),
            rng.gen_range(1..30),
            rng.gen_range(1..10),
            letters(rng, 2)
        ),
        "NL" => format!("{} {}", rng.gen_range(1000..9999), letters(rng, 2)),
        _ => digits(rng, 5),
    };
    let obj = obj
        .str("city", city)
        .str("postalCode", &postal)
        .str("country", country);
    (obj.end(), country)
}

/// A phone number in the country of a random city.
pub(super) fn phone(rng: &mut StdRng) -> String {
    let (_, _, code) = *CITIES.choose(rng).expect("cities");
    quote(&format!("+{code} {} {}", digits(rng, 3), digits(rng, 7)))
}

/// An IBAN in `country` (check digits not computed).
pub(super) fn iban(rng: &mut StdRng, country: &str) -> String {
    quote(&format!("{country}{}{}", digits(rng, 2), digits(rng, 18)))
}

/// One of the shop's products: its SKU, name and price, always the same for one product.
pub(super) fn product(rng: &mut StdRng) -> (String, String, String) {
    let a = rng.gen_range(0..PRODUCT_ADJECTIVES.len());
    let m = rng.gen_range(0..PRODUCT_MATERIALS.len());
    let n = rng.gen_range(0..PRODUCT_NOUNS.len());
    let id = (a * PRODUCT_MATERIALS.len() + m) * PRODUCT_NOUNS.len() + n;
    let name = format!(
        "{} {} {}",
        PRODUCT_ADJECTIVES[a], PRODUCT_MATERIALS[m], PRODUCT_NOUNS[n]
    );
    let price = 199 + (id as u64 * 7919) % 24_800;
    (
        quote(&format!("SKU-{:06}", id)),
        quote(&name),
        cents(price - price % 100 + 99),
    )
}

/// A sentence or two of free text from the note words, at most `room` bytes.
pub(super) fn note(rng: &mut StdRng, room: usize) -> String {
    let want = rng.gen_range(room / 2..=room).max(8);
    let mut s = String::new();
    let mut capital = true;
    while s.len() < want {
        let w = pick(rng, NOTE_WORDS);
        if s.len() + w.len() + 2 > room {
            break;
        }
        if !s.is_empty() {
            s.push(' ');
        }
        if capital {
            s.push_str(&w[..1].to_uppercase());
            s.push_str(&w[1..]);
        } else {
            s.push_str(w);
        }
        capital = rng.gen_bool(0.08);
        if capital {
            s.push('.');
        }
    }
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}
