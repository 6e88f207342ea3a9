//! One login's check and decision in fleet mode (`store = "redis"`): the shared record
//! decides, the host's own file state is the floor. Redis unreachable, slow or odd at any
//! step: refused.

use ::pam::constants::PamResultCode;

use crate::conversation::Conversation;
use crate::login::{report_locked, unavailable, unreachable_host, Context, Host};
use pam_otp_core::decision::{Method, Replay, Verdict};
use pam_otp_core::fleet::SharedGuards;
use pam_otp_core::fleet::{floor_after, judge, merged_view, Call, Candidate, Judgement, Reply};
use pam_otp_sys::log::Logger;
use pam_otp_sys::redis_protocol::RedisStoreError;
use pam_otp_sys::store::Durability;

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

/// Before prompting: the floor must be writable, and the record must answer and not be
/// locked, so nobody types a code that cannot be checked. The enrollment's shared guards.
pub(super) fn check(
    context: &Context,
    host: &dyn Host,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Result<SharedGuards, PamResultCode> {
    if let Err(e) = host.peek_state(context.account) {
        return Err(unavailable(log, &e));
    }
    let check = Call::Check {
        fingerprint: &context.enrolled.fingerprint,
        source: context.source,
        custody: context.enrolled.custody,
    };
    match host.shared_record(context.account.uid, &check) {
        Ok(Reply::Open { guards, .. }) => Ok(guards),
        Ok(Reply::Locked { now, lock }) => Err(report_locked(lock, now, conversation, log)),
        Ok(other) => Err(unexpected(log, &other)),
        Err(e) => Err(refused(log, &e)),
    }
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

fn replay_of(candidate: Candidate) -> Replay {
    match candidate {
        Candidate::Recovery { .. } => Replay::RecoveryCode,
        _ => Replay::Code,
    }
}

/// What the host decided before or without the record, or the record's reply.
enum Outcome {
    /// Decided here, the record not asked (a replay of what the view holds, or no room
    /// on the floor for a right code).
    Local(Verdict, u64),
    /// The record's reply to the candidate.
    Shared(Candidate, Result<Reply, RedisStoreError>),
}

/// Decides `answer` in fleet mode: under the host's lock, so this host's logins of the
/// person pass one at a time and the floor is written before the next one reads it. The
/// verdict and the time it was decided at (the server's for the record's verdicts, so
/// lockouts are told in its clock), or the return code if nothing could be decided.
pub(super) fn settle(
    context: &Context,
    guards: &SharedGuards,
    host: &dyn Host,
    answer: &str,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Result<(Verdict, u64), PamResultCode> {
    let limits = &context.policy.limits;
    let enrolled = &context.enrolled;
    let mut decided = None;
    let saved = host.update_state(context.account, &mut |stored| {
        let floor = stored.unwrap_or_default();
        let record = floor.record(enrolled);
        let time = now();
        let view = merged_view(&record, guards);
        let found = match judge(enrolled, context.source, &view, limits, answer, time) {
            Judgement::Replayed(replay) => {
                decided = Some(Outcome::Local(Verdict::Replayed(replay), time));
                return (floor, Durability::Buffered);
            }
            Judgement::Candidate(found) => found,
        };
        let Some(next) = floor_after(&floor, enrolled, found, time) else {
            decided = Some(Outcome::Local(Verdict::NoRoom, time));
            return (floor, Durability::Buffered);
        };
        let decide = Call::Decide {
            fingerprint: &enrolled.fingerprint,
            source: context.source,
            custody: enrolled.custody,
            candidate: found,
            floor: &record,
            limits,
        };
        let reply = host.shared_record(context.account.uid, &decide);
        let accepted = matches!(reply, Ok(Reply::Accepted { .. }));
        decided = Some(Outcome::Shared(found, reply));
        // The floor: on stable storage before the host says yes, so that this host never
        // accepts the code again, whatever Redis loses.
        if accepted {
            (next, Durability::Synced)
        } else {
            (floor, Durability::Buffered)
        }
    });
    let (found, reply) = match (saved, decided) {
        (Err(e), _) => return Err(unavailable(log, &e)),
        (Ok(()), None) => return Err(unreachable_host(log)),
        (Ok(()), Some(Outcome::Local(verdict, time))) => return Ok((verdict, time)),
        (Ok(()), Some(Outcome::Shared(_, Err(e)))) => return Err(refused(log, &e)),
        (Ok(()), Some(Outcome::Shared(found, Ok(reply)))) => (found, reply),
    };
    match (reply, method(found)) {
        (Reply::Accepted { now }, Some(method)) => match host.shared_replicated() {
            Ok(()) => Ok((Verdict::Accepted(method), now)),
            Err(e) => Err(refused(log, &e)),
        },
        (Reply::Replayed { now }, _) => Ok((Verdict::Replayed(replay_of(found)), now)),
        (
            Reply::Rejected {
                now,
                source_failures,
                user_failures,
                locked,
            },
            _,
        ) => Ok((
            Verdict::Rejected {
                failures: source_failures,
                user_failures,
                locked,
            },
            now,
        )),
        (Reply::Locked { now, lock }, _) => Ok((Verdict::Locked(lock), now)),
        (other, _) => Err(unexpected(log, &other)),
    }
}
