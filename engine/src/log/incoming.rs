//! A stored object's bytes as they arrive, taken a piece of known length at a time: the buffer
//! holds what one piece needs plus what the store sent beyond it, never the whole object.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::target::{ByteStream, TargetError};

pub(crate) struct Incoming {
    body: ByteStream,
    buf: BytesMut,
    /// Offset in the object of `buf[0]`.
    at: u64,
}

impl Incoming {
    /// Reads `body`, whose first byte is at offset `at` of its object.
    pub fn new(body: ByteStream, at: u64) -> Incoming {
        Incoming {
            body,
            buf: BytesMut::new(),
            at,
        }
    }

    /// Offset in the object of the next byte [`Incoming::take`] gives.
    pub fn offset(&self) -> u64 {
        self.at
    }

    /// The next `n` bytes, or `None` when the object ends before them.
    pub async fn take(&mut self, n: usize) -> Result<Option<Bytes>, TargetError> {
        if !self.fill(n).await? {
            return Ok(None);
        }
        self.at += n as u64;
        Ok(Some(self.buf.split_to(n).freeze()))
    }

    /// The next `n` bytes without taking them, or `None` when the object ends before them.
    pub async fn peek(&mut self, n: usize) -> Result<Option<&[u8]>, TargetError> {
        Ok(self.fill(n).await?.then(|| &self.buf[..n]))
    }

    /// Reads until `n` bytes are buffered; false when the object ends first.
    async fn fill(&mut self, n: usize) -> Result<bool, TargetError> {
        while self.buf.len() < n {
            match self.body.next().await {
                Some(piece) => self.buf.extend_from_slice(&piece?),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) fn pieces(data: &[u8], size: usize) -> ByteStream {
    let parts: Vec<Result<Bytes, TargetError>> = data
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(parts).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_of_any_size_make_up_the_object() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = Incoming::new(pieces(&data, 7), 1000);
        assert_eq!(r.peek(3).await.unwrap(), Some(&[0u8, 1, 2][..]));
        assert_eq!(&r.take(10).await.unwrap().unwrap()[..], &data[..10]);
        assert_eq!(r.offset(), 1010);
        assert_eq!(&r.take(85).await.unwrap().unwrap()[..], &data[10..95]);
        assert_eq!(r.take(6).await.unwrap(), None, "5 bytes left");
    }
}
