//! Log records (docs/FORMAT.md §1.3): Prepare v1, Commit v1 and System v0 (epoch) payloads, the
//! `len | payload | len` framing, and a walker that reads framed records back.

use uuid::Uuid;

use esbackup_engine::format::guid;

pub const PREPARE: u8 = 0;
pub const COMMIT: u8 = 1;
pub const SYSTEM: u8 = 2;
/// System record type of an epoch.
pub const SYSTEM_EPOCH: u8 = 1;

/// Prepare flags of a normal committed event (docs/FORMAT.md §1.3).
pub const FLAG_DATA: u16 = 0x01;
pub const FLAG_TX_BEGIN: u16 = 0x02;
pub const FLAG_TX_END: u16 = 0x04;
pub const FLAG_STREAM_DELETE: u16 = 0x08;
pub const FLAG_IS_COMMITTED: u16 = 0x20;
pub const FLAG_IS_JSON: u16 = 0x100;

/// The event type of a tombstone and of stream metadata (docs/FORMAT.md §1.3, "Deletions").
pub const STREAM_DELETED_TYPE: &str = "$streamDeleted";
pub const METADATA_TYPE: &str = "$metadata";
/// A tombstone's expected version: `EventNumber.DeletedStream - 1` (its event number is
/// `i64::MAX`).
pub const TOMBSTONE_EXPECTED_VERSION: i64 = i64::MAX - 1;
/// The metadata a soft delete writes: `$tb` = `long.MaxValue`.
pub const SOFT_DELETE_METADATA: &str = r#"{"$tb":9223372036854775807}"#;

/// The metastream of `stream`, where its metadata is written.
pub fn metastream(stream: &str) -> String {
    format!("$${stream}")
}

/// .NET ticks of 2024-01-01T00:00:00Z, the simulator's epoch of time.
pub const BASE_TICKS: i64 = 638_396_640_000_000_000;

/// The fields of one Prepare (v1) record.
#[derive(Clone, Debug)]
pub struct Prepare {
    pub log_position: i64,
    pub flags: u16,
    pub transaction_position: i64,
    pub transaction_offset: i32,
    pub expected_version: i64,
    pub stream: String,
    pub event_id: Uuid,
    pub correlation_id: Uuid,
    pub ticks: i64,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

fn prefix(out: &mut Vec<u8>, kind: u8, version: u8, log_position: i64) {
    out.push(kind);
    out.push(version);
    out.extend_from_slice(&log_position.to_le_bytes());
}

fn uleb_string(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
}

fn read_uleb_string(b: &[u8], at: &mut usize) -> Option<String> {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    let s = std::str::from_utf8(b.get(*at..*at + n)?).ok()?.to_string();
    *at += n;
    Some(s)
}

impl Prepare {
    /// The record payload (without framing).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.data.len() + self.metadata.len());
        prefix(&mut out, PREPARE, 1, self.log_position);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.transaction_position.to_le_bytes());
        out.extend_from_slice(&self.transaction_offset.to_le_bytes());
        out.extend_from_slice(&self.expected_version.to_le_bytes());
        uleb_string(&mut out, &self.stream);
        out.extend_from_slice(&guid::to_dotnet_bytes(&self.event_id));
        out.extend_from_slice(&guid::to_dotnet_bytes(&self.correlation_id));
        out.extend_from_slice(&self.ticks.to_le_bytes());
        uleb_string(&mut out, &self.event_type);
        out.extend_from_slice(&(self.data.len() as i32).to_le_bytes());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&(self.metadata.len() as i32).to_le_bytes());
        out.extend_from_slice(&self.metadata);
        out
    }

    /// Reads the stream name and expected version of a Prepare payload.
    pub fn stream_and_expected_version(payload: &[u8]) -> Option<(String, i64)> {
        if payload.first() != Some(&PREPARE) {
            return None;
        }
        let at_ev = 10 + 2 + 8 + 4;
        let expected = i64::from_le_bytes(payload.get(at_ev..at_ev + 8)?.try_into().ok()?);
        let mut at = at_ev + 8;
        let stream = read_uleb_string(payload, &mut at)?;
        Some((stream, expected))
    }
}

/// A Commit (v1) payload.
pub fn commit(
    log_position: i64,
    transaction_position: i64,
    first_event_number: i64,
    correlation_id: Uuid,
    ticks: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(58);
    prefix(&mut out, COMMIT, 1, log_position);
    out.extend_from_slice(&transaction_position.to_le_bytes());
    out.extend_from_slice(&first_event_number.to_le_bytes());
    out.extend_from_slice(&log_position.to_le_bytes());
    out.extend_from_slice(&guid::to_dotnet_bytes(&correlation_id));
    out.extend_from_slice(&ticks.to_le_bytes());
    out
}

/// The fields of an epoch record's JSON data.
#[derive(Clone, Debug)]
pub struct Epoch {
    pub position: i64,
    pub number: i64,
    pub id: Uuid,
    pub prev_position: i64,
    pub leader_instance_id: Uuid,
    pub ticks: i64,
}

impl Epoch {
    /// A System (v0) payload of type Epoch with JSON data.
    pub fn encode(&self) -> Vec<u8> {
        let json = format!(
            "{{\"EpochPosition\":{},\"EpochNumber\":{},\"EpochId\":\"{}\",\"PrevEpochPosition\":{},\"TimeStamp\":\"{}\",\"LeaderInstanceId\":\"{}\"}}",
            self.position,
            self.number,
            self.id,
            self.prev_position,
            iso_time(self.ticks),
            self.leader_instance_id
        );
        let mut out = Vec::with_capacity(32 + json.len());
        prefix(&mut out, SYSTEM, 0, self.position);
        out.extend_from_slice(&self.ticks.to_le_bytes());
        out.push(SYSTEM_EPOCH);
        out.push(2); // serialization: JSON
        out.extend_from_slice(&0i64.to_le_bytes());
        out.extend_from_slice(&(json.len() as i32).to_le_bytes());
        out.extend_from_slice(json.as_bytes());
        out
    }
}

/// True for a record a scavenge always keeps besides epochs: a tombstone, or stream metadata (the
/// server keeps a deleted stream's tombstone and a stream's last metadata; the simulator keeps
/// every metadata record).
pub fn kept_by_scavenge(payload: &[u8]) -> bool {
    let flags = payload
        .get(10..12)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    let deletes =
        payload.first() == Some(&PREPARE) && flags.is_some_and(|f| f & FLAG_STREAM_DELETE != 0);
    deletes
        || Prepare::stream_and_expected_version(payload).is_some_and(|(s, _)| s.starts_with("$$"))
}

/// True when `payload` is a System record of type Epoch.
pub fn is_epoch(payload: &[u8]) -> bool {
    payload.len() >= 32 && payload[0] == SYSTEM && payload[18] == SYSTEM_EPOCH
}

/// An ISO-8601 UTC time for .NET `ticks` (enough precision for the epoch JSON).
fn iso_time(ticks: i64) -> String {
    let secs = (ticks - BASE_TICKS) / 10_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant), days counted from 2024-01-01 = 19723 days after 1970.
    let z = days + 19_723 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Frames a payload as `i32 len | payload | i32 len`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as i32).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len);
    out.extend_from_slice(payload);
    out.extend_from_slice(&len);
    out
}

/// One framed record found by [`walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordAt {
    /// Physical offset of the frame in the data area.
    pub offset: usize,
    /// Framed length (payload + 8).
    pub framed_len: usize,
    pub kind: u8,
    pub log_position: i64,
}

impl RecordAt {
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.offset + 4..self.offset + self.framed_len - 4]
    }
}

/// Walks framed records covering exactly `data`. Errors name the offset where framing breaks.
pub fn walk(data: &[u8]) -> Result<Vec<RecordAt>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if at + 4 > data.len() {
            return Err(format!("truncated length prefix at data offset {at}"));
        }
        let len = i32::from_le_bytes(data[at..at + 4].try_into().unwrap());
        if len < 10 || at + 8 + len as usize > data.len() {
            return Err(format!("bad record length {len} at data offset {at}"));
        }
        let end = at + 4 + len as usize;
        let suffix = i32::from_le_bytes(data[end..end + 4].try_into().unwrap());
        if suffix != len {
            return Err(format!(
                "record at data offset {at}: length prefix {len} but suffix {suffix}"
            ));
        }
        let kind = data[at + 4];
        if kind > SYSTEM {
            return Err(format!("record at data offset {at}: unknown type {kind}"));
        }
        let log_position = i64::from_le_bytes(data[at + 6..at + 14].try_into().unwrap());
        out.push(RecordAt {
            offset: at,
            framed_len: len as usize + 8,
            kind,
            log_position,
        });
        at = end + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_prepare(data_len: usize) -> Prepare {
        Prepare {
            log_position: 4242,
            flags: FLAG_DATA | FLAG_TX_BEGIN | FLAG_TX_END | FLAG_IS_COMMITTED | FLAG_IS_JSON,
            transaction_position: 4242,
            transaction_offset: 0,
            expected_version: 6,
            stream: "account-7".into(),
            event_id: Uuid::from_u128(1),
            correlation_id: Uuid::from_u128(2),
            ticks: BASE_TICKS,
            event_type: "Deposited".into(),
            data: vec![b'x'; data_len],
            metadata: b"{}".to_vec(),
        }
    }

    #[test]
    fn prepare_layout_and_parse_back() {
        let p = sample_prepare(300);
        let bytes = p.encode();
        assert_eq!(bytes[0], PREPARE);
        assert_eq!(bytes[1], 1);
        assert_eq!(i64::from_le_bytes(bytes[2..10].try_into().unwrap()), 4242);
        assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 0x127);
        // 10 + 2 + 8 + 4 + 8 + 1 + 9 + 16 + 16 + 8 + 1 + 9 + 4 + 300 + 4 + 2
        assert_eq!(bytes.len(), 402);
        assert_eq!(
            Prepare::stream_and_expected_version(&bytes),
            Some(("account-7".to_string(), 6))
        );
    }

    #[test]
    fn epoch_record_and_time() {
        let e = Epoch {
            position: 0,
            number: 0,
            id: Uuid::from_u128(3),
            prev_position: -1,
            leader_instance_id: Uuid::from_u128(4),
            ticks: BASE_TICKS + 86_400 * 10_000_000 * 60,
        };
        let b = e.encode();
        assert!(is_epoch(&b));
        let json = std::str::from_utf8(&b[32..]).unwrap();
        assert!(
            json.contains("\"TimeStamp\":\"2024-03-01T00:00:00Z\""),
            "{json}"
        );
        assert!(json.contains("\"EpochNumber\":0"));
    }

    #[test]
    fn framing_round_trips_and_rejects_damage() {
        let mut data = frame(&sample_prepare(10).encode());
        data.extend(frame(&commit(5000, 4242, 7, Uuid::nil(), BASE_TICKS)));
        let recs = walk(&data).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].kind, COMMIT);
        assert_eq!(recs[1].log_position, 5000);
        assert_eq!(recs[1].payload(&data).len(), 58);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert!(walk(&data).unwrap_err().contains("suffix"));
        assert!(walk(&[0u8; 12])
            .unwrap_err()
            .contains("bad record length 0"));
    }
}
