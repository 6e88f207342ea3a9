//! One login in fleet mode (`store = "redis"`): the shared record decides, the host's own
//! file state is the floor. Redis unreachable, slow or odd at any step: refused.

use ::pam::constants::PamResultCode;

use crate::core::decision::{Method, Verdict};
use crate::core::enrollment::Enrollment;
use crate::core::fleet::{
    candidate, floor_after, merged_view, source_of, Call, Candidate, LockScope, Reply,
};
use crate::core::state::State;
use crate::pam::conversation::Conversation;
use crate::pam::login::{
    obtain_answer, report, report_locked, unavailable, unreachable_host, Ending, Host, Request,
};
use crate::sys::log::Logger;
use crate::sys::redis_store::RedisStoreError;
use crate::sys::user_file::Account;

fn refused(log: &Logger, error: &RedisStoreError) -> PamResultCode {
    log.error(&error.to_string());
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

fn unexpected(log: &Logger, reply: &Reply) -> PamResultCode {
    log.error(&format!(
        "redis: the fleet script answered {reply:?}; refused"
    ));
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

fn locked(
    until: u64,
    now: u64,
    scope: LockScope,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    match scope {
        LockScope::User => log.debug("the user-wide lockout (max_failures_user) is in force"),
        LockScope::OtherSources => {
            log.debug("every remembered source is locked; new sources share one lockout")
        }
        LockScope::Source => {}
    }
    report_locked(until, now, conversation, log)
}

fn method(candidate: Candidate) -> Option<Method> {
    match candidate {
        Candidate::Nothing => None,
        Candidate::Totp(step) => Some(Method::Totp { step }),
        Candidate::Hotp(counter) => Some(Method::Hotp { counter }),
        Candidate::Recovery { index, unspent } => Some(Method::Recovery {
            index,
            remaining: unspent.saturating_sub(1),
        }),
    }
}

/// The rest of a login once the account and its enrollment are known.
pub(crate) fn fleet_login(
    request: &Request,
    account: &Account,
    enrollment: &Enrollment,
    host: &dyn Host,
    conversation: &mut dyn Conversation,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Ending {
    let policy = request.policy;
    let user = account.name.as_str();
    let fingerprint = enrollment.fingerprint();
    let source = source_of(request.rhost.as_deref());

    // Before prompting: the floor must be writable, and the record must answer and not be
    // locked, so nobody types a code that cannot be checked.
    if let Err(e) = host.peek_state(user) {
        return unavailable(log, &e).into();
    }
    let check = Call::Check {
        fingerprint: &fingerprint,
        source: &source,
    };
    let guards = match host.shared_record(account.uid, &check) {
        Ok(Reply::Open { guards, .. }) => guards,
        Ok(Reply::Locked { now, until, scope }) => {
            return locked(until, now, scope, conversation, log).into()
        }
        Ok(other) => return unexpected(log, &other).into(),
        Err(e) => return refused(log, &e).into(),
    };

    let (answer, forward_password) = match obtain_answer(request, enrollment, conversation, log) {
        Ok(answered) => answered,
        Err(code) => return code.into(),
    };

    // Under the host's lock, so this host's logins of the user pass one at a time and the
    // floor is written before the next one reads it.
    let mut decided = None;
    let saved = host.update_state(user, &mut |stored| {
        let floor = State::for_enrollment(stored, enrollment);
        let time = now();
        let view = merged_view(&floor, &guards);
        let found = candidate(enrollment, &view, &policy.limits, &answer, time);
        let decide = Call::Decide {
            fingerprint: &fingerprint,
            source: &source,
            candidate: found,
            floor: &floor,
            limits: &policy.limits,
        };
        let reply = host.shared_record(account.uid, &decide);
        let next = match reply {
            Ok(Reply::Accepted { .. }) => floor_after(&floor, found, time),
            _ => floor,
        };
        decided = Some((found, reply));
        next
    });
    let code = match (saved, decided) {
        (Err(e), _) => unavailable(log, &e),
        (Ok(()), None) => unreachable_host(log),
        (Ok(()), Some((_, Err(e)))) => refused(log, &e),
        (Ok(()), Some((found, Ok(reply)))) => match (reply, method(found)) {
            (Reply::Accepted { now }, Some(method)) => match host.shared_replicated() {
                Ok(()) => report(Verdict::Accepted(method), 0, now, policy, conversation, log),
                Err(e) => refused(log, &e),
            },
            (Reply::Replayed { .. }, _) => {
                log.warning("code already used (a replay); refused, not counted as a failure");
                PamResultCode::PAM_AUTH_ERR
            }
            (
                Reply::Rejected {
                    now,
                    source_failures,
                    user_failures,
                    locked,
                    lockouts,
                },
                _,
            ) => {
                log.debug(&format!(
                    "{user_failures} failures for the user across the fleet (lockout after {})",
                    policy.limits.max_failures_user
                ));
                let verdict = Verdict::Rejected {
                    failures: source_failures,
                    locked_until: locked.map(|(until, _)| until),
                };
                report(verdict, lockouts, now, policy, conversation, log)
            }
            (Reply::Locked { now, until, scope }, _) => {
                locked(until, now, scope, conversation, log)
            }
            (other, _) => unexpected(log, &other),
        },
    };
    Ending {
        code,
        forward_password,
    }
}
