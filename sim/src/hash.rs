//! The two 32-bit hashes the server uses on disk: xxHash32 (bloom filter lines, stream hash high
//! half) and MurmurHash3 x86_32 (stream hash low half). docs/FORMAT.md §3.2, §3.3.

/// Seed of every on-disk hash of the server (stream hashes and bloom filter lines).
pub const SEED: u32 = 0xc58f_1a7b;

const P1: u32 = 2_654_435_761;
const P2: u32 = 2_246_822_519;
const P3: u32 = 3_266_489_917;
const P4: u32 = 668_265_263;
const P5: u32 = 374_761_393;

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

/// xxHash32 of `data` with `seed`.
pub fn xxh32(data: &[u8], seed: u32) -> u32 {
    let round = |acc: u32, lane: u32| {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(13)
            .wrapping_mul(P1)
    };
    let len = data.len();
    let mut i = 0;
    let mut h = if len >= 16 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while i + 16 <= len {
            for (k, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, u32_at(data, i + 4 * k));
            }
            i += 16;
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len as u32);
    while i + 4 <= len {
        h = h
            .wrapping_add(u32_at(data, i).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        i += 4;
    }
    for &b in &data[i..] {
        h = h
            .wrapping_add((b as u32).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^ (h >> 16)
}

/// MurmurHash3 x86_32 of `data` with `seed`.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let blocks = data.len() / 4;
    for i in 0..blocks {
        let k = u32_at(data, 4 * i)
            .wrapping_mul(C1)
            .rotate_left(15)
            .wrapping_mul(C2);
        h = (h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    let tail = &data[blocks * 4..];
    let mut k = 0u32;
    for (j, &b) in tail.iter().enumerate() {
        k |= (b as u32) << (8 * j);
    }
    if !tail.is_empty() {
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The index's 64-bit stream hash: xxHash32 in the high half, Murmur3 in the low half, both over
/// the stream name as UTF-16LE with [`SEED`].
pub fn stream_hash(stream: &str) -> u64 {
    let utf16: Vec<u8> = stream.encode_utf16().flat_map(u16::to_le_bytes).collect();
    ((xxh32(&utf16, SEED) as u64) << 32) | murmur3_32(&utf16, SEED) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh32_and_murmur3_give_their_reference_values() {
        type Hash = fn(&[u8], u32) -> u32;
        const SPAM: &[u8] = b"Nobody inspects the spammish repetition";
        const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";
        let vectors: [(&str, Hash, &[u8], u32, u32); 8] = [
            ("xxh32", xxh32, b"", 0, 0x02CC_5D05),
            ("xxh32", xxh32, b"a", 0, 0x550D_7456),
            ("xxh32", xxh32, b"abc", 0, 0x32D1_53FF),
            ("xxh32", xxh32, SPAM, 0, 0xE229_3B2F),
            ("murmur3", murmur3_32, b"", 0, 0),
            ("murmur3", murmur3_32, b"", 1, 0x514E_28B7),
            ("murmur3", murmur3_32, b"hello", 0, 0x248B_FA47),
            ("murmur3", murmur3_32, FOX, 0, 0x2E4F_F723),
        ];
        for (name, hash, input, seed, want) in vectors {
            let text = String::from_utf8_lossy(input);
            assert_eq!(
                hash(input, seed),
                want,
                "{name} of {text:?} with seed {seed}"
            );
        }
    }

    #[test]
    fn stream_hash_combines_both_halves() {
        let h = stream_hash("account-1");
        let utf16: Vec<u8> = "account-1"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!((h >> 32) as u32, xxh32(&utf16, SEED));
        assert_eq!(h as u32, murmur3_32(&utf16, SEED));
        assert_ne!(stream_hash("account-2"), h);
    }
}
