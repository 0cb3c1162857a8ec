//! What appended events carry ([`Payload`], `SimConfig::payload`): the data, metadata and type
//! of each event. Only these bytes differ between kinds; the record framing is the same.

mod json;
mod values;
mod words;

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::Rng;
use uuid::Uuid;

use esbackup_engine::format::record;

use crate::records;

/// The kind of data and metadata appended events carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Payload {
    /// `{"amount":N,"note":"abcdefgh…"}` with `{"source":"esdb-sim"}` as metadata: a repeating
    /// alphabet, far more compressible than real events. The default, so that every seed
    /// keeps the bytes it always had.
    #[default]
    Letters,
    /// Realistic JSON events of a bank (`account-N` streams) and a shop (`order-N`): nested
    /// objects and arrays, ISO timestamps, UUIDs, decimal amounts, names, addresses, products
    /// and free-text notes from word lists; 150–1500 bytes, mostly 300–600; metadata
    /// `{"$correlationId","$causationId","userId","source"}`.
    Json,
    /// Random bytes as data and metadata (not JSON, incompressible), sized like the JSON.
    Random,
}

impl Payload {
    /// Every kind, in the order `--payload` lists them.
    pub const ALL: [Payload; 3] = [Payload::Letters, Payload::Json, Payload::Random];

    /// The name `--payload` takes.
    pub fn name(self) -> &'static str {
        match self {
            Payload::Letters => "letters",
            Payload::Json => "json",
            Payload::Random => "random",
        }
    }

    /// The kind that wrote this event, if the event is one the simulator appends (not a
    /// deletion or stream metadata, not an event of some other writer).
    pub fn of_event(p: &record::Prepare<'_>) -> Option<Payload> {
        if p.event_type.starts_with('$') || !p.flags.has(records::FLAG_DATA) {
            return None;
        }
        if !p.flags.has(records::FLAG_IS_JSON) {
            Some(Payload::Random)
        } else if p.metadata == LETTERS_METADATA {
            Some(Payload::Letters)
        } else if p.metadata.starts_with(b"{\"$correlationId\":") {
            Some(Payload::Json)
        } else {
            None
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Payload {
    type Err = String;

    fn from_str(s: &str) -> Result<Payload, String> {
        Payload::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("payload {s:?} is not one of letters, json, random"))
    }
}

/// The type, data and metadata of one event.
pub(crate) struct Event {
    pub event_type: &'static str,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    pub is_json: bool,
}

/// Where an event goes and what surrounds it.
pub(crate) struct Context<'a> {
    pub stream: &'a str,
    /// Its event number in the stream.
    pub number: i64,
    /// The transaction's correlation id, and the id of the event that caused this one.
    pub correlation: Uuid,
    pub causation: Uuid,
    /// The node's clock before the transaction is written (.NET ticks).
    pub ticks: i64,
    /// At most this many bytes of data and metadata together (whole transactions must fit
    /// in a chunk): the JSON is scaled down, below about 330 bytes to a compact object.
    pub budget: usize,
}

const LETTERS_METADATA: &[u8] = b"{\"source\":\"esdb-sim\"}";

/// A letters event: the random draws, in order, of the simulator before payload kinds.
pub(crate) fn letters(rng: &mut StdRng, max_data: usize) -> Event {
    let len = rng.gen_range(4..=max_data);
    let amount: u32 = rng.gen_range(1..100_000);
    let mut data = format!("{{\"amount\":{amount},\"note\":\"").into_bytes();
    data.extend((0..len).map(|i| b'a' + (i % 26) as u8));
    data.extend_from_slice(b"\"}");
    let event_type = ["Deposited", "Withdrawn", "Opened", "Closed"][rng.gen_range(0..4)];
    Event {
        event_type,
        data,
        metadata: LETTERS_METADATA.to_vec(),
        is_json: true,
    }
}

/// A realistic JSON event for `ctx.stream`.
pub(crate) fn json(rng: &mut StdRng, ctx: &Context<'_>) -> Event {
    json::event(rng, ctx)
}

/// Random data and metadata, sized like the JSON events, under the same type names.
pub(crate) fn random(rng: &mut StdRng, ctx: &Context<'_>) -> Event {
    let (event_type, size) = json::kind(rng, ctx);
    let meta_len = rng.gen_range(150..=180).min(ctx.budget / 4);
    let len = size.min(ctx.budget - meta_len);
    let mut bytes = |n: usize| (0..n).map(|_| rng.gen()).collect::<Vec<u8>>();
    Event {
        event_type,
        data: bytes(len),
        metadata: bytes(meta_len),
        is_json: false,
    }
}
