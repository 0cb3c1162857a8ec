use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use rand::{Rng, RngCore, SeedableRng};

use super::frame::FRAME;
use super::*;
use crate::target::{get_bytes, TargetErrorKind};
use crate::testing::MemoryTarget;

fn schemes() -> Vec<Scheme> {
    vec![
        Scheme {
            level: Some(3),
            key: None,
        },
        Scheme {
            level: None,
            key: Some(DataKey::random()),
        },
        Scheme {
            level: Some(3),
            key: Some(DataKey::random()),
        },
    ]
}

fn data(len: usize, compressible: bool, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    if compressible {
        let words: [&[u8]; 4] = [
            b"{\"amount\":",
            b"\"EUR\",",
            b"\"note\":\"paid\"}",
            b"12.50,",
        ];
        let mut i = 0;
        while i < len {
            let w = words[rng.gen_range(0..4)];
            let n = w.len().min(len - i);
            v[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    } else {
        rng.fill_bytes(&mut v);
    }
    v
}

async fn read(
    target: &dyn Target,
    key: &str,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, TargetError> {
    let parts: Vec<Bytes> = target.get(key, range).await?.try_collect().await?;
    Ok(parts.concat())
}

fn pw(s: &str) -> Password {
    Password::new(s, "the test")
}

const SIZES: [usize; 7] = [0, 1, FRAME - 1, FRAME, FRAME + 1, 2 * FRAME, 5 * FRAME + 17];

#[tokio::test]
async fn every_size_round_trips_in_every_scheme_and_reports_plain_and_stored_sizes() {
    for scheme in schemes() {
        let inner = Arc::new(MemoryTarget::new());
        let codec = CodecTarget::new(inner.clone(), scheme.clone());
        for (i, &len) in SIZES.iter().enumerate() {
            for compressible in [true, false] {
                let plain = data(len, compressible, i as u64);
                let key = format!("chunk-{i}-{compressible}");
                let stored = codec.put(&key, Upload::bytes(plain.clone())).await.unwrap();
                assert_eq!(stored.size, len as u64);
                assert_eq!(stored.md5, crate::hashing::md5(&plain));
                assert_eq!(stored.stored_size, inner.head(&key).await.unwrap().size);
                assert_ne!(
                    inner.snapshot()[&key].as_ref(),
                    plain.as_slice(),
                    "{scheme:?}"
                );
                assert_eq!(
                    read(&codec, &key, None).await.unwrap(),
                    plain,
                    "{scheme:?} {len}"
                );
                if compressible && len > 1000 && scheme.level.is_some() {
                    assert!(
                        stored.stored_size * 3 < len as u64,
                        "{scheme:?} {len}: {}",
                        stored.stored_size
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn ranged_reads_return_exactly_the_plain_bytes_at_every_edge() {
    let len = 3 * FRAME + 100;
    let plain = data(len, true, 7);
    let f = FRAME as u64;
    let edges = [
        0,
        1,
        f - 1,
        f,
        f + 1,
        2 * f,
        3 * f,
        len as u64 - 1,
        len as u64,
        len as u64 + 5,
    ];
    for scheme in schemes() {
        let codec = CodecTarget::new(Arc::new(MemoryTarget::new()), scheme);
        codec.put("o", Upload::bytes(plain.clone())).await.unwrap();
        for &a in &edges {
            for &b in &edges {
                let got = read(&codec, "o", Some(a..b)).await.unwrap();
                let (a2, b2) = ((a as usize).min(len), (b as usize).min(len));
                let want = if a2 < b2 { &plain[a2..b2] } else { &[][..] };
                assert_eq!(got, want, "range {a}..{b}");
            }
        }
    }
}

#[tokio::test]
async fn a_flipped_bit_or_a_cut_anywhere_in_an_encrypted_object_is_damage_naming_the_key() {
    for scheme in schemes().into_iter().filter(|s| s.key.is_some()) {
        let inner = Arc::new(MemoryTarget::new());
        let codec = CodecTarget::new(inner.clone(), scheme);
        codec
            .put("chunk-1", Upload::bytes(data(3000, true, 1)))
            .await
            .unwrap();
        let stored = inner.snapshot()["chunk-1"].clone();
        let mut damages: Vec<Vec<u8>> = (0..stored.len())
            .map(|i| {
                let mut v = stored.to_vec();
                v[i] ^= 0x10;
                v
            })
            .collect();
        damages.extend((0..stored.len()).map(|n| stored[..n].to_vec()));
        for bad in damages {
            inner.insert("chunk-1", bad.clone());
            for range in [None, Some(0..3000), Some(5..20)] {
                let err = read(&codec, "chunk-1", range.clone()).await.unwrap_err();
                assert_eq!(
                    err.kind(),
                    TargetErrorKind::Damaged,
                    "{err} ({range:?}, {} bytes)",
                    bad.len()
                );
                assert_eq!(err.key(), Some("chunk-1"));
            }
        }
    }
}

#[tokio::test]
async fn another_key_or_a_plain_object_does_not_open() {
    let inner = Arc::new(MemoryTarget::new());
    let a = CodecTarget::new(inner.clone(), schemes().remove(2));
    a.put("o", Upload::bytes(data(100, true, 2))).await.unwrap();
    let b = CodecTarget::new(inner.clone(), schemes().remove(2));
    assert_eq!(
        read(&b, "o", None).await.unwrap_err().kind(),
        TargetErrorKind::Damaged
    );
    let plain = CodecTarget::new(inner.clone(), schemes().remove(0));
    plain
        .put("p", Upload::bytes(data(100, true, 2)))
        .await
        .unwrap();
    assert_eq!(
        read(&a, "p", None).await.unwrap_err().kind(),
        TargetErrorKind::Damaged
    );
    inner.insert("q", Bytes::from_static(b"just plain bytes"));
    assert_eq!(
        read(&a, "q", None).await.unwrap_err().kind(),
        TargetErrorKind::Damaged
    );
}

#[tokio::test]
async fn a_body_that_fails_mid_read_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 1000]).unwrap();
    let inner = Arc::new(MemoryTarget::new());
    let codec = CodecTarget::new(inner.clone(), schemes().remove(2));
    // Announced longer than the file: the read comes up short.
    let err = codec.put("o", Upload::file(&path, 5000)).await.unwrap_err();
    assert_eq!(err.kind(), TargetErrorKind::Body, "{err}");
    assert!(inner.snapshot().is_empty());
}

#[tokio::test]
async fn settings_keys_and_locks_stay_plain() {
    let inner = Arc::new(MemoryTarget::new());
    let codec = CodecTarget::new(inner.clone(), schemes().remove(2));
    for key in [
        ".esbackup/locks/run-1.json",
        ".esbackup/config",
        ".esbackup/keys/ab.json",
    ] {
        codec.put(key, Upload::bytes(&b"{}"[..])).await.unwrap();
        assert_eq!(inner.snapshot()[key].as_ref(), b"{}");
    }
}

async fn initialised(password: &str) -> Arc<MemoryTarget> {
    let inner = Arc::new(MemoryTarget::new());
    let opts = InitOptions {
        compression: Some(3),
        encrypt: true,
        kdf: KdfParams::insecure_for_tests(),
        ..InitOptions::default()
    };
    init(inner.clone(), &opts, Some(&pw(password)))
        .await
        .unwrap();
    inner
}

#[tokio::test]
async fn open_needs_the_password_of_an_encrypted_location_and_names_how_to_give_it() {
    let inner = initialised("right").await;
    let err = open(inner.clone(), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("ESBACKUP_PASSWORD"), "{err}");
    let err = open(inner.clone(), Some(&pw("wrong"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("the test"), "{err}");
    let target = open(inner.clone(), Some(&pw("right"))).await.unwrap();
    assert!(target.encodes());
    target
        .put("chunk-0", Upload::bytes(data(10, true, 0)))
        .await
        .unwrap();
    let again = open(inner.clone(), Some(&pw("right"))).await.unwrap();
    assert_eq!(
        read(again.as_ref(), "chunk-0", None).await.unwrap(),
        data(10, true, 0)
    );
    // The unwrapped store is refused by the engine.
    let Err(err) = crate::location::Location::open(inner.clone()).await else {
        panic!("the unwrapped store was taken");
    };
    assert!(err.to_string().contains("codec::open"), "{err}");
}

#[tokio::test]
async fn key_slots_add_and_remove_access_without_re_encrypting_and_the_last_stays() {
    let inner = initialised("first").await;
    let target = open(inner.clone(), Some(&pw("first"))).await.unwrap();
    target
        .put("chunk-0", Upload::bytes(data(10, true, 0)))
        .await
        .unwrap();
    let before = inner.snapshot()["chunk-0"].clone();
    let kdf = KdfParams::insecure_for_tests();
    let second = add_key(inner.as_ref(), &pw("first"), &pw("second"), kdf)
        .await
        .unwrap();
    assert!(add_key(inner.as_ref(), &pw("nope"), &pw("x"), kdf)
        .await
        .is_err());
    let slots = keys::list_slots(inner.as_ref()).await.unwrap();
    assert_eq!(slots.len(), 2);
    let first = slots.iter().find(|s| s.id != second).unwrap().id.clone();
    remove_key(inner.as_ref(), &pw("second"), &first)
        .await
        .unwrap();
    assert!(open(inner.clone(), Some(&pw("first"))).await.is_err());
    let by_second = open(inner.clone(), Some(&pw("second"))).await.unwrap();
    assert_eq!(
        read(by_second.as_ref(), "chunk-0", None).await.unwrap(),
        data(10, true, 0)
    );
    assert_eq!(inner.snapshot()["chunk-0"], before, "nothing re-encrypted");
    let err = remove_key(inner.as_ref(), &pw("second"), &second)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("last"), "{err}");
}

#[tokio::test]
async fn init_is_for_empty_locations_and_one_of_two_racing_wins() {
    let inner = Arc::new(MemoryTarget::new());
    let opts = InitOptions {
        compression: Some(3),
        ..InitOptions::default()
    };
    let (a, b) = tokio::join!(
        init(inner.clone(), &opts, None),
        init(inner.clone(), &opts, None)
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let err = init(inner.clone(), &opts, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DestinationNotEmpty);
    let used = Arc::new(MemoryTarget::new());
    used.insert("chunk-000000.000000", Bytes::from_static(b"x"));
    assert_eq!(
        init(used.clone(), &opts, None).await.unwrap_err().kind(),
        ErrorKind::DestinationNotEmpty
    );
    let open = open(inner.clone(), None).await.unwrap();
    assert!(open.encodes() && open.describe().contains("zstd:3"));
}

#[tokio::test]
async fn a_crafted_key_slot_cannot_ask_for_unbounded_work() {
    let inner = initialised("pw").await;
    let listed = inner.list(keys::KEYS_DIR).await.unwrap();
    let key = &listed[0].key;
    let raw = get_bytes(inner.as_ref(), key).await.unwrap();
    let mut slot: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    slot["kdf"]["m_cost_kib"] = (1u64 << 31).into();
    inner.insert(key, serde_json::to_vec(&slot).unwrap());
    let err = open(inner.clone(), Some(&pw("pw"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(err.to_string().contains("out of bounds"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_kit_passes_through_the_codec_in_every_scheme() {
    for scheme in schemes() {
        let inner = MemoryTarget::new();
        let target = CodecTarget::new(Arc::new(inner.clone()), scheme.clone());
        let again = scheme.clone();
        // Large objects of three frames and a bit (the servers' suites run the kit's default
        // sizes through the codec).
        let sizes = crate::conformance::ConformanceOptions {
            large_size: 3 * FRAME + 12_345,
            ..Default::default()
        };
        let kit = crate::conformance::Kit::new()
            .with_sizes(sizes)
            .requires_put_if_absent()
            .reopen(move || Arc::new(CodecTarget::new(Arc::new(inner.clone()), again.clone())));
        let report = kit.run(&target).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(report.put_if_absent_supported);
        assert!(report.passed.len() >= 17, "{report}");
    }
}
