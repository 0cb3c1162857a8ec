//! What a record is, as `esbackup log` shows it: decoded fields, the time of its .NET ticks, and
//! whether it deletes or truncates a stream.
//!
//! Deletions (docs/FORMAT.md §1.3, "Deletions"): a hard delete is a Prepare with the
//! StreamDelete flag, the stream's tombstone (`StorageWriterService.cs:547-564`); a soft delete
//! is a `$metadata` event in the metastream `$$<stream>` whose JSON sets `$tb` to
//! `long.MaxValue` (`:565-597`); a `$tb`, `$maxAge` or `$maxCount` below that truncates the
//! stream (`Data/StreamMetadata.cs:105-170`).

use serde_json::Value;

use super::{Deletion, DeletionKind, LogRecord, RecordKind};
use crate::format::record::{self, Payload, Prepare, PrepareFlags, DELETED_STREAM, SYSTEM_EPOCH};

/// The metastream prefix (`SystemNames.cs:66-74`).
pub const METASTREAM_PREFIX: &str = "$$";
/// The event type of stream metadata (`SystemNames.cs:112`).
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// Describes a record at `position` of `framed_len` bytes in `chunk`.
pub(crate) fn describe(
    payload: &[u8],
    position: i64,
    framed_len: u32,
    chunk: &str,
) -> Result<LogRecord, String> {
    let decoded = record::decode(payload)?;
    let ticks = decoded.ticks();
    let time = record::ticks_to_time(ticks)
        .ok_or_else(|| format!("its timestamp ({ticks} ticks) is no time"))?;
    let mut rec = LogRecord {
        position,
        next_position: position + framed_len as i64,
        kind: RecordKind::System,
        time,
        stream: None,
        event_number: None,
        event_type: None,
        flags: PrepareFlags::default(),
        transaction_position: None,
        deletion: None,
        chunk: chunk.to_string(),
    };
    match decoded {
        Payload::Prepare(p) => {
            rec.kind = RecordKind::Prepare;
            rec.deletion = deletion(&p);
            rec.stream = Some(p.stream.to_string());
            rec.event_number = p.event_number();
            rec.event_type = (!p.event_type.is_empty()).then(|| p.event_type.to_string());
            rec.flags = p.flags;
            rec.transaction_position = Some(p.transaction_position);
        }
        Payload::Commit(c) => {
            rec.kind = RecordKind::Commit;
            rec.event_number = Some(c.first_event_number);
            rec.transaction_position = Some(c.transaction_position);
        }
        Payload::System(s) => {
            rec.event_type = Some(match s.system_type {
                SYSTEM_EPOCH => "epoch".to_string(),
                other => format!("system-{other}"),
            });
        }
    }
    Ok(rec)
}

/// The deletion or truncation a Prepare makes, if it makes one.
fn deletion(p: &Prepare<'_>) -> Option<Deletion> {
    if p.flags.has(PrepareFlags::STREAM_DELETE) {
        return Some(Deletion {
            stream: p.stream.to_string(),
            kind: DeletionKind::Tombstone,
            truncate_before: None,
            max_age_secs: None,
            max_count: None,
        });
    }
    let stream = p.stream.strip_prefix(METASTREAM_PREFIX)?;
    if stream.is_empty() || p.event_type != METADATA_EVENT_TYPE {
        return None;
    }
    let Ok(Value::Object(meta)) = serde_json::from_slice::<Value>(p.data) else {
        return None;
    };
    // The values the server takes (`StreamMetadata.cs:166-169`): $tb >= 0, the others > 0.
    let int = |key: &str, least: i64| {
        meta.get(key)
            .and_then(Value::as_i64)
            .filter(|v| *v >= least)
    };
    let truncate_before = int("$tb", 0);
    let max_age_secs = int("$maxAge", 1);
    let max_count = int("$maxCount", 1);
    if truncate_before.is_none() && max_age_secs.is_none() && max_count.is_none() {
        return None;
    }
    Some(Deletion {
        stream: stream.to_string(),
        kind: if truncate_before == Some(DELETED_STREAM) {
            DeletionKind::SoftDelete
        } else {
            DeletionKind::Truncation
        },
        truncate_before,
        max_age_secs,
        max_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::encode;

    fn metadata(stream: &str, data: &[u8]) -> Option<Deletion> {
        let mut p = encode::event(100, stream, 0, METADATA_EVENT_TYPE, data);
        p.stream = stream;
        deletion(&p)
    }

    #[test]
    fn tombstones_soft_deletes_and_truncations_are_told_apart() {
        let mut tomb = encode::event(100, "orders", 0, "$streamDeleted", b"");
        tomb.flags = PrepareFlags(tomb.flags.0 | PrepareFlags::STREAM_DELETE);
        tomb.expected_version = i64::MAX - 1;
        let d = deletion(&tomb).unwrap();
        assert_eq!(
            (d.stream.as_str(), d.kind),
            ("orders", DeletionKind::Tombstone)
        );
        assert_eq!(tomb.event_number(), Some(DELETED_STREAM));

        let soft = metadata("$$orders", br#"{"$tb":9223372036854775807}"#).unwrap();
        assert_eq!(
            (soft.stream.as_str(), soft.kind),
            ("orders", DeletionKind::SoftDelete)
        );
        let cut = metadata("$$orders", br#"{"$maxCount":10,"$tb":5,"$acl":{}}"#).unwrap();
        assert_eq!(cut.kind, DeletionKind::Truncation);
        assert_eq!(
            (cut.truncate_before, cut.max_count, cut.max_age_secs),
            (Some(5), Some(10), None)
        );
        assert_eq!(
            metadata("$$orders", br#"{"$maxAge":3600}"#)
                .unwrap()
                .max_age_secs,
            Some(3600)
        );

        assert!(
            metadata("$$orders", br#"{"$acl":{"$r":"x"}}"#).is_none(),
            "no truncation"
        );
        assert!(
            metadata("$$orders", br#"{"$maxCount":0}"#).is_none(),
            "0: no limit"
        );
        assert!(
            metadata("orders", br#"{"$tb":5}"#).is_none(),
            "not a metastream"
        );
        assert!(metadata("$$", br#"{"$tb":5}"#).is_none());
        assert!(metadata("$$orders", b"not json").is_none());
    }

    #[test]
    fn a_record_is_described_with_its_time() {
        let p = encode::event(4096, "account-1", 3, "Deposited", b"{}");
        let rec = describe(&encode::prepare(&p), 4096, 120, "chunk-000000.000000").unwrap();
        assert_eq!(rec.kind, RecordKind::Prepare);
        assert_eq!(rec.next_position, 4216);
        assert_eq!(
            (rec.event_number, rec.stream.as_deref()),
            (Some(3), Some("account-1"))
        );
        assert_eq!(rec.time.timestamp(), 4096);
        let mut bad = p.clone();
        bad.ticks = -5;
        assert!(describe(&encode::prepare(&bad), 4096, 120, "c")
            .unwrap_err()
            .contains("no time"));
    }
}
