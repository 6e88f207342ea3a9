//! `otp-admin` on the fleet's shared record (`store = "redis"`): status, unlock and reset
//! read the record the module reads (the core state, judged at the server's clock) and
//! change it as the module does (compare-and-set), and say what they say for the file store.

use std::fmt::Write as _;

use super::{
    audit, locked_state, reset_warning, state_path, status_of, unlock_state, AdminError, Status,
    Target,
};
use pam_otp_core::fleet::{decode, RecordKeys};
use pam_otp_core::source::Source;
use pam_otp_core::state::State;
use pam_otp_redis::store::RedisStore;
use pam_otp_sys::policy::RedisSettings;
use pam_otp_sys::redis_protocol::RedisStoreError;

fn connect(settings: &RedisSettings) -> Result<RedisStore, AdminError> {
    RedisStore::connect(settings).map_err(AdminError::Fleet)
}

/// The stored bytes as a state (none for no record, or a record reset to nothing).
fn state_of(keys: &RecordKeys, bytes: &[u8]) -> Result<Option<State>, RedisStoreError> {
    let state =
        decode(bytes).map_err(|e| RedisStoreError::Reply(format!("{}: {e}", keys.record)))?;
    Ok(state.filter(|state| *state != State::default()))
}

/// Where the record is, as `status` names it.
fn location(target: &Target, settings: &RedisSettings, keys: &RecordKeys) -> String {
    format!(
        "{} in {} (shared by the fleet; this host's floor: {})",
        keys.record,
        settings.location(),
        state_path(target).display()
    )
}

/// `status USER` of the shared record: the fields and words of the file store's.
pub(super) fn status(target: &Target, settings: &RedisSettings) -> Result<Status, AdminError> {
    let keys = RecordKeys::new(&settings.prefix, target.account.uid);
    let read = connect(settings)?
        .read(&keys.all())
        .map_err(AdminError::Fleet)?;
    read.refuse_old_format(&keys).map_err(AdminError::Fleet)?;
    let stored = state_of(&keys, &read.state).map_err(AdminError::Fleet)?;
    status_of(
        target,
        "redis",
        &location(target, settings, &keys),
        stored,
        read.time,
    )
}

/// `unlock USER [--source ADDR]` in the shared record, by the rule a success uses.
pub(super) fn unlock(
    target: &Target,
    settings: &RedisSettings,
    source: Option<&Source>,
) -> Result<String, AdminError> {
    let keys = RecordKeys::new(&settings.prefix, target.account.uid);
    let mut redis = connect(settings)?;
    // Locks kept in the older format are not this format's to clear: name it, as status does.
    redis
        .read(&keys.all())
        .and_then(|read| read.refuse_old_format(&keys))
        .map_err(AdminError::Fleet)?;
    let mut message = None;
    let mut logged = String::new();
    let written = redis
        .update(&keys, &mut |now, bytes| {
            let Some(mut state) = state_of(&keys, bytes)? else {
                return Ok(None);
            };
            let unlocked = unlock_state(target, &mut state, source, now);
            message = Some(unlocked.message);
            logged = unlocked.audit;
            if !unlocked.changed {
                return Ok(None);
            }
            state
                .to_bytes()
                .map(Some)
                .map_err(|e| RedisStoreError::Reply(e.to_string()))
        })
        .map_err(AdminError::Fleet)?;
    if written.is_some() {
        audit(
            target,
            &format!("{logged} in the fleet record {}", keys.record),
        );
    }
    Ok(message.unwrap_or_else(|| {
        format!(
            "{}: no state in {} (no login recorded yet); nothing changed\n",
            target.account.name, keys.record
        )
    }))
}

/// `reset USER`: the shared record starts afresh (at a newer version, so a login that read
/// it before cannot write back over the reset), the older format's keys go, and so does
/// this host's floor. Other hosts keep theirs: a code one of them accepted stays refused
/// there.
pub(super) fn reset(target: &Target, settings: &RedisSettings) -> Result<String, AdminError> {
    let keys = RecordKeys::new(&settings.prefix, target.account.uid);
    let mut redis = connect(settings)?;
    let fresh = State::default()
        .to_bytes()
        .map_err(|e| AdminError::Fleet(RedisStoreError::Reply(e.to_string())))?;
    let written = redis
        .update(&keys, &mut |_, bytes| {
            Ok(state_of(&keys, bytes)?.map(|_| fresh.clone()))
        })
        .map_err(AdminError::Fleet)?;
    let old = redis.forget_old(&keys.all()).map_err(AdminError::Fleet)?;
    let floor_removed = match locked_state(target)? {
        Some((locked, _)) => locked.remove()?,
        None => false,
    };
    let user = &target.account.name;
    if written.is_none() && old == 0 && !floor_removed {
        return Ok(format!(
            "{user}: no state in {} or {} (no login recorded yet); nothing changed\n",
            keys.record,
            state_path(target).display()
        ));
    }
    audit(
        target,
        &format!("fleet record {} reset by otp-admin", keys.record),
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{user}: state removed ({} in {}{}; this host's floor {} {})",
        keys.record,
        settings.location(),
        if old > 0 {
            ", and the keys of the older record format"
        } else {
            ""
        },
        state_path(target).display(),
        if floor_removed {
            "removed"
        } else {
            "was empty"
        }
    );
    out.push_str(&reset_warning(user));
    let _ = writeln!(
        out,
        "Every other host keeps its own floor (its state file): run otp-admin reset {user} \
         there too for a fresh start everywhere."
    );
    Ok(out)
}
