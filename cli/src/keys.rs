//! `init` (a compressed and/or encrypted location) and `key list|add|remove` (its key slots).

use esbackup_backends::open_target;
use esbackup_engine::codec::{self, InitOptions, KdfParams, Password};
use serde::Serialize;

use crate::args::{InitArgs, KeyAction, KeyArgs, Output, TargetArg};
use crate::config::FileConfig;
use crate::exit::Failure;
use crate::output;
use crate::password::given_or_typed;

impl KeyArgs {
    pub fn output(&self) -> &Output {
        match &self.action {
            KeyAction::List { output, .. }
            | KeyAction::Add { output, .. }
            | KeyAction::Remove { output, .. } => output,
        }
    }
}

/// `--compression`: `none`, `zstd` (level 3) or `zstd:LEVEL`.
fn compression(value: &str) -> Result<Option<i32>, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--compression {value:?}: give none, zstd or zstd:LEVEL (1-22)"
        ))
    };
    match value.split_once(':') {
        None if value == "none" => Ok(None),
        None if value == "zstd" => Ok(Some(codec::config::DEFAULT_LEVEL)),
        Some(("zstd", level)) => match level.parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => Ok(Some(l)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[derive(Serialize)]
struct Initialised {
    target: String,
    compression: Option<i32>,
    encrypted: bool,
    key_slots: usize,
}

pub async fn init(a: &InitArgs, file: &FileConfig) -> Result<i32, Failure> {
    let level = compression(&a.compression)?;
    let store = open_target(a.target.url()?, &file.storage)?;
    let password = match a.encrypt {
        true => {
            let prompt = format!("new password for {}: ", store.describe());
            given_or_typed(a.target.password.password()?, &prompt, true)?
        }
        false => a.target.password.password()?,
    };
    let opts = InitOptions {
        compression: level,
        encrypt: a.encrypt,
        kdf: KdfParams::default(),
        lock: Default::default(),
    };
    codec::init(store.clone(), &opts, password.as_ref()).await?;
    let opened = codec::open(store.clone(), password.as_ref()).await?;
    let report = Initialised {
        target: opened.describe(),
        compression: level,
        encrypted: a.encrypt,
        key_slots: usize::from(a.encrypt),
    };
    match a.output.json {
        true => output::json(&report),
        false => {
            println!("initialised {}", report.target);
            if a.encrypt {
                println!("keep the password safe: without it nobody can restore this location (`esbackup key add` adds another)");
            }
        }
    }
    Ok(0)
}

/// The password that proves access (asked at a terminal when none is given), or a usage
/// error naming how to give it.
fn current(target: &TargetArg, store: &dyn esbackup_engine::Target) -> Result<Password, Failure> {
    let prompt = format!("password for {}: ", store.describe());
    given_or_typed(target.password.password()?, &prompt, false)?.ok_or_else(|| {
        Failure::usage(
            "give the location's current password with ESBACKUP_PASSWORD, --password-file FILE or --password-command CMD",
        )
    })
}

/// Fails unless the location is encrypted (only those have keys).
async fn encrypted(store: &dyn esbackup_engine::Target) -> Result<(), Failure> {
    match codec::config::read(store).await? {
        Some(c) if c.encryption.is_some() => Ok(()),
        _ => Err(Failure::usage(format!(
            "{} is not encrypted: it has no keys (`esbackup init --encrypt` makes an encrypted location)",
            store.describe()
        ))),
    }
}

pub async fn key(a: &KeyArgs, file: &FileConfig) -> Result<i32, Failure> {
    let target = match &a.action {
        KeyAction::List { target, .. }
        | KeyAction::Add { target, .. }
        | KeyAction::Remove { target, .. } => target,
    };
    let store = open_target(target.url()?, &file.storage)?;
    encrypted(store.as_ref()).await?;
    match &a.action {
        KeyAction::List { target, output } => {
            // Opening proves the password (and says when the location is not encrypted).
            codec::keys::unlock(store.as_ref(), &current(target, store.as_ref())?).await?;
            let slots = codec::keys::list_slots(store.as_ref()).await?;
            match output.json {
                true => output::json(&serde_json::json!({ "key_slots": slots })),
                false => {
                    for s in &slots {
                        println!("{}  added {} on {}", s.id, s.created.to_rfc3339(), s.host);
                    }
                }
            }
        }
        KeyAction::Add {
            target,
            new_password_file,
            new_password_command,
            output,
        } => {
            let current = current(target, store.as_ref())?;
            let new = crate::password::resolve(
                new_password_command.as_deref(),
                new_password_file.as_deref(),
                "ESBACKUP_NEW_PASSWORD",
            )?;
            let new = given_or_typed(new, "the new password: ", true)?
            .ok_or_else(|| Failure::usage("give the new password with ESBACKUP_NEW_PASSWORD, --new-password-file FILE or --new-password-command CMD"))?;
            let kdf = KdfParams::default();
            let id = codec::add_key(store.as_ref(), &current, &new, kdf).await?;
            match output.json {
                true => output::json(&serde_json::json!({ "added": id })),
                false => println!("added key slot {id}"),
            }
        }
        KeyAction::Remove { target, id, output } => {
            codec::remove_key(store.as_ref(), &current(target, store.as_ref())?, id).await?;
            match output.json {
                true => output::json(&serde_json::json!({ "removed": id })),
                false => println!("removed key slot {id}"),
            }
        }
    }
    Ok(0)
}
