//! Reading encoded objects: a whole object as one streamed `get`, frame by frame, and a byte
//! range as a `head`, two small ranged `get`s (header, index) and one of exactly the frames
//! that cover it. Frames are opened off the async runtime; anything malformed is
//! [`TargetErrorKind::Damaged`] naming the key.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::frame::{self, Header, Index, Scheme, HEADER_LEN, TRAILER_LEN};
use crate::target::{ByteStream, Target, TargetError, TargetErrorKind};

pub(crate) fn damaged(key: &str, why: impl Into<String>) -> TargetError {
    TargetError::new(
        TargetErrorKind::Damaged,
        format!("the stored object does not decode: {}", why.into()),
    )
    .with_key(key)
}

/// Opens frame `index` off the runtime.
async fn open(
    scheme: &Arc<Scheme>,
    header: &Arc<Header>,
    key: &str,
    index: u64,
    body: Vec<u8>,
) -> Result<(Vec<u8>, bool), TargetError> {
    let (scheme, header) = (scheme.clone(), header.clone());
    tokio::task::spawn_blocking(move || frame::open_frame(&scheme, &header, index, body))
        .await
        .map_err(|e| TargetError::permanent(format!("decoding stopped: {e}")).with_key(key))?
        .map_err(|why| damaged(key, why))
}

/// The state of a whole-object read.
struct Whole {
    key: String,
    scheme: Arc<Scheme>,
    inner: ByteStream,
    buf: BytesMut,
    header: Option<Arc<Header>>,
    lens: Vec<u32>,
    plain: u64,
    last_seen: bool,
}

impl Whole {
    /// Pulls from the store until `n` bytes are buffered; a stream that ends first was cut.
    async fn fill(&mut self, n: usize) -> Result<(), TargetError> {
        while self.buf.len() < n {
            match self.inner.try_next().await? {
                Some(b) => self.buf.extend_from_slice(&b),
                None => return Err(damaged(&self.key, "it ends early (truncated)")),
            }
        }
        Ok(())
    }

    async fn take(&mut self, n: usize) -> Result<Bytes, TargetError> {
        self.fill(n).await?;
        Ok(self.buf.split_to(n).freeze())
    }

    /// The next plain frame, or `None` after checking the index and trailer.
    async fn next(&mut self) -> Result<Option<Bytes>, TargetError> {
        let header = match &self.header {
            Some(h) => h.clone(),
            None => {
                let raw = self.take(HEADER_LEN).await?;
                let h = Header::parse(&raw, &self.scheme).map_err(|w| damaged(&self.key, w))?;
                self.header.insert(Arc::new(h)).clone()
            }
        };
        if self.last_seen {
            self.finish(&header).await?;
            return Ok(None);
        }
        let len = self.take(4).await?.get_u32_le() as usize;
        if len == 0 || len > frame::MAX_BODY {
            return Err(damaged(&self.key, format!("a frame of {len} bytes")));
        }
        let body = self.take(len).await?.to_vec();
        let index = self.lens.len() as u64;
        let (plain, last) = open(&self.scheme, &header, &self.key, index, body).await?;
        self.lens.push(len as u32);
        self.plain += plain.len() as u64;
        self.last_seen = last;
        Ok(Some(Bytes::from(plain)))
    }

    /// Checks that the index agrees with the frames read and that the object ends there.
    async fn finish(&mut self, header: &Header) -> Result<(), TargetError> {
        let index_len = frame::index_len(&self.scheme, self.lens.len());
        let raw = self.take(index_len + TRAILER_LEN).await?;
        let (index_raw, trailer) = raw.split_at(index_len);
        let announced = frame::trailer(trailer).map_err(|w| damaged(&self.key, w))?;
        let index = frame::open_index(&self.scheme, header, index_raw)
            .map_err(|w| damaged(&self.key, w))?;
        if announced != index_len || index.lens != self.lens || index.plain != self.plain {
            return Err(damaged(&self.key, "its index disagrees with its frames"));
        }
        while let Some(b) = self.inner.try_next().await? {
            if !b.is_empty() || !self.buf.is_empty() {
                return Err(damaged(&self.key, "bytes follow its trailer"));
            }
        }
        if !self.buf.is_empty() {
            return Err(damaged(&self.key, "bytes follow its trailer"));
        }
        Ok(())
    }
}

/// The whole plain object, streamed.
pub(crate) async fn whole(
    inner: &dyn Target,
    scheme: Arc<Scheme>,
    key: &str,
) -> Result<ByteStream, TargetError> {
    let stream = inner.get(key, None).await?;
    let state = Whole {
        key: key.to_string(),
        scheme,
        inner: stream,
        buf: BytesMut::new(),
        header: None,
        lens: Vec::new(),
        plain: 0,
        last_seen: false,
    };
    let frames =
        futures::stream::try_unfold(
            state,
            |mut s| async move { Ok(s.next().await?.map(|b| (b, s))) },
        );
    Ok(frames
        .try_filter(|b| futures::future::ready(!b.is_empty()))
        .boxed())
}

async fn ranged_get(inner: &dyn Target, key: &str, r: Range<u64>) -> Result<Bytes, TargetError> {
    let want = (r.end - r.start) as usize;
    let parts: Vec<Bytes> = inner.get(key, Some(r)).await?.try_collect().await?;
    let got: Bytes = parts.concat().into();
    match got.len() == want {
        true => Ok(got),
        false => Err(damaged(
            key,
            "it is shorter than its index says (truncated)",
        )),
    }
}

/// The header and index of a stored object of `size` bytes.
async fn header_and_index(
    inner: &dyn Target,
    scheme: &Scheme,
    key: &str,
    size: u64,
) -> Result<(Header, Index), TargetError> {
    if size < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(damaged(key, "it is shorter than a header and trailer"));
    }
    let head = ranged_get(inner, key, 0..HEADER_LEN as u64).await?;
    let header = Header::parse(&head, scheme).map_err(|w| damaged(key, w))?;
    let trailer = ranged_get(inner, key, size - TRAILER_LEN as u64..size).await?;
    let index_len = frame::trailer(&trailer).map_err(|w| damaged(key, w))? as u64;
    let index_end = size - TRAILER_LEN as u64;
    if index_len + (HEADER_LEN as u64) > index_end || index_len > 64 << 20 {
        return Err(damaged(key, "its trailer names an impossible index"));
    }
    let raw = ranged_get(inner, key, index_end - index_len..index_end).await?;
    let index = frame::open_index(scheme, &header, &raw).map_err(|w| damaged(key, w))?;
    if index.offset(index.lens.len()) != index_end - index_len {
        return Err(damaged(key, "its index disagrees with its size"));
    }
    Ok((header, index))
}

/// The plain bytes `range` of the object (the `Target` range rules: empty → none, past the
/// end → up to the end). From the start, a whole read cut at `range.end` (one request);
/// elsewhere (a resumed download) the frames that cover it, one at a time.
pub(crate) async fn range(
    inner: &dyn Target,
    scheme: Arc<Scheme>,
    key: &str,
    range: Range<u64>,
) -> Result<ByteStream, TargetError> {
    if range.start >= range.end {
        return Ok(futures::stream::empty().boxed());
    }
    if range.start == 0 {
        return Ok(cut(whole(inner, scheme, key).await?, 0, 0..range.end));
    }
    let size = inner.head(key).await?.size;
    let (header, index) = header_and_index(inner, &scheme, key, size).await?;
    let end = range.end.min(index.plain);
    if range.start >= end {
        return Ok(futures::stream::empty().boxed());
    }
    let f = header.frame as u64;
    let (first, last) = (range.start / f, (end - 1) / f);
    let span = index.offset(first as usize)..index.offset(last as usize + 1);
    let state = Whole {
        key: key.to_string(),
        scheme,
        inner: inner.get(key, Some(span)).await?,
        buf: BytesMut::new(),
        header: Some(Arc::new(header)),
        lens: vec![0; first as usize],
        plain: 0,
        last_seen: false,
    };
    let frames = index.lens.len() as u64;
    let stream = futures::stream::try_unfold((state, first), move |(mut s, i)| async move {
        if i > last {
            return Ok(None);
        }
        let plain = s.next().await?.unwrap_or_default();
        if s.last_seen != (i + 1 == frames) || (plain.len() as u64) < (end - i * f).min(f) {
            return Err(damaged(&s.key, "a frame disagrees with its index"));
        }
        Ok(Some((plain, (s, i + 1))))
    });
    Ok(cut(stream.boxed(), first * f, range.start..end))
}

/// The plain bytes `want` of a stream whose first byte is at plain offset `at`.
fn cut(stream: ByteStream, at: u64, want: Range<u64>) -> ByteStream {
    stream
        .scan(at, move |pos, piece| {
            let out = match piece {
                Err(e) => Some(Some(Err(e))),
                Ok(_) if *pos >= want.end => None,
                Ok(b) => {
                    let start = *pos;
                    *pos += b.len() as u64;
                    let from = want.start.saturating_sub(start).min(b.len() as u64) as usize;
                    let to = (want.end - start).min(b.len() as u64) as usize;
                    Some((from < to).then(|| Ok(b.slice(from..to))))
                }
            };
            futures::future::ready(out)
        })
        .filter_map(futures::future::ready)
        .boxed()
}
