//! `otp-admin` on the fleet's shared record (`store = "redis"`): status, unlock (of the
//! user or one source) and reset, through the same atomic script the module runs.

use std::fmt::Write as _;

use serde_json::json;

use super::{audit, locked_state, utc, AdminError, Target};
use pam_otp_core::fleet::{Call, RecordKeys, Reply, SharedRecord};
use pam_otp_core::source::Source;
use pam_otp_core::state::{Tallies, Tally};
use pam_otp_redis::store::RedisStore;
use pam_otp_sys::policy::RedisSettings;

fn run(target: &Target, settings: &RedisSettings, call: &Call) -> Result<Reply, AdminError> {
    let keys = RecordKeys::new(&settings.prefix, target.account.uid);
    let mut redis = RedisStore::connect(settings).map_err(AdminError::Fleet)?;
    redis.run(&keys, call).map_err(AdminError::Fleet)
}

fn unexpected(reply: Reply) -> AdminError {
    AdminError::Fleet(pam_otp_sys::redis_protocol::RedisStoreError::Reply(
        pam_otp_core::fleet::FleetError::Reply(format!("{reply:?}")),
    ))
}

fn until(locked_until: u64, now: u64) -> Option<String> {
    (locked_until > now).then(|| utc(locked_until))
}

/// `status USER` on the shared record, as text or one JSON object.
pub(super) fn status(
    target: &Target,
    settings: &RedisSettings,
    json: bool,
) -> Result<String, AdminError> {
    let (now, record): (u64, SharedRecord) = match run(target, settings, &Call::Status)? {
        Reply::Status { now, record } => (now, record),
        other => return Err(unexpected(other)),
    };
    let user = &target.account.name;
    let tally_json = |t: &Tally| {
        json!({
            "failures": t.failures,
            "lockouts": t.lockouts,
            "locked": t.locked_until > now,
            "locked_until": (t.locked_until > now).then_some(t.locked_until),
            "last_failure": (t.last_failure > 0).then_some(t.last_failure),
        })
    };
    let sources_json = |tallies: &Tallies| -> serde_json::Map<_, _> {
        tallies
            .sources
            .iter()
            .map(|(source, t)| (source.clone(), tally_json(t)))
            .collect()
    };
    if json {
        let guards: serde_json::Map<_, _> = record
            .enrollments
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let value = json!({
            "user": user,
            "uid": target.account.uid,
            "store": "redis",
            "redis_url": settings.location(),
            "max_failures": target.policy.limits.max_failures,
            "max_failures_user": target.policy.limits.max_failures_user,
            "user_wide": tally_json(&record.all.user),
            "other_sources": tally_json(&record.all.overflow),
            "sources": sources_json(&record.all),
            "store_enrollments": {
                "user_wide": tally_json(&record.protected.user),
                "other_sources": tally_json(&record.protected.overflow),
                "sources": sources_json(&record.protected),
            },
            "guards": guards,
        });
        let mut text =
            serde_json::to_string_pretty(&value).map_err(|e| AdminError::Output(e.into()))?;
        text.push('\n');
        return Ok(text);
    }
    let describe = |t: &Tally| {
        format!(
            "{} failure(s), {} lockout(s){}",
            t.failures,
            t.lockouts,
            until(t.locked_until, now)
                .map(|t| format!(", LOCKED until {t}"))
                .unwrap_or_default()
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "user:       {user} (uid {}; shared record in {})",
        target.account.uid,
        settings.location()
    );
    let _ = writeln!(
        out,
        "user-wide:  {} (ceiling {})",
        describe(&record.all.user),
        target.policy.limits.max_failures_user
    );
    if record.all.overflow != Tally::default() {
        let _ = writeln!(out, "others:     {}", describe(&record.all.overflow));
    }
    for (source, t) in &record.all.sources {
        let _ = writeln!(out, "source:     {source}: {}", describe(t));
    }
    // Cleared only by a success with the store's enrollment or by unlock.
    if record.protected != Tallies::default() {
        let _ = writeln!(
            out,
            "store:      user-wide {} (only a code from the store's enrollment, or unlock, clears these)",
            describe(&record.protected.user)
        );
        if record.protected.overflow != Tally::default() {
            let _ = writeln!(
                out,
                "store:      others: {}",
                describe(&record.protected.overflow)
            );
        }
        for (source, t) in &record.protected.sources {
            let _ = writeln!(out, "store:      source {source}: {}", describe(t));
        }
    }
    for (field, value) in &record.enrollments {
        let _ = writeln!(out, "guard:      {field} = {value}");
    }
    if record.enrollments.is_empty() {
        let _ = writeln!(
            out,
            "guard:      none (no code accepted through the fleet yet)"
        );
    }
    Ok(out)
}

/// `unlock USER [--source ADDR]`: lifts the user-wide lock and every source's, or one source's.
pub(super) fn unlock(
    target: &Target,
    settings: &RedisSettings,
    source: Option<&Source>,
) -> Result<String, AdminError> {
    let call = Call::Unlock { source };
    let removed = match run(target, settings, &call)? {
        Reply::Changed { removed } => removed,
        other => return Err(unexpected(other)),
    };
    let user = &target.account.name;
    let what = match source {
        Some(s) => format!("source {s}"),
        None => "all sources and the user-wide lock".into(),
    };
    if removed == 0 {
        return Ok(format!(
            "{user}: {what}: not locked and no failures; nothing changed\n"
        ));
    }
    audit(
        target,
        &format!("unlocked by otp-admin in the fleet record ({what})"),
    );
    Ok(format!("{user}: unlocked ({what}) in the fleet record\n"))
}

/// `reset USER`: drops the shared record and this host's floor. Other hosts keep theirs,
/// so a code one of them accepted stays refused there.
pub(super) fn reset(target: &Target, settings: &RedisSettings) -> Result<String, AdminError> {
    let removed = match run(target, settings, &Call::Reset)? {
        Reply::Changed { removed } => removed,
        other => return Err(unexpected(other)),
    };
    let floor_removed = match locked_state(target) {
        Ok(Some((locked, _))) => locked.remove()?,
        Ok(None) => false,
        Err(e) => return Err(e),
    };
    let user = &target.account.name;
    audit(target, "fleet record reset by otp-admin");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{user}: fleet record {} ({} key(s)); this host's floor {}",
        if removed > 0 { "removed" } else { "was empty" },
        removed,
        if floor_removed {
            "removed"
        } else {
            "was empty"
        }
    );
    let _ = writeln!(
        out,
        "WARNING: {user}'s shared state starts over: failures and lockouts are forgotten, and \
         codes accepted through the fleet may work once more on hosts that did not accept \
         them. Every other host keeps its floor (run otp-admin reset there too, or have {user} \
         enroll again with otp-setup --force)."
    );
    Ok(out)
}
