//! Log records inside a chunk's data area (docs/FORMAT.md §1.3): the `i32 len | payload | i32 len`
//! framing and the LogV2 payloads (Prepare v0/v1, Commit v0/v1, System v0), decoded from bytes
//! that are untrusted: every length is checked against what is left of the payload.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::guid;

/// Record types of LogV2 (`KurrentDB.LogCommon/LogRecordType.cs:6-9`).
pub const PREPARE: u8 = 0;
pub const COMMIT: u8 = 1;
pub const SYSTEM: u8 = 2;
/// System record type of an epoch (`SystemLogRecord.cs:13-16`).
pub const SYSTEM_EPOCH: u8 = 1;

/// The largest record length the server reads (`TFConsts.MaxLogRecordSize`, 16 MiB;
/// `TFChunkReadSide.cs:488-506`).
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;
/// Bytes of framing around a payload: the length before it and again after it.
pub const FRAMING_LEN: u32 = 8;

/// `EventNumber.DeletedStream`: the event number of a tombstone (`Data/EventNumber.cs:7`).
pub const DELETED_STREAM: i64 = i64::MAX;
/// .NET ticks (100 ns since 0001-01-01T00:00:00Z) at 1970-01-01T00:00:00Z.
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// `DateTime.MaxValue.Ticks` (9999-12-31T23:59:59.9999999).
pub const MAX_TICKS: i64 = 3_155_378_975_999_999_999;

/// Prepare flags (`PrepareLogRecord.cs:18-40`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepareFlags(pub u16);

impl PrepareFlags {
    /// Holds an event: takes an event number in its stream.
    pub const DATA: u16 = 0x01;
    pub const TRANSACTION_BEGIN: u16 = 0x02;
    pub const TRANSACTION_END: u16 = 0x04;
    /// A hard delete: the stream's tombstone.
    pub const STREAM_DELETE: u16 = 0x08;
    /// Committed at once: no Commit record follows in the log.
    pub const IS_COMMITTED: u16 = 0x20;
    pub const IS_JSON: u16 = 0x100;
    pub const IS_REDACTED: u16 = 0x200;
    pub const IS_PROPERTY_METADATA: u16 = 0x400;

    /// Each flag and the name `esbackup log` gives it.
    pub const NAMES: [(u16, &'static str); 8] = [
        (Self::DATA, "data"),
        (Self::TRANSACTION_BEGIN, "transaction_begin"),
        (Self::TRANSACTION_END, "transaction_end"),
        (Self::STREAM_DELETE, "stream_delete"),
        (Self::IS_COMMITTED, "committed"),
        (Self::IS_JSON, "json"),
        (Self::IS_REDACTED, "redacted"),
        (Self::IS_PROPERTY_METADATA, "property_metadata"),
    ];

    pub fn has(self, flag: u16) -> bool {
        self.0 & flag == flag
    }

    /// The names of the flags set (bits without a name are left out).
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// A Prepare record: one event, a tombstone, or a transaction marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepare<'a> {
    pub log_position: i64,
    pub version: u8,
    pub flags: PrepareFlags,
    pub transaction_position: i64,
    pub transaction_offset: i32,
    /// When committed at once, the event number minus one (`PrepareLogRecord.cs:62-65`).
    pub expected_version: i64,
    pub stream: &'a str,
    pub event_id: Uuid,
    pub correlation_id: Uuid,
    pub ticks: i64,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
}

impl Prepare<'_> {
    /// The event number, where the record itself says it: an event or tombstone committed at
    /// once. (Otherwise the Commit record gives it: its first event number plus this record's
    /// transaction offset.)
    pub fn event_number(&self) -> Option<i64> {
        let numbered = self.flags.0 & (PrepareFlags::DATA | PrepareFlags::STREAM_DELETE) != 0;
        (numbered && self.flags.has(PrepareFlags::IS_COMMITTED))
            .then(|| self.expected_version.saturating_add(1))
    }
}

/// A Commit record: commits the transaction that began at `transaction_position`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub log_position: i64,
    pub transaction_position: i64,
    pub first_event_number: i64,
    pub correlation_id: Uuid,
    pub ticks: i64,
}

/// A System record (an epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System<'a> {
    pub log_position: i64,
    pub ticks: i64,
    pub system_type: u8,
    pub serialization: u8,
    pub data: &'a [u8],
}

/// A decoded record payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    Prepare(Prepare<'a>),
    Commit(Commit),
    System(System<'a>),
}

impl Payload<'_> {
    /// The position the record says it is at (its `LogPosition` field).
    pub fn log_position(&self) -> i64 {
        match self {
            Payload::Prepare(p) => p.log_position,
            Payload::Commit(c) => c.log_position,
            Payload::System(s) => s.log_position,
        }
    }

    pub fn ticks(&self) -> i64 {
        match self {
            Payload::Prepare(p) => p.ticks,
            Payload::Commit(c) => c.ticks,
            Payload::System(s) => s.ticks,
        }
    }
}

/// The UTC time of .NET `ticks`, or `None` outside `DateTime`'s range.
pub fn ticks_to_time(ticks: i64) -> Option<DateTime<Utc>> {
    if !(0..=MAX_TICKS).contains(&ticks) {
        return None;
    }
    let since_unix = ticks - UNIX_EPOCH_TICKS;
    let secs = since_unix.div_euclid(10_000_000);
    let nanos = since_unix.rem_euclid(10_000_000) as u32 * 100;
    DateTime::from_timestamp(secs, nanos)
}

/// The .NET ticks of a UTC time (for writers and tests).
pub fn time_to_ticks(time: DateTime<Utc>) -> i64 {
    let nanos = time.timestamp_subsec_nanos() as i64;
    UNIX_EPOCH_TICKS + time.timestamp() * 10_000_000 + nanos / 100
}

/// Decodes one record payload (the bytes between the two lengths). Errors say what is wrong.
pub fn decode(payload: &[u8]) -> Result<Payload<'_>, String> {
    let mut r = Cursor { b: payload, at: 0 };
    let kind = r.u8("record type")?;
    let version = r.u8("record version")?;
    let log_position = r.i64("log position")?;
    if log_position < 0 {
        return Err(format!("negative log position {log_position}"));
    }
    let decoded = match kind {
        PREPARE => Payload::Prepare(prepare(&mut r, version, log_position)?),
        COMMIT => Payload::Commit(commit(&mut r, version, log_position)?),
        SYSTEM if version == 0 => Payload::System(system(&mut r, log_position)?),
        SYSTEM => return Err(format!("system record version {version} (only 0 exists)")),
        _ => {
            return Err(format!(
                "record type {kind} is not one of the log's (0 prepare, 1 commit, 2 system)"
            ))
        }
    };
    if r.at != payload.len() {
        return Err(format!(
            "{} byte(s) after the end of the record's fields",
            payload.len() - r.at
        ));
    }
    Ok(decoded)
}

fn prepare<'a>(r: &mut Cursor<'a>, version: u8, log_position: i64) -> Result<Prepare<'a>, String> {
    if version > 1 {
        return Err(format!("prepare version {version} (0 and 1 exist)"));
    }
    let flags = PrepareFlags(r.u16("flags")?);
    let transaction_position = r.i64("transaction position")?;
    let transaction_offset = r.i32("transaction offset")?;
    let expected_version = if version == 0 {
        // `PrepareLogRecord.cs:182-184,201-202`: int.MaxValue - 1 stands for long.MaxValue - 1.
        match r.i32("expected version")? {
            v if v == i32::MAX - 1 => i64::MAX - 1,
            v => v as i64,
        }
    } else {
        r.i64("expected version")?
    };
    Ok(Prepare {
        log_position,
        version,
        flags,
        transaction_position,
        transaction_offset,
        expected_version,
        stream: r.string("stream id")?,
        event_id: r.guid("event id")?,
        correlation_id: r.guid("correlation id")?,
        ticks: r.i64("timestamp")?,
        event_type: r.string("event type")?,
        data: r.sized("data")?,
        metadata: r.sized("metadata")?,
    })
}

fn commit(r: &mut Cursor<'_>, version: u8, log_position: i64) -> Result<Commit, String> {
    if version > 1 {
        return Err(format!("commit version {version} (0 and 1 exist)"));
    }
    let transaction_position = r.i64("transaction position")?;
    let first_event_number = if version == 0 {
        // `CommitLogRecord.cs:47-55`: int.MaxValue stands for long.MaxValue.
        match r.i32("first event number")? {
            i32::MAX => i64::MAX,
            v => v as i64,
        }
    } else {
        r.i64("first event number")?
    };
    let _sort_key = r.i64("sort key")?;
    Ok(Commit {
        log_position,
        transaction_position,
        first_event_number,
        correlation_id: r.guid("correlation id")?,
        ticks: r.i64("timestamp")?,
    })
}

fn system<'a>(r: &mut Cursor<'a>, log_position: i64) -> Result<System<'a>, String> {
    let ticks = r.i64("timestamp")?;
    let system_type = r.u8("system record type")?;
    let serialization = r.u8("serialization")?;
    let _reserved = r.i64("reserved")?;
    Ok(System {
        log_position,
        ticks,
        system_type,
        serialization,
        data: r.sized("data")?,
    })
}

/// Reads fields off a payload, each checked against the bytes left.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let left = self.b.len() - self.at;
        if n > left {
            return Err(format!(
                "the record ends inside its {what} (needs {n} byte(s) at payload offset {}, {left} left)",
                self.at
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn guid(&mut self, what: &str) -> Result<Uuid, String> {
        Ok(guid::from_dotnet_bytes(&self.array::<16>(what)?))
    }

    /// An i32 length, then that many bytes (a length ≤ 0 is no bytes, as the server reads it).
    fn sized(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.i32(what)?;
        self.take(len.max(0) as usize, what)
    }

    /// A ULEB128 byte length (a .NET 7-bit encoded int: at most 5 bytes), then UTF-8.
    fn string(&mut self, what: &str) -> Result<&'a str, String> {
        let mut len: u64 = 0;
        for i in 0..5 {
            let byte = self.u8(what)?;
            len |= ((byte & 0x7f) as u64) << (7 * i);
            if byte & 0x80 == 0 {
                let bytes = self.take(len as usize, what)?;
                return std::str::from_utf8(bytes).map_err(|_| format!("its {what} is not UTF-8"));
            }
        }
        Err(format!("its {what} has a length of more than 5 bytes"))
    }
}

/// Encoders of the layouts above, for the engine's tests.
#[cfg(test)]
pub(crate) mod encode {
    use super::*;

    fn prefix(out: &mut Vec<u8>, kind: u8, version: u8, pos: i64) {
        out.extend_from_slice(&[kind, version]);
        out.extend_from_slice(&pos.to_le_bytes());
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        let mut n = s.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(s.as_bytes());
    }

    /// A Prepare v1 payload.
    pub fn prepare(p: &Prepare<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        prefix(&mut out, PREPARE, 1, p.log_position);
        out.extend_from_slice(&p.flags.0.to_le_bytes());
        out.extend_from_slice(&p.transaction_position.to_le_bytes());
        out.extend_from_slice(&p.transaction_offset.to_le_bytes());
        out.extend_from_slice(&p.expected_version.to_le_bytes());
        string(&mut out, p.stream);
        out.extend_from_slice(&guid::to_dotnet_bytes(&p.event_id));
        out.extend_from_slice(&guid::to_dotnet_bytes(&p.correlation_id));
        out.extend_from_slice(&p.ticks.to_le_bytes());
        string(&mut out, p.event_type);
        for part in [p.data, p.metadata] {
            out.extend_from_slice(&(part.len() as i32).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// A Commit v1 payload.
    pub fn commit(c: &Commit) -> Vec<u8> {
        let mut out = Vec::new();
        prefix(&mut out, COMMIT, 1, c.log_position);
        out.extend_from_slice(&c.transaction_position.to_le_bytes());
        out.extend_from_slice(&c.first_event_number.to_le_bytes());
        out.extend_from_slice(&c.log_position.to_le_bytes());
        out.extend_from_slice(&guid::to_dotnet_bytes(&c.correlation_id));
        out.extend_from_slice(&c.ticks.to_le_bytes());
        out
    }

    /// A System v0 epoch payload with `data`.
    pub fn epoch(pos: i64, ticks: i64, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prefix(&mut out, SYSTEM, 0, pos);
        out.extend_from_slice(&ticks.to_le_bytes());
        out.extend_from_slice(&[SYSTEM_EPOCH, 2]);
        out.extend_from_slice(&0i64.to_le_bytes());
        out.extend_from_slice(&(data.len() as i32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    /// `len | payload | len`.
    pub fn frame(payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as i32).to_le_bytes();
        [&len[..], payload, &len[..]].concat()
    }

    /// A prepare of one event committed at once (`flags` added to Data|TxBegin|TxEnd|IsCommitted).
    pub fn event<'a>(
        pos: i64,
        stream: &'a str,
        number: i64,
        ty: &'a str,
        data: &'a [u8],
    ) -> Prepare<'a> {
        Prepare {
            log_position: pos,
            version: 1,
            flags: PrepareFlags(
                PrepareFlags::DATA
                    | PrepareFlags::TRANSACTION_BEGIN
                    | PrepareFlags::TRANSACTION_END
                    | PrepareFlags::IS_COMMITTED
                    | PrepareFlags::IS_JSON,
            ),
            transaction_position: pos,
            transaction_offset: 0,
            expected_version: number - 1,
            stream,
            event_id: Uuid::from_u128(pos as u128 + 1),
            correlation_id: Uuid::from_u128(7),
            ticks: UNIX_EPOCH_TICKS + pos * 10_000_000,
            event_type: ty,
            data,
            metadata: b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{commit, epoch, event, prepare};
    use super::*;

    #[test]
    fn a_prepare_decodes_field_by_field() {
        let mut p = event(4242, "account-7", 6, "Deposited", br#"{"amount":1}"#);
        p.metadata = b"{}";
        let bytes = prepare(&p);
        assert_eq!(decode(&bytes).unwrap(), Payload::Prepare(p.clone()));
        assert_eq!(p.event_number(), Some(6));
        assert_eq!(
            p.flags.names(),
            [
                "data",
                "transaction_begin",
                "transaction_end",
                "committed",
                "json"
            ]
        );
        for cut in [1, 12, 40, bytes.len() - 1] {
            let why = decode(&bytes[..cut]).unwrap_err();
            assert!(why.contains("ends inside"), "{cut}: {why}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after the end"));
    }

    #[test]
    fn commits_epochs_and_unknown_types() {
        let c = Commit {
            log_position: 5000,
            transaction_position: 4242,
            first_event_number: 7,
            correlation_id: Uuid::from_u128(9),
            ticks: UNIX_EPOCH_TICKS,
        };
        let bytes = commit(&c);
        assert_eq!(bytes.len(), 58);
        assert_eq!(decode(&bytes).unwrap(), Payload::Commit(c));
        let e = epoch(0, UNIX_EPOCH_TICKS, b"{}");
        match decode(&e).unwrap() {
            Payload::System(s) => assert_eq!((s.system_type, s.data), (SYSTEM_EPOCH, &b"{}"[..])),
            other => panic!("{other:?}"),
        }
        let mut odd = e.clone();
        odd[0] = 7;
        assert!(decode(&odd).unwrap_err().contains("record type 7"));
    }

    #[test]
    fn ticks_are_dotnet_time() {
        let t = ticks_to_time(UNIX_EPOCH_TICKS + 15).unwrap();
        assert_eq!(t.timestamp(), 0);
        assert_eq!(t.timestamp_subsec_nanos(), 1500);
        assert_eq!(time_to_ticks(t), UNIX_EPOCH_TICKS + 15);
        // 2024-01-01T00:00:00Z, the simulator's epoch.
        let base = ticks_to_time(638_396_640_000_000_000).unwrap();
        assert_eq!(base.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert!(ticks_to_time(-1).is_none());
        assert!(ticks_to_time(MAX_TICKS + 1).is_none());
    }
}
