//! One chunk file of a restore point, read record by record straight from the location: a
//! completed chunk's object up to its footer's data size, or a growing chunk's segments up to
//! the point's writer checkpoint. Log positions: in an unscavenged chunk a record's position is
//! the chunk's start plus its offset in the data area, and the record must say so itself; in a
//! scavenged or merged chunk it is the record's own `LogPosition`, checked against the posmap
//! entry for it (docs/FORMAT.md §1.3-1.4).

use std::fmt::Display;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::incoming::Incoming;
use crate::error::{EngineError, Result};
use crate::format::chunk::{ChunkFooter, ChunkHeader, ChunkName, FOOTER_LEN, HEADER_LEN};
use crate::format::record::{FRAMING_LEN, MAX_RECORD_LEN};
use crate::point::{Content, FileRef, Segment};
use crate::target::{ByteStream, Target, TargetError};

/// A chunk file of a point: its name, key and how it is stored.
#[derive(Clone, Debug)]
pub(crate) struct ChunkFile {
    pub name: ChunkName,
    pub key: String,
    pub file: FileRef,
}

impl ChunkFile {
    /// The last logical chunk the file covers (a merged chunk covers several).
    pub fn end(&self) -> u32 {
        self.file.chunk.as_ref().map_or(self.name.start, |c| c.end)
    }
}

/// What every chunk of one point is read with.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub target: Arc<dyn Target>,
    pub point: String,
    pub chunk_size: u32,
    /// The point's writer checkpoint: nothing at or after it counts.
    pub writer: i64,
}

/// One framed record as found in a chunk.
#[derive(Clone, Debug)]
pub(crate) struct RawRecord {
    /// Its log position.
    pub position: i64,
    /// Payload plus both lengths.
    pub framed_len: u32,
    /// Offset of its length prefix in the chunk file.
    pub offset: u64,
    pub payload: Bytes,
}

/// Where a chunk's bytes are stored, to name in errors.
#[derive(Clone, Debug)]
pub(crate) struct Place {
    file: String,
    stored: String,
    target: String,
    point: String,
}

impl Place {
    /// The chunk file's key.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Damage found at byte `offset` of the chunk file.
    pub fn damaged(&self, offset: u64, why: impl Display) -> EngineError {
        EngineError::damaged(format!(
            "{} of restore point {} ({} in {}) is damaged at byte {offset}: {why}",
            self.file, self.point, self.stored, self.target
        ))
    }

    fn storage(&self, e: TargetError) -> EngineError {
        EngineError::storage(&self.stored, e)
    }
}

/// The posmap of a scavenged chunk, read beside its records.
struct Posmap {
    entries: Incoming,
    /// 12 (current) or 8 (deprecated) bytes an entry.
    entry_len: usize,
    left: u64,
}

pub(crate) struct ChunkReader {
    place: Place,
    header: ChunkHeader,
    data: Incoming,
    /// File offset where the records that count end.
    end: u64,
    posmap: Option<Posmap>,
    writer: i64,
    last: Option<i64>,
    done: bool,
}

impl ChunkReader {
    /// Opens `chunk` of the point `ctx` describes and reads its header.
    pub async fn open(ctx: &Context, chunk: &ChunkFile) -> Result<ChunkReader> {
        let start = chunk.name.start as i64 * ctx.chunk_size as i64;
        // Bytes of data the writer checkpoint covers, for an unscavenged chunk.
        let counted = (ctx.writer - start).clamp(0, ctx.chunk_size as i64) as u64;
        let mut place = Place {
            file: chunk.key.clone(),
            stored: String::new(),
            target: ctx.target.describe(),
            point: ctx.point.clone(),
        };
        let (body, footer) = match &chunk.file.content {
            Content::Object { key, .. } => {
                place.stored = format!("object {key}");
                open_object(ctx, chunk, key, counted, &place).await?
            }
            Content::Segments { segments, .. } => {
                place.stored = format!("the segments of {}", chunk.key);
                (
                    open_segments(ctx, segments, HEADER_LEN + counted, &place)?,
                    None,
                )
            }
            Content::Inline { .. } => return Err(place.damaged(0, "a chunk stored inline")),
        };
        let mut data = Incoming::new(body, 0);
        let header = read_header(ctx, chunk, &mut data, &place).await?;
        let (end, posmap) = match (&footer, header.is_scavenged) {
            (Some(f), true) => {
                let posmap = open_posmap(ctx, chunk, f, &place).await?;
                (HEADER_LEN + f.physical_data_size as u64, Some(posmap))
            }
            (None, true) => return Err(place.damaged(14, "a scavenged chunk without a footer")),
            (Some(f), false) => (HEADER_LEN + counted.min(f.physical_data_size as u64), None),
            (None, false) => (HEADER_LEN + counted, None),
        };
        Ok(ChunkReader {
            place,
            header,
            data,
            end,
            posmap,
            writer: ctx.writer,
            last: None,
            done: false,
        })
    }

    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The next record, or `None` after the last one that counts.
    pub async fn next(&mut self) -> Result<Option<RawRecord>> {
        if self.done {
            return Ok(None);
        }
        let off = self.data.offset();
        if off >= self.end {
            self.done = true;
            self.check_posmap_used_up().await?;
            return Ok(None);
        }
        let (framed_len, payload) = self.frame(off).await?;
        let said = i64::from_le_bytes(payload[2..10].try_into().expect("8 bytes"));
        let data_offset = off - HEADER_LEN;
        let position = if self.header.is_scavenged {
            self.check_scavenged(off, data_offset, said).await?
        } else {
            let at = self.header.start_position() + data_offset as i64;
            if said != at {
                return Err(self.place.damaged(
                    off,
                    format!("the record says log position {said}, but it is at {at}"),
                ));
            }
            at
        };
        if position >= self.writer {
            self.done = true;
            return Ok(None);
        }
        Ok(Some(RawRecord {
            position,
            framed_len,
            offset: off,
            payload,
        }))
    }

    /// Reads the frame at file offset `off`: its framed length and payload.
    async fn frame(&mut self, off: u64) -> Result<(u32, Bytes)> {
        let (end, place) = (self.end, &self.place);
        let left = end - off;
        if left < FRAMING_LEN as u64 {
            return Err(place.damaged(
                off,
                format!(
                    "{left} byte(s) before the end of the data at byte {end}: too few for a record"
                ),
            ));
        }
        let Some(prefix) = self.data.peek(4).await.map_err(|e| place.storage(e))? else {
            return Err(place.damaged(off, "the stored bytes end before the end of the data"));
        };
        let len = i32::from_le_bytes(prefix.try_into().expect("4 bytes"));
        let most = MAX_RECORD_LEN.min(self.header.chunk_size.saturating_sub(FRAMING_LEN));
        if len < 10 || len as u32 > most {
            return Err(place.damaged(
                off,
                format!(
                    "record length {len} (a record is 10 to {most} bytes in a chunk of this size)"
                ),
            ));
        }
        let framed = len as u32 + FRAMING_LEN;
        if framed as u64 > left {
            return Err(place.damaged(
                off,
                format!("a record of {len} bytes runs past the end of the data at byte {end}"),
            ));
        }
        let frame = self
            .data
            .take(framed as usize)
            .await
            .map_err(|e| place.storage(e))?;
        let Some(frame) = frame else {
            return Err(place.damaged(off, "the stored bytes end inside this record"));
        };
        let suffix = i32::from_le_bytes(frame[framed as usize - 4..].try_into().expect("4"));
        if suffix != len {
            let at = off + 4 + len as u64;
            return Err(place.damaged(
                at,
                format!("length suffix {suffix} differs from the prefix {len}"),
            ));
        }
        Ok((framed, frame.slice(4..4 + len as usize)))
    }

    /// The position of a record of a scavenged chunk: what it says, if its posmap entry agrees,
    /// it lies in the chunk's range and after the record before it.
    async fn check_scavenged(&mut self, off: u64, data_offset: u64, said: i64) -> Result<i64> {
        let (h, place) = (&self.header, &self.place);
        let posmap = self.posmap.as_mut().expect("a scavenged chunk's posmap");
        let entry_at = posmap.entries.offset();
        let entry = next_entry(posmap).await.map_err(|e| place.storage(e))?;
        let Some((actual, logical)) = entry else {
            return Err(place.damaged(
                off,
                "the posmap has fewer entries than the chunk has records",
            ));
        };
        let mapped = h.start_position().saturating_add(logical);
        if actual as u64 != data_offset || mapped != said {
            return Err(place.damaged(
                entry_at,
                format!("the posmap maps data offset {actual} to log position {mapped}, but the record at data offset {data_offset} says {said}"),
            ));
        }
        let range = h.start_position()..h.end_position();
        if !range.contains(&said) || self.last.is_some_and(|last| said <= last) {
            return Err(place.damaged(
                off,
                format!("the record says log position {said}: outside the chunk's {range:?} or not after the record before it"),
            ));
        }
        self.last = Some(said);
        Ok(said)
    }

    async fn check_posmap_used_up(&mut self) -> Result<()> {
        match &self.posmap {
            Some(p) if p.left > 0 => Err(self.place.damaged(
                p.entries.offset(),
                format!(
                    "the posmap has {} more entries than the chunk has records",
                    p.left
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A completed or whole stored chunk object: the stream of its header and data, and its footer
/// when it is completed.
async fn open_object(
    ctx: &Context,
    chunk: &ChunkFile,
    key: &str,
    counted: u64,
    place: &Place,
) -> Result<(ByteStream, Option<ChunkFooter>)> {
    let size = chunk.file.size;
    let completed = chunk.file.chunk.as_ref().map(|c| c.completed);
    let footer = if size >= HEADER_LEN + FOOTER_LEN && completed != Some(false) {
        let bytes = read_range(ctx, key, size - FOOTER_LEN..size, place).await?;
        let footer = ChunkFooter::decode(bytes.as_ref().try_into().expect("128 bytes"));
        match (footer.is_completed(), completed) {
            (true, _) => Some(checked_footer(footer, size, place)?),
            (false, Some(true)) => {
                return Err(place.damaged(size - FOOTER_LEN, "its footer says it is not completed"))
            }
            (false, _) => None,
        }
    } else {
        None
    };
    let fetch = match &footer {
        Some(f) => HEADER_LEN + f.physical_data_size as u64,
        None if HEADER_LEN + counted > size => {
            return Err(place.damaged(
                size,
                format!(
                    "the point's writer checkpoint ({}) needs {} bytes of it, but it has {size}",
                    ctx.writer,
                    HEADER_LEN + counted
                ),
            ))
        }
        None => HEADER_LEN + counted,
    };
    let body = ctx
        .target
        .get(key, Some(0..fetch))
        .await
        .map_err(|e| place.storage(e))?;
    Ok((body, footer))
}

/// A footer whose sizes fit the file.
fn checked_footer(f: ChunkFooter, size: u64, place: &Place) -> Result<ChunkFooter> {
    let (physical, map) = (f.physical_data_size, f.map_size);
    let fits =
        physical >= 0 && map >= 0 && HEADER_LEN + physical as u64 + map as u64 + FOOTER_LEN <= size;
    if !fits {
        return Err(place.damaged(
            size - FOOTER_LEN,
            format!("its footer says {physical} bytes of records and {map} of posmap, which do not fit in {size} bytes"),
        ));
    }
    Ok(f)
}

/// A growing chunk: its segments laid end to end, up to file offset `need`.
fn open_segments(
    ctx: &Context,
    segments: &[Segment],
    need: u64,
    place: &Place,
) -> Result<ByteStream> {
    let mut sorted: Vec<&Segment> = segments.iter().collect();
    sorted.sort_by_key(|s| s.at);
    let mut parts: Vec<(String, Range<u64>)> = Vec::new();
    let mut covered = 0u64;
    for s in sorted.into_iter().take_while(|s| s.at < need) {
        if s.at > covered {
            return Err(place.damaged(
                covered,
                format!("no stored segment holds bytes {covered}..{}", s.at),
            ));
        }
        if s.at + s.len > covered {
            parts.push((s.key.clone(), covered - s.at..s.len));
            covered = s.at + s.len;
        }
    }
    if covered < need {
        return Err(place.damaged(
            covered,
            format!("its stored segments end here, but the point's writer checkpoint ({}) needs bytes up to {need}", ctx.writer),
        ));
    }
    let target = ctx.target.clone();
    Ok(futures::stream::iter(parts)
        .then(move |(key, range)| {
            let target = target.clone();
            async move { target.get(&key, Some(range)).await }
        })
        .try_flatten()
        .boxed())
}

async fn read_header(
    ctx: &Context,
    chunk: &ChunkFile,
    data: &mut Incoming,
    place: &Place,
) -> Result<ChunkHeader> {
    let bytes = data
        .take(HEADER_LEN as usize)
        .await
        .map_err(|e| place.storage(e))?;
    let Some(bytes) = bytes else {
        return Err(place.damaged(0, "shorter than a chunk header"));
    };
    let header = ChunkHeader::decode(bytes.as_ref().try_into().expect("128 bytes"))
        .map_err(|e| place.damaged(0, e))?;
    let (name, end) = (chunk.name, chunk.end());
    let other_end = chunk.file.chunk.is_some() && header.end != end;
    if header.start != name.start || other_end || header.chunk_size != ctx.chunk_size {
        return Err(place.damaged(
            2,
            format!(
                "its header says chunks {}..={} of size {}, but the point records {name} (to chunk {end}) of size {}",
                header.start, header.end, header.chunk_size, ctx.chunk_size
            ),
        ));
    }
    if header.transform != 0 {
        return Err(EngineError::invalid_input(format!(
            "{} of restore point {} is encrypted (transform type {}): esbackup log reads plain chunks only",
            chunk.key, ctx.point, header.transform
        )));
    }
    Ok(header)
}

/// The posmap stream of a scavenged chunk (docs/FORMAT.md §1.4).
async fn open_posmap(
    ctx: &Context,
    chunk: &ChunkFile,
    footer: &ChunkFooter,
    place: &Place,
) -> Result<Posmap> {
    let entry_len = if footer.flags & ChunkFooter::MAP_12_BYTES != 0 {
        12
    } else {
        8
    };
    let map = footer.map_size as u64;
    let at = HEADER_LEN + footer.physical_data_size as u64;
    if !map.is_multiple_of(entry_len as u64) {
        return Err(place.damaged(
            at,
            format!("a posmap of {map} bytes is no whole number of {entry_len}-byte entries"),
        ));
    }
    let Content::Object { key, .. } = &chunk.file.content else {
        unreachable!("only completed chunk objects have footers")
    };
    let body = ctx
        .target
        .get(key, Some(at..at + map))
        .await
        .map_err(|e| place.storage(e))?;
    Ok(Posmap {
        entries: Incoming::new(body, at),
        entry_len,
        left: map / entry_len as u64,
    })
}

/// The next posmap entry: (physical offset in the data area, log position from the chunk start).
async fn next_entry(p: &mut Posmap) -> Result<Option<(u32, i64)>, TargetError> {
    if p.left == 0 {
        return Ok(None);
    }
    let Some(b) = p.entries.take(p.entry_len).await? else {
        return Ok(None);
    };
    p.left -= 1;
    Ok(Some(if p.entry_len == 12 {
        let actual = i32::from_le_bytes(b[..4].try_into().expect("4"));
        (
            actual as u32,
            i64::from_le_bytes(b[4..].try_into().expect("8")),
        )
    } else {
        // Deprecated: LogPos in the high 32 bits, ActualPos in the low 32 (`PosMap.cs:43-48`).
        let v = u64::from_le_bytes(b[..].try_into().expect("8"));
        (v as u32, (v >> 32) as i64)
    }))
}

/// Bytes `range` of `key`, all of them.
async fn read_range(ctx: &Context, key: &str, range: Range<u64>, place: &Place) -> Result<Bytes> {
    let want = range.end - range.start;
    let at = range.start;
    let parts: Vec<Bytes> = ctx
        .target
        .get(key, Some(range))
        .await
        .map_err(|e| place.storage(e))?
        .try_collect()
        .await
        .map_err(|e| place.storage(e))?;
    let bytes: Bytes = parts.concat().into();
    if bytes.len() as u64 != want {
        return Err(place.damaged(
            at + bytes.len() as u64,
            "the stored object is shorter than the point records",
        ));
    }
    Ok(bytes)
}
