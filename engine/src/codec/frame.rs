//! The encoded object format (also in `docs/ENCODING.md`). All integers little-endian.
//!
//! ```text
//! header   32 B  "ESBXOBJ1" | flags u8 (1 zstd, 2 encrypted) | 0 0 0 | frame size u32 | nonce prefix 16 B
//! frame*         stored length u32 | body
//! index          frame stored lengths u32 each | plain total u64   (sealed when encrypted)
//! trailer  12 B  index stored length u32 | "ESBXEND1"
//! ```
//!
//! The plain bytes are cut into frames of exactly `frame size` bytes (the last one at most
//! that, and there is always one, maybe empty). A frame's body, before sealing, is a kind byte
//! (0 raw, 1 zstd; bit 7 set on the last frame) and the payload: the zstd compression of the
//! frame's bytes when the location compresses and that is smaller, else the bytes themselves.
//! Encrypted, each body is sealed with XChaCha20-Poly1305 under the location's data key, nonce
//! = prefix ‖ frame number u64, associated data = header ‖ frame number u64 ‖ last u8; the
//! index with nonce = prefix ‖ u64::MAX and associated data = header ‖ "index". The prefix is
//! random per object, so no nonce repeats; the header and the last flag in the associated data
//! make a changed header, a reordered frame and a truncated object fail to open.
//!
//! What the format does not hide: an object's stored size (so roughly its plain size and how
//! well it compresses) and, outside it, its key and time.

use std::io::{self, Write};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::keys::DataKey;

pub(crate) const MAGIC: &[u8; 8] = b"ESBXOBJ1";
pub(crate) const END: &[u8; 8] = b"ESBXEND1";
pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const TRAILER_LEN: usize = 12;
/// Plain bytes per frame.
pub(crate) const FRAME: usize = 1 << 20;
const FLAG_ZSTD: u8 = 1;
const FLAG_ENCRYPTED: u8 = 2;
const KIND_RAW: u8 = 0;
const KIND_ZSTD: u8 = 1;
const LAST: u8 = 0x80;
const TAG: usize = 16;
/// The largest stored frame body a reader accepts (a raw frame, its kind byte and tag).
pub(crate) const MAX_BODY: usize = FRAME + 1 + TAG + 1024;

/// How a location encodes its objects.
#[derive(Clone)]
pub struct Scheme {
    /// zstd level, when the location compresses.
    pub level: Option<i32>,
    /// The data key, when it encrypts.
    pub key: Option<DataKey>,
}

impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Scheme {
    /// `zstd:3, encrypted`, `plain`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(level) = self.level {
            parts.push(format!("zstd:{level}"));
        }
        if self.key.is_some() {
            parts.push("encrypted".to_string());
        }
        match parts.is_empty() {
            true => "plain".to_string(),
            false => parts.join(", "),
        }
    }

    fn cipher(&self) -> Option<XChaCha20Poly1305> {
        self.key
            .as_ref()
            .map(|k| XChaCha20Poly1305::new(k.bytes().into()))
    }
}

/// An object's parsed header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub raw: [u8; HEADER_LEN],
    pub frame: usize,
}

impl Header {
    fn new(scheme: &Scheme) -> Header {
        let mut raw = [0u8; HEADER_LEN];
        raw[..8].copy_from_slice(MAGIC);
        raw[8] = if scheme.level.is_some() { FLAG_ZSTD } else { 0 }
            | if scheme.key.is_some() {
                FLAG_ENCRYPTED
            } else {
                0
            };
        raw[12..16].copy_from_slice(&(FRAME as u32).to_le_bytes());
        if scheme.key.is_some() {
            rand::thread_rng().fill_bytes(&mut raw[16..32]);
        }
        Header { raw, frame: FRAME }
    }

    /// Parses a stored header; an object encrypted otherwise than `scheme` says is damaged
    /// (a plain object planted in an encrypted location is refused).
    pub fn parse(raw: &[u8], scheme: &Scheme) -> Result<Header, String> {
        let raw: [u8; HEADER_LEN] = raw.try_into().map_err(|_| "it is shorter than a header")?;
        if &raw[..8] != MAGIC {
            return Err("it is not an esbackup encoded object (no ESBXOBJ1 header)".into());
        }
        let encrypted = raw[8] & FLAG_ENCRYPTED != 0;
        if encrypted != scheme.key.is_some() || raw[8] & !(FLAG_ZSTD | FLAG_ENCRYPTED) != 0 {
            return Err("its header does not match the location's encoding".into());
        }
        let frame = u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes")) as usize;
        if frame != FRAME {
            return Err(format!("its frame size {frame} is not {FRAME}"));
        }
        Ok(Header { raw, frame })
    }

    fn nonce(&self, counter: u64) -> XNonce {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(&self.raw[16..32]);
        n[16..].copy_from_slice(&counter.to_le_bytes());
        n.into()
    }

    fn frame_aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = self.raw.to_vec();
        aad.extend_from_slice(&index.to_le_bytes());
        aad.push(last as u8);
        aad
    }

    fn index_aad(&self) -> Vec<u8> {
        let mut aad = self.raw.to_vec();
        aad.extend_from_slice(b"index");
        aad
    }
}

/// Writes the encoding of the plain bytes written to it into `out`, one frame in memory at a
/// time. Call [`Encoder::finish`] at the end.
pub(crate) struct Encoder<W: Write> {
    out: W,
    header: Header,
    cipher: Option<XChaCha20Poly1305>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    pending: Vec<u8>,
    lens: Vec<u32>,
    plain: u64,
    stored: u64,
}

impl<W: Write> Encoder<W> {
    pub fn new(mut out: W, scheme: &Scheme) -> io::Result<Encoder<W>> {
        let header = Header::new(scheme);
        out.write_all(&header.raw)?;
        let compressor = match scheme.level {
            Some(level) => Some(zstd::bulk::Compressor::new(level)?),
            None => None,
        };
        Ok(Encoder {
            out,
            header,
            cipher: scheme.cipher(),
            compressor,
            pending: Vec::with_capacity(2 * FRAME),
            lens: Vec::new(),
            plain: 0,
            stored: HEADER_LEN as u64,
        })
    }

    /// Writes the last frame, the index and the trailer; returns `out` and the stored length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        let rest = std::mem::take(&mut self.pending);
        self.frame(&rest, true)?;
        let mut index: Vec<u8> = self.lens.iter().flat_map(|l| l.to_le_bytes()).collect();
        index.extend_from_slice(&self.plain.to_le_bytes());
        if let Some(cipher) = &self.cipher {
            let nonce = self.header.nonce(u64::MAX);
            cipher
                .encrypt_in_place(&nonce, &self.header.index_aad(), &mut index)
                .map_err(|_| io::Error::other("sealing the index failed"))?;
        }
        self.out.write_all(&index)?;
        self.out.write_all(&(index.len() as u32).to_le_bytes())?;
        self.out.write_all(END)?;
        self.out.flush()?;
        let stored = self.stored + (index.len() + TRAILER_LEN) as u64;
        Ok((self.out, stored))
    }

    fn frame(&mut self, plain: &[u8], last: bool) -> io::Result<()> {
        let mut body = Vec::with_capacity(plain.len() + 1 + TAG);
        let compressed = match &mut self.compressor {
            Some(c) => Some(c.compress(plain)?).filter(|z| z.len() < plain.len()),
            None => None,
        };
        let kind = if compressed.is_some() {
            KIND_ZSTD
        } else {
            KIND_RAW
        };
        body.push(kind | if last { LAST } else { 0 });
        body.extend_from_slice(compressed.as_deref().unwrap_or(plain));
        let index = self.lens.len() as u64;
        if let Some(cipher) = &self.cipher {
            let nonce = self.header.nonce(index);
            cipher
                .encrypt_in_place(&nonce, &self.header.frame_aad(index, last), &mut body)
                .map_err(|_| io::Error::other("sealing a frame failed"))?;
        }
        self.out.write_all(&(body.len() as u32).to_le_bytes())?;
        self.out.write_all(&body)?;
        self.lens.push(body.len() as u32);
        self.plain += plain.len() as u64;
        self.stored += 4 + body.len() as u64;
        Ok(())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // A frame is written once more bytes follow it: only then is it known not to be last.
        while self.pending.len() > FRAME {
            let frame: Vec<u8> = self.pending.drain(..FRAME).collect();
            self.frame(&frame, false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Encodes `plain` whole (for small objects).
pub(crate) fn encode(plain: &[u8], scheme: &Scheme) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::new(Vec::new(), scheme)?;
    encoder.write_all(plain)?;
    Ok(encoder.finish()?.0)
}

/// Opens one stored frame body (frame `index` of an object with `header`): its plain bytes
/// and whether it says it is the last.
pub(crate) fn open_frame(
    scheme: &Scheme,
    header: &Header,
    index: u64,
    mut body: Vec<u8>,
) -> Result<(Vec<u8>, bool), String> {
    if let Some(cipher) = scheme.cipher() {
        if body.len() < TAG {
            return Err(format!("frame {index} is shorter than its tag"));
        }
        let tag = body.split_off(body.len() - TAG);
        let tag = chacha20poly1305::Tag::from_slice(&tag);
        let nonce = header.nonce(index);
        // The last flag is sealed with the frame: try it as a middle frame, then as the last
        // (the tag is checked before anything is decrypted, so a failed try leaves `body`).
        let opened = [false, true].into_iter().any(|last| {
            let aad = header.frame_aad(index, last);
            cipher
                .decrypt_in_place_detached(&nonce, &aad, &mut body, tag)
                .is_ok()
        });
        if !opened {
            return Err(format!(
                "frame {index} does not open with the location's key (damaged, or another key's)"
            ));
        }
    }
    let (&kind, payload) = body
        .split_first()
        .ok_or_else(|| format!("frame {index} is empty"))?;
    let last = kind & LAST != 0;
    let plain = match kind & !LAST {
        KIND_RAW => payload.to_vec(),
        KIND_ZSTD => zstd::bulk::decompress(payload, header.frame)
            .map_err(|e| format!("frame {index} does not decompress: {e}"))?,
        other => return Err(format!("frame {index} has unknown kind {other}")),
    };
    if plain.len() > header.frame || (!last && plain.len() != header.frame) {
        return Err(format!(
            "frame {index} holds {} bytes, not a frame's {}",
            plain.len(),
            header.frame
        ));
    }
    Ok((plain, last))
}

/// The index of an object: each frame's stored body length and the plain total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    pub lens: Vec<u32>,
    pub plain: u64,
}

impl Index {
    /// Where frame `i` starts (its length prefix) in the stored object.
    pub fn offset(&self, i: usize) -> u64 {
        HEADER_LEN as u64 + self.lens[..i].iter().map(|&l| 4 + l as u64).sum::<u64>()
    }
}

/// The stored length of the index the trailer announces.
pub(crate) fn trailer(raw: &[u8]) -> Result<usize, String> {
    if raw.len() != TRAILER_LEN || &raw[4..] != END {
        return Err("its end is not an esbackup trailer (truncated?)".into());
    }
    Ok(u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) as usize)
}

/// Opens and parses a stored index.
pub(crate) fn open_index(scheme: &Scheme, header: &Header, raw: &[u8]) -> Result<Index, String> {
    let mut raw = raw.to_vec();
    if let Some(cipher) = scheme.cipher() {
        cipher
            .decrypt_in_place(&header.nonce(u64::MAX), &header.index_aad(), &mut raw)
            .map_err(|_| "its index does not open with the location's key".to_string())?;
    }
    if raw.len() <= 8 || !(raw.len() - 8).is_multiple_of(4) {
        return Err("its index has a wrong length".into());
    }
    let (lens, total) = raw.split_at(raw.len() - 8);
    let lens: Vec<u32> = lens
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    if lens.iter().any(|&l| l as usize > MAX_BODY || l == 0) {
        return Err("its index names a frame of impossible length".into());
    }
    let plain = u64::from_le_bytes(total.try_into().expect("8 bytes"));
    let frames = lens.len() as u64;
    let full = (frames - 1) * FRAME as u64;
    if plain < full || plain > full + FRAME as u64 {
        return Err("its index disagrees with its frame count".into());
    }
    Ok(Index { lens, plain })
}

/// The stored length of an index of `frames` frames.
pub(crate) fn index_len(scheme: &Scheme, frames: usize) -> usize {
    4 * frames + 8 + if scheme.key.is_some() { TAG } else { 0 }
}
