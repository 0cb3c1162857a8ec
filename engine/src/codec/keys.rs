//! Key slots: the location's random data key, wrapped once per password (restic's key files
//! are the model). A slot is plain JSON at `.esbackup/keys/<id>.json`: the argon2id
//! parameters and salt, and the data key sealed with XChaCha20-Poly1305 under the key the
//! password derives (associated data: the slot id). Adding or removing a slot changes who can
//! open the location without re-encrypting anything.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{EngineError, Result};
use crate::target::{get_bytes, Target};

/// Where key slots live.
pub const KEYS_DIR: &str = ".esbackup/keys/";

/// The random key every object of an encrypted location is sealed with.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn random() -> DataKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(key.as_mut());
        DataKey(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A password, and how it was given (named in errors: "ESBACKUP_PASSWORD", "--password-file
/// /etc/esbackup/pw").
#[derive(Clone)]
pub struct Password {
    pub secret: Zeroizing<String>,
    pub from: String,
}

impl Password {
    pub fn new(secret: impl Into<String>, from: impl Into<String>) -> Password {
        Password {
            secret: Zeroizing::new(secret.into()),
            from: from.into(),
        }
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommendation: 64 MiB, 3 passes, 1 lane.
    fn default() -> KdfParams {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters, for tests only.
    pub fn insecure_for_tests() -> KdfParams {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Bounds a slot read from the store must keep, so a crafted slot cannot make an unlock
    /// allocate without end or run for hours.
    fn check(&self) -> std::result::Result<(), String> {
        let ok = (8..=4 * 1024 * 1024).contains(&self.m_cost_kib)
            && (1..=100).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost);
        match ok {
            true => Ok(()),
            false => Err(format!("its KDF parameters {self:?} are out of bounds")),
        }
    }
}

/// One stored key slot.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Slot {
    id: String,
    created: chrono::DateTime<chrono::Utc>,
    host: String,
    kdf: Kdf,
    nonce: String,
    wrapped: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kdf {
    algorithm: String,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

/// What `key list` shows of a slot.
#[derive(Clone, Debug, Serialize)]
pub struct SlotInfo {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub host: String,
}

fn slot_key(id: &str) -> String {
    format!("{KEYS_DIR}{id}.json")
}

/// Derives the key-encryption key of `password` (off the async runtime: it is made slow).
async fn derive(password: &str, salt: Vec<u8>, params: KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let password = Zeroizing::new(password.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || {
        let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
            .map_err(|e| EngineError::invalid_input(format!("argon2 parameters: {e}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut kek = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(&password, &salt, kek.as_mut())
            .map_err(|e| EngineError::invalid_input(format!("argon2: {e}")))?;
        Ok(kek)
    })
    .await
    .map_err(|e| EngineError::invalid_input(format!("the key derivation stopped: {e}")))?
}

/// Adds a slot that opens `key` with `password`; returns its id.
pub async fn add_slot(
    target: &dyn Target,
    key: &DataKey,
    password: &Password,
    params: KdfParams,
) -> Result<String> {
    let mut rng = rand::thread_rng();
    let id = format!("{:016x}", rng.next_u64());
    let mut salt = vec![0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let kek = derive(&password.secret, salt.clone(), params).await?;
    let wrapped = XChaCha20Poly1305::new(kek.as_ref().into())
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: key.bytes(),
                aad: id.as_bytes(),
            },
        )
        .map_err(|_| EngineError::invalid_input("sealing the data key failed"))?;
    let slot = Slot {
        id: id.clone(),
        created: chrono::Utc::now(),
        host: crate::lock::host_name(),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            params,
            salt: B64.encode(&salt),
        },
        nonce: B64.encode(nonce),
        wrapped: B64.encode(wrapped),
    };
    let json = serde_json::to_vec_pretty(&slot).expect("a slot serializes");
    // The id is random: a plain put cannot replace another slot.
    target
        .put(&slot_key(&id), crate::Upload::bytes(Bytes::from(json)))
        .await
        .map_err(|e| EngineError::storage(slot_key(&id), e))?;
    Ok(id)
}

/// Every slot of the location, each parsed and checked (a slot that does not parse is named).
async fn slots(target: &dyn Target) -> Result<Vec<Slot>> {
    let listed = target
        .list(KEYS_DIR)
        .await
        .map_err(|e| EngineError::storage(KEYS_DIR, e))?;
    let mut out = Vec::new();
    for o in listed.iter().filter(|o| o.key.ends_with(".json")) {
        if o.size > 64 * 1024 {
            return Err(EngineError::damaged(format!(
                "key slot {} is {} bytes: not a key slot",
                o.key, o.size
            )));
        }
        let raw = get_bytes(target, &o.key)
            .await
            .map_err(|e| EngineError::storage(&o.key, e))?;
        let slot: Slot = serde_json::from_slice(&raw)
            .map_err(|e| EngineError::damaged(format!("key slot {} does not parse: {e}", o.key)))?;
        if slot_key(&slot.id) != o.key || slot.kdf.algorithm != "argon2id" {
            return Err(EngineError::damaged(format!(
                "key slot {} names another id or KDF",
                o.key
            )));
        }
        slot.kdf
            .params
            .check()
            .map_err(|e| EngineError::damaged(format!("key slot {}: {e}", o.key)))?;
        out.push(slot);
    }
    Ok(out)
}

/// Opens the data key with `password`: the key and the id of the slot that opened it.
pub async fn unlock(target: &dyn Target, password: &Password) -> Result<(DataKey, String)> {
    let slots = slots(target).await?;
    if slots.is_empty() {
        return Err(EngineError::damaged(format!(
            "{} is encrypted but holds no key slot under {KEYS_DIR}: nobody can open it",
            target.describe()
        )));
    }
    for slot in &slots {
        if let Some(key) = open_slot(slot, password).await? {
            return Ok((key, slot.id.clone()));
        }
    }
    Err(EngineError::invalid_input(format!(
        "the password from {} opens none of the {} key slot(s) of {}: give the right one",
        password.from,
        slots.len(),
        target.describe()
    )))
}

async fn open_slot(slot: &Slot, password: &Password) -> Result<Option<DataKey>> {
    let bad = |what: &str| EngineError::damaged(format!("key slot {}: {what}", slot.id));
    let salt = B64.decode(&slot.kdf.salt).map_err(|_| bad("salt"))?;
    let nonce: [u8; 24] = B64
        .decode(&slot.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| bad("nonce"))?;
    let wrapped = B64.decode(&slot.wrapped).map_err(|_| bad("wrapped key"))?;
    if !(8..=64).contains(&salt.len()) || wrapped.len() != 48 {
        return Err(bad("salt or wrapped key of a wrong length"));
    }
    let kek = derive(&password.secret, salt, slot.kdf.params).await?;
    let opened = XChaCha20Poly1305::new(kek.as_ref().into()).decrypt(
        &XNonce::from(nonce),
        Payload {
            msg: &wrapped,
            aad: slot.id.as_bytes(),
        },
    );
    Ok(opened.ok().map(|mut plain| {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        plain.zeroize();
        DataKey(key)
    }))
}

/// The location's slots, for `key list`.
pub async fn list_slots(target: &dyn Target) -> Result<Vec<SlotInfo>> {
    let mut slots: Vec<SlotInfo> = slots(target)
        .await?
        .into_iter()
        .map(|s| SlotInfo {
            id: s.id,
            created: s.created,
            host: s.host,
        })
        .collect();
    slots.sort_by_key(|s| s.created);
    Ok(slots)
}

/// Removes slot `id`, never the last one (the caller proves access by unlocking first).
pub async fn remove_slot(target: &dyn Target, id: &str) -> Result<()> {
    let slots = slots(target).await?;
    if !slots.iter().any(|s| s.id == id) {
        return Err(EngineError::invalid_input(format!(
            "no key slot {id} in {}: `esbackup key list` names them",
            target.describe()
        )));
    }
    if slots.len() == 1 {
        return Err(EngineError::invalid_input(format!(
            "key slot {id} is the last one of {}: add another first (`esbackup key add`), or nobody could open it",
            target.describe()
        )));
    }
    target
        .delete(&slot_key(id))
        .await
        .map_err(|e| EngineError::storage(slot_key(id), e))
}
