//! The pure decision of one login: given enrollment, source, state, limits, answer and
//! time, what happens and what the new state is. No I/O, no clock: everything is passed in.

use crate::answer::as_code;
use crate::enrollment::Kind;
use crate::otp::totp_step;
use crate::source::Source;
use crate::state::{EnrollmentRecord, EnrollmentRef, Lock, State, Unlock};
use crate::window::{matching_counter, Prefer};

/// The largest TOTP window a policy may set, in steps either side of the current one.
pub const MAX_WINDOW: u64 = 100;

/// The administrator's verification and lockout policy (module arguments, policy file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TOTP: steps accepted either side of the current one.
    pub window: u64,
    /// HOTP: counter values accepted beyond the next expected one.
    pub hotp_lookahead: u64,
    /// Consecutive failures from one source that lock it; 0 turns every lockout off.
    pub max_failures: u32,
    /// Failures from all sources together that lock the person everywhere; 0: no ceiling.
    pub max_failures_user: u32,
    /// Seconds of the first lockout; each further one doubles.
    pub lockout: u64,
    /// Upper bound of a lockout, in seconds.
    pub max_lockout: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            window: 1,
            hotp_lookahead: 10,
            max_failures: 5,
            max_failures_user: 20,
            lockout: 60,
            max_lockout: 86400,
        }
    }
}

/// How an accepted answer was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A TOTP code of this time step.
    Totp {
        /// The accepted step.
        step: u64,
    },
    /// An HOTP code of this counter.
    Hotp {
        /// The accepted counter.
        counter: u64,
    },
    /// A recovery code, now spent.
    Recovery {
        /// Its index in the enrollment's list.
        index: u32,
        /// Unspent recovery codes left.
        remaining: usize,
    },
}

/// What an answer used before matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// A TOTP step or HOTP counter already used (or skipped by a newer one).
    Code,
    /// A TOTP step at or before one accepted when this host's clock read later than it
    /// does now: the clock went back (or was ahead then). Every current code is refused
    /// until the clock passes that step again.
    ClockWentBack {
        /// How far the last accepted step is ahead of the clock, in seconds.
        seconds: u64,
    },
    /// A recovery code already spent.
    RecoveryCode,
}

/// The outcome of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The answer was right; the state retires it.
    Accepted(Method),
    /// A wrong answer, counted.
    Rejected {
        /// Failures of the answer's source since its last success or lockout.
        failures: u32,
        /// Failures of the person from all sources.
        user_failures: u32,
        /// Set when this failure started a lockout.
        locked: Option<Lock>,
    },
    /// The answer is a code that was valid once and is used up. Refused, not counted:
    /// it tests no unknown code (see SECURITY.md).
    Replayed(Replay),
    /// Locked out: the answer was not looked at.
    Locked(Lock),
    /// Right, but the state has no room to remember it (see `State::accept`); refused.
    NoRoom,
}

/// The verdict and the state to save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What happened.
    pub verdict: Verdict,
    /// The state after it.
    pub state: State,
}

/// Decides one answer from `source` for `enrolled`.
pub fn decide(
    enrolled: &EnrollmentRef,
    source: &Source,
    state: &State,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Decision {
    if let Some(lock) = state.lock_for(source, enrolled.custody, now) {
        return Decision {
            verdict: Verdict::Locked(lock),
            state: state.clone(),
        };
    }
    let record = state.record(enrolled);
    let mut next = state.clone();
    let method = match_code(enrolled, &record, limits, answer, now)
        .or_else(|| match_recovery_code(enrolled, &record, answer));
    let verdict = match method {
        Some(method) => {
            let mut retired = record;
            match method {
                Method::Totp { step } => retired.last_totp_step = Some(step),
                Method::Hotp { counter } => {
                    retired.next_hotp_counter = Some(counter.saturating_add(1))
                }
                Method::Recovery { index, .. } => retired.spent_recovery_codes.push(index),
            }
            if next.accept(enrolled, retired, now) {
                next.unlock(Unlock::Success(source, enrolled.custody));
                Verdict::Accepted(method)
            } else {
                next = state.clone();
                Verdict::NoRoom
            }
        }
        None => match replayed(enrolled, &record, limits, answer, now) {
            Some(replay) => Verdict::Replayed(replay),
            None => {
                let (failures, user_failures, locked) =
                    next.record_failure(source, enrolled.custody, limits, now);
                Verdict::Rejected {
                    failures,
                    user_failures,
                    locked,
                }
            }
        },
    };
    Decision {
        verdict,
        state: next,
    }
}

/// The length of the `nth` lockout (1-based): `lockout * 2^(nth-1)`, at most `max_lockout`.
pub fn lockout_length(limits: &Limits, nth: u32) -> u64 {
    let doublings = nth.saturating_sub(1).min(63);
    limits
        .lockout
        .saturating_mul(1u64 << doublings)
        .min(limits.max_lockout)
}

/// An inclusive range of TOTP steps or HOTP counters.
type Span = (u64, u64);

/// The TOTP steps or HOTP counters the answer may match now: `(still good, used up)`.
fn candidates(
    enrolled: &EnrollmentRef,
    record: &EnrollmentRecord,
    limits: &Limits,
    now: u64,
) -> (Option<Span>, Option<Span>) {
    match enrolled.enrollment.kind {
        Kind::Totp { period } => {
            let current = totp_step(now, period);
            let first = current.saturating_sub(limits.window);
            let last = current.saturating_add(limits.window);
            match record.last_totp_step {
                None => (Some((first, last)), None),
                Some(used) if used < first => (Some((first, last)), None),
                Some(used) if used >= last => (None, Some((first, last))),
                Some(used) => (Some((used + 1, last)), Some((first, used))),
            }
        }
        Kind::Hotp { counter } => {
            let next = record.next_hotp_counter.unwrap_or(counter);
            let good = (next, next.saturating_add(limits.hotp_lookahead));
            // The codes the app showed last: as many as one look-ahead reaches.
            let used = (next > counter).then(|| {
                let oldest = next
                    .saturating_sub(limits.hotp_lookahead.saturating_add(1))
                    .max(counter);
                (oldest, next - 1)
            });
            (Some(good), used)
        }
    }
}

fn prefer(enrolled: &EnrollmentRef) -> Prefer {
    match enrolled.enrollment.kind {
        Kind::Totp { .. } => Prefer::Newest,
        Kind::Hotp { .. } => Prefer::Oldest,
    }
}

/// Checks the answer against every acceptable step or counter (see `core::window`).
fn match_code(
    enrolled: &EnrollmentRef,
    record: &EnrollmentRecord,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Option<Method> {
    let enrollment = enrolled.enrollment;
    let given = as_code(answer, enrollment.digits)?;
    let (first, last) = candidates(enrolled, record, limits, now).0?;
    let counter = matching_counter(&enrolled.key, given, first..=last, prefer(enrolled))?;
    Some(match enrollment.kind {
        Kind::Totp { .. } => Method::Totp { step: counter },
        Kind::Hotp { .. } => Method::Hotp { counter },
    })
}

/// Whether a refused answer is a code or recovery code that was good once and is used up.
fn replayed(
    enrolled: &EnrollmentRef,
    record: &EnrollmentRecord,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Option<Replay> {
    let enrollment = enrolled.enrollment;
    if let Some(given) = as_code(answer, enrollment.digits) {
        let (first, last) = candidates(enrolled, record, limits, now).1?;
        matching_counter(&enrolled.key, given, first..=last, prefer(enrolled))?;
        return Some(clock_went_back(enrolled, record, limits, now).unwrap_or(Replay::Code));
    }
    let trimmed = answer.trim();
    (!trimmed.is_empty()
        && record
            .spent_recovery_codes
            .iter()
            .filter_map(|&i| enrollment.recovery_codes.get(i as usize))
            .any(|hash| hash.matches(trimmed)))
    .then_some(Replay::RecoveryCode)
}

/// A TOTP replay whose last accepted step lies beyond the whole window around `now`: no
/// clock that only moves forward accepts a step so far ahead, so this host's clock went
/// back since (or was ahead then).
fn clock_went_back(
    enrolled: &EnrollmentRef,
    record: &EnrollmentRecord,
    limits: &Limits,
    now: u64,
) -> Option<Replay> {
    let Kind::Totp { period } = enrolled.enrollment.kind else {
        return None;
    };
    let used = record.last_totp_step?;
    let current = totp_step(now, period);
    (used > current.saturating_add(limits.window)).then(|| Replay::ClockWentBack {
        seconds: used.saturating_mul(period).saturating_sub(now),
    })
}

fn match_recovery_code(
    enrolled: &EnrollmentRef,
    record: &EnrollmentRecord,
    answer: &str,
) -> Option<Method> {
    let codes = &enrolled.enrollment.recovery_codes;
    let trimmed = answer.trim();
    if trimmed.is_empty() {
        return None;
    }
    let spent = |i: usize| record.spent_recovery_codes.contains(&(i as u32));
    let index = (0..codes.len()).find(|&i| !spent(i) && codes[i].matches(trimmed))?;
    let unspent_before = (0..codes.len()).filter(|&i| !spent(i)).count();
    Some(Method::Recovery {
        index: index as u32,
        remaining: unspent_before - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Enrollment;
    use crate::otp::{format_code, Algorithm};
    use crate::recovery::RecoveryHash;
    use crate::state::{Custody, LockScope, Tallies, Tally};
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const NOW: u64 = 1_700_000_000;

    fn totp_enrollment() -> Enrollment {
        let mut e = Enrollment::parse(&format!("secret = \"{SECRET}\"")).unwrap();
        e.recovery_codes = vec![
            RecoveryHash::new("aaaa-bbbb", [1; 16]),
            RecoveryHash::new("cccc-dddd", [2; 16]),
        ];
        e
    }

    fn hotp_enrollment() -> Enrollment {
        Enrollment::parse(&format!("type = \"hotp\"\nsecret = \"{SECRET}\"")).unwrap()
    }

    /// The code for `counter`, made by `oathtool` (an independent implementation), never
    /// by this crate. TOTP with `--now @(counter * 30)` is HOTP at `counter` for every
    /// algorithm; each call fetches 2000 counters, cached.
    fn code_at(e: &Enrollment, counter: u64) -> String {
        type Key = (String, &'static str, u32, u64);
        static CODES: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
        let key_hex = data_encoding::HEXLOWER.encode(e.secret.as_bytes());
        let key = |c: u64| (key_hex.clone(), e.algorithm.name(), e.digits, c);
        let mut codes = CODES.get_or_init(Default::default).lock().unwrap();
        if let Some(code) = codes.get(&key(counter)) {
            return code.clone();
        }
        let first = counter.saturating_sub(100);
        let out = std::process::Command::new("oathtool")
            .arg(format!("--totp={}", e.algorithm.name().to_lowercase()))
            .args(["-s", "30", "-d", &e.digits.to_string(), "-w", "1999"])
            .arg(format!("--now=@{}", first * 30))
            .arg(&key_hex)
            .output()
            .expect("oathtool (Debian package oathtool) must be installed");
        assert!(out.status.success(), "oathtool: {out:?}");
        for (i, line) in String::from_utf8(out.stdout).unwrap().lines().enumerate() {
            codes.insert(key(first + i as u64), line.to_string());
        }
        codes[&key(counter)].clone()
    }

    fn totp_code(e: &Enrollment, time: u64) -> String {
        code_at(e, time / 30)
    }

    /// A code that is no acceptable counter near `around`.
    fn wrong_code(e: &Enrollment, around: u64) -> String {
        (0..1_000_000u32)
            .map(|n| format_code(n, e.digits))
            .find(|c| (around.saturating_sub(20)..around + 1020).all(|k| code_at(e, k) != *c))
            .unwrap()
    }

    const FILE: &str = "/home/tester/.otp.toml";

    /// `decide` for a login from no remote host ("local").
    fn dec(e: &Enrollment, state: &State, limits: &Limits, answer: &str, now: u64) -> Decision {
        decide_from(e, "", state, limits, answer, now)
    }

    fn decide_from(
        e: &Enrollment,
        rhost: &str,
        state: &State,
        limits: &Limits,
        answer: &str,
        now: u64,
    ) -> Decision {
        let enrolled = EnrollmentRef::new(e, FILE, Custody::User);
        decide(
            &enrolled,
            &Source::from_rhost(rhost),
            state,
            limits,
            answer,
            now,
        )
    }

    const STORE_FILE: &str = "/var/lib/pam-otp/secrets/tester.toml";

    /// `decide` for a local login with an enrollment from the administrator's store.
    fn store_dec(e: &Enrollment, state: &State, answer: &str, now: u64) -> Decision {
        let enrolled = EnrollmentRef::new(e, STORE_FILE, Custody::Administrator);
        let local = Source::from_rhost("");
        decide(&enrolled, &local, state, &Limits::default(), answer, now)
    }

    fn run(e: &Enrollment, state: &State, answer: &str, now: u64) -> Decision {
        dec(e, state, &Limits::default(), answer, now)
    }

    /// The enrollment record `state` holds for `e`.
    fn record(e: &Enrollment, state: &State) -> EnrollmentRecord {
        state.record(&EnrollmentRef::new(e, FILE, Custody::User))
    }

    #[test]
    fn totp_accepts_current_previous_and_next_step_only() {
        let e = totp_enrollment();
        let fresh = State::default();
        for offset in [-30i64, 0, 30] {
            let code = totp_code(&e, (NOW as i64 + offset) as u64);
            assert!(
                matches!(run(&e, &fresh, &code, NOW).verdict, Verdict::Accepted(_)),
                "{offset}"
            );
        }
        for offset in [-150i64, -60, 60] {
            let code = totp_code(&e, (NOW as i64 + offset) as u64);
            assert!(
                matches!(
                    run(&e, &fresh, &code, NOW).verdict,
                    Verdict::Rejected { .. }
                ),
                "{offset}"
            );
        }
    }

    #[test]
    fn a_totp_code_works_once_and_older_ones_die_with_it() {
        let e = totp_enrollment();
        let first = run(&e, &State::default(), &totp_code(&e, NOW), NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Totp { step: NOW / 30 })
        );
        // Used up: refused as a replay, and not counted as a guess.
        let again = run(&e, &first.state, &totp_code(&e, NOW), NOW);
        assert_eq!(again.verdict, Verdict::Replayed(Replay::Code));
        assert_eq!(again.state, first.state);
        let older = run(&e, &first.state, &totp_code(&e, NOW - 30), NOW);
        assert_eq!(older.verdict, Verdict::Replayed(Replay::Code));
        // Outside the window it is just a wrong code.
        let stale = run(&e, &first.state, &totp_code(&e, NOW - 90), NOW);
        assert!(matches!(
            stale.verdict,
            Verdict::Rejected { failures: 1, .. }
        ));
        let newer = run(&e, &first.state, &totp_code(&e, NOW + 30), NOW + 30);
        assert!(matches!(newer.verdict, Verdict::Accepted(_)));
    }

    #[test]
    fn the_same_secret_rewritten_with_new_recovery_codes_keeps_spent_codes_spent() {
        let e = totp_enrollment();
        let mut renewed = totp_enrollment();
        renewed.recovery_codes = vec![RecoveryHash::new("eeee-ffff", [3; 16])];
        assert_ne!(renewed.fingerprint(), e.fingerprint());
        // NOW is 20 s into its step: NOW + 5 is the same step.
        let first = run(&e, &State::default(), &totp_code(&e, NOW), NOW);
        assert!(matches!(first.verdict, Verdict::Accepted(_)));
        let again = run(&renewed, &first.state, &totp_code(&e, NOW), NOW + 5);
        assert_eq!(again.verdict, Verdict::Replayed(Replay::Code));
        assert_eq!(again.state, first.state);
        let next = run(&renewed, &first.state, &totp_code(&e, NOW + 30), NOW + 30);
        assert!(matches!(next.verdict, Verdict::Accepted(_)));
        assert_eq!(next.state.enrollments.len(), 1, "the old record was kept");

        // A code of the next step, accepted early (the phone's clock ahead), stays spent too.
        let ahead = run(&e, &State::default(), &totp_code(&e, NOW + 30), NOW);
        assert!(matches!(ahead.verdict, Verdict::Accepted(_)));
        let again = run(&renewed, &ahead.state, &totp_code(&e, NOW + 30), NOW + 5);
        assert_eq!(again.verdict, Verdict::Replayed(Replay::Code));
    }

    #[test]
    fn a_new_enrollment_with_another_period_in_the_same_file_is_not_locked_out() {
        let e = totp_enrollment();
        let first = run(&e, &State::default(), &totp_code(&e, NOW), NOW);
        assert!(matches!(first.verdict, Verdict::Accepted(_)));
        // The old guard (a 30 s step number) read as a 60 s step would lie decades ahead.
        let slower = Enrollment::parse(&format!("secret = \"{SECRET}\"\nperiod = 60")).unwrap();
        let later = NOW + 60;
        let code = code_at(&slower, later / 60);
        let d = run(&slower, &first.state, &code, later);
        assert_eq!(
            d.verdict,
            Verdict::Accepted(Method::Totp { step: later / 60 })
        );
    }

    #[test]
    fn window_zero_accepts_only_the_current_step() {
        let e = totp_enrollment();
        let limits = Limits {
            window: 0,
            ..Limits::default()
        };
        let fresh = State::default();
        assert!(matches!(
            dec(&e, &fresh, &limits, &totp_code(&e, NOW), NOW).verdict,
            Verdict::Accepted(_)
        ));
        assert!(matches!(
            dec(&e, &fresh, &limits, &totp_code(&e, NOW - 30), NOW).verdict,
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn hotp_accepts_within_lookahead_and_moves_the_counter() {
        let e = hotp_enrollment();
        let fresh = State::default();
        let first = run(&e, &fresh, &code_at(&e, 0), NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Hotp { counter: 0 })
        );
        assert_eq!(record(&e, &first.state).next_hotp_counter, Some(1));
        let ahead = run(&e, &first.state, &code_at(&e, 11), NOW);
        assert_eq!(
            ahead.verdict,
            Verdict::Accepted(Method::Hotp { counter: 11 })
        );
        assert_eq!(record(&e, &ahead.state).next_hotp_counter, Some(12));
        let old = run(&e, &ahead.state, &code_at(&e, 5), NOW);
        assert_eq!(old.verdict, Verdict::Replayed(Replay::Code));
        let too_far = run(&e, &ahead.state, &code_at(&e, 12 + 11), NOW);
        assert!(matches!(too_far.verdict, Verdict::Rejected { .. }));
    }

    #[test]
    fn recovery_codes_work_once_and_count_down() {
        let e = totp_enrollment();
        let first = run(&e, &State::default(), " CCCC-DDDD ", NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Recovery {
                index: 1,
                remaining: 1
            })
        );
        let again = run(&e, &first.state, "ccccdddd", NOW);
        assert_eq!(again.verdict, Verdict::Replayed(Replay::RecoveryCode));
        let other = run(&e, &first.state, "aaaabbbb", NOW);
        assert_eq!(
            other.verdict,
            Verdict::Accepted(Method::Recovery {
                index: 0,
                remaining: 0
            })
        );
    }

    fn wrong_from(
        e: &Enrollment,
        rhost: &str,
        state: &State,
        limits: &Limits,
        now: u64,
    ) -> Decision {
        decide_from(e, rhost, state, limits, &wrong_code(e, now / 30), now)
    }

    #[test]
    fn lockout_engages_doubles_and_caps() {
        let e = totp_enrollment();
        let limits = Limits {
            lockout: 60,
            max_lockout: 200,
            max_failures_user: 0,
            ..Limits::default()
        };
        let mut state = State::default();
        let mut now = NOW;
        for expected_lock in [60u64, 120, 200, 200] {
            for attempt in 1..=5u32 {
                let d = wrong_from(&e, "", &state, &limits, now);
                match d.verdict {
                    Verdict::Rejected {
                        failures, locked, ..
                    } => {
                        assert_eq!(failures, if attempt == 5 { 0 } else { attempt });
                        let expected = Lock {
                            until: now + expected_lock,
                            scope: LockScope::Source,
                        };
                        assert_eq!(locked, (attempt == 5).then_some(expected));
                    }
                    other => panic!("unexpected {other:?}"),
                }
                state = d.state;
            }
            // Locked: even the right code is not looked at, and nothing changes.
            let locked = dec(&e, &state, &limits, &totp_code(&e, now), now);
            assert_eq!(
                locked.verdict,
                Verdict::Locked(Lock {
                    until: now + expected_lock,
                    scope: LockScope::Source
                })
            );
            assert_eq!(locked.state, state);
            now += expected_lock;
        }
        // After the lock expires a right code gets in and resets the doubling.
        let ok = dec(&e, &state, &limits, &totp_code(&e, now), now);
        assert!(matches!(ok.verdict, Verdict::Accepted(_)));
        assert!(ok.state.all.sources.is_empty());
        assert_eq!(ok.state.all.user, Tally::default());
    }

    #[test]
    fn a_locked_source_leaves_other_sources_at_the_prompt() {
        let e = totp_enrollment();
        let limits = Limits::default();
        let mut state = State::default();
        for _ in 0..5 {
            state = wrong_from(&e, "127.0.0.2", &state, &limits, NOW).state;
        }
        let refused = decide_from(&e, "127.0.0.2", &state, &limits, &totp_code(&e, NOW), NOW);
        assert!(matches!(
            refused.verdict,
            Verdict::Locked(Lock {
                scope: LockScope::Source,
                ..
            })
        ));
        let owner = decide_from(&e, "127.0.0.1", &state, &limits, &totp_code(&e, NOW), NOW);
        assert!(matches!(owner.verdict, Verdict::Accepted(_)));
        // The owner's success clears the user-wide tally, not the stranger's lock.
        assert_eq!(owner.state.all.user, Tally::default());
        assert!(owner.state.all.sources["127.0.0.2"].is_locked(NOW));
    }

    #[test]
    fn the_user_wide_ceiling_locks_every_source() {
        let e = totp_enrollment();
        let limits = Limits::default();
        let mut state = State::default();
        let mut last = None;
        for i in 0..20u32 {
            let rhost = format!("127.0.0.{}", 2 + i % 8);
            let d = wrong_from(&e, &rhost, &state, &limits, NOW);
            last = Some(d.verdict);
            state = d.state;
        }
        assert_eq!(
            last,
            Some(Verdict::Rejected {
                failures: 3,
                user_failures: 0,
                locked: Some(Lock {
                    until: NOW + 60,
                    scope: LockScope::User
                })
            })
        );
        for rhost in ["127.0.0.1", "", "::1", "127.0.0.200"] {
            let d = decide_from(&e, rhost, &state, &limits, &totp_code(&e, NOW), NOW);
            assert_eq!(
                d.verdict,
                Verdict::Locked(Lock {
                    until: NOW + 60,
                    scope: LockScope::User
                }),
                "{rhost}"
            );
        }
    }

    #[test]
    fn max_failures_zero_never_locks() {
        let e = totp_enrollment();
        let limits = Limits {
            max_failures: 0,
            ..Limits::default()
        };
        let mut state = State::default();
        for _ in 0..50 {
            state = dec(&e, &state, &limits, "000000x", NOW).state;
        }
        assert_eq!(
            state.lock_for(&Source::from_rhost(""), Custody::User, NOW),
            None
        );
        assert!(matches!(
            dec(&e, &state, &limits, &totp_code(&e, NOW), NOW).verdict,
            Verdict::Accepted(_)
        ));
    }

    #[test]
    fn non_codes_fail_like_wrong_codes() {
        let e = totp_enrollment();
        for junk in ["", " ", "abcdef", "12345", "1234567", "123 456", "\u{0}"] {
            let d = run(&e, &State::default(), junk, NOW);
            assert_eq!(
                d.verdict,
                Verdict::Rejected {
                    failures: 1,
                    user_failures: 1,
                    locked: None
                },
                "{junk:?}"
            );
        }
    }

    #[test]
    fn success_resets_failures() {
        let e = totp_enrollment();
        let mut state = State::default();
        for _ in 0..4 {
            state = run(&e, &state, "nope", NOW).state;
        }
        assert_eq!(state.all.user.failures, 4);
        let ok = run(&e, &state, &totp_code(&e, NOW), NOW);
        assert_eq!(ok.state.all.user.failures, 0);
        assert_eq!(ok.state.last_success, NOW);
    }

    #[test]
    fn a_replay_counts_nothing() {
        let e = hotp_enrollment();
        let used = run(&e, &State::default(), &code_at(&e, 3), NOW).state;
        for counter in 0..=3 {
            let d = run(&e, &used, &code_at(&e, counter), NOW);
            assert_eq!(d.verdict, Verdict::Replayed(Replay::Code), "{counter}");
            assert_eq!(d.state, used);
        }
    }

    #[test]
    fn eight_digit_sha512_codes() {
        let mut e = totp_enrollment();
        e.algorithm = Algorithm::Sha512;
        e.digits = 8;
        let code = totp_code(&e, NOW);
        assert_eq!(code.len(), 8);
        assert!(matches!(
            run(&e, &State::default(), &code, NOW).verdict,
            Verdict::Accepted(_)
        ));
        assert!(matches!(
            run(&e, &State::default(), &code[2..], NOW).verdict,
            Verdict::Rejected { .. }
        ));
    }

    /// A state whose record for `e` is `record` (as a past success left it).
    fn with_record(e: &Enrollment, record: EnrollmentRecord) -> State {
        let mut state = State::default();
        assert!(state.accept(&EnrollmentRef::new(e, FILE, Custody::User), record, 1));
        state
    }

    /// Malware running as the user, with the password: wrong guesses at the store's code
    /// (sudo), a right code from the user's own file (which it can write) after every
    /// four, and every lockout waited out. The store's tallies keep counting: its source
    /// locks after 5 guesses, and the user-wide ceiling after 20, as with no home file.
    #[test]
    fn a_success_with_the_users_own_file_never_lowers_what_guards_the_store() {
        let (home, store) = (hotp_enrollment(), totp_enrollment());
        let wrong = wrong_code(&store, NOW / 30);
        let mut state = State::default();
        let mut now = NOW;
        let mut counter = 0;
        let mut guesses = 0;
        while guesses < 20 {
            now += 1;
            let d = store_dec(&store, &state, &wrong, now);
            match d.verdict {
                Verdict::Locked(lock) => {
                    now = lock.until;
                    continue;
                }
                Verdict::Rejected { .. } => guesses += 1,
                other => panic!("{other:?}"),
            }
            state = d.state;
            if guesses % 4 == 0 {
                let home_code = code_at(&home, counter);
                counter += 1;
                let ok = run(&home, &state, &home_code, now);
                assert!(
                    matches!(ok.verdict, Verdict::Accepted(_)),
                    "{:?}",
                    ok.verdict
                );
                assert_eq!(ok.state.protected, state.protected, "after {guesses}");
                assert_eq!(ok.state.all.user, Tally::default(), "after {guesses}");
                state = ok.state;
            }
        }
        assert_eq!(state.protected.user.lockouts, 1, "the ceiling after 20");
        assert_eq!(state.protected.sources["local"].lockouts, 4);
        let locked = store_dec(&store, &state, &totp_code(&store, now), now);
        assert!(
            matches!(locked.verdict, Verdict::Locked(_)),
            "{:?}",
            locked.verdict
        );
        // The user's own file still works: the store's lockout guards the store only.
        let home_code = code_at(&home, counter);
        assert!(matches!(
            run(&home, &state, &home_code, now).verdict,
            Verdict::Accepted(_)
        ));
    }

    /// A success with the store's enrollment clears both sets, as any success did.
    #[test]
    fn a_success_with_the_store_clears_its_own_tallies_too() {
        let store = totp_enrollment();
        let wrong = wrong_code(&store, NOW / 30);
        let failed = store_dec(&store, &State::default(), &wrong, NOW).state;
        assert_eq!(failed.protected.user.failures, 1);
        assert_eq!(failed.all.user.failures, 1);
        let ok = store_dec(&store, &failed, &totp_code(&store, NOW), NOW + 1);
        assert!(matches!(ok.verdict, Verdict::Accepted(_)));
        assert_eq!(ok.state.protected, Tallies::default());
        assert_eq!(ok.state.all, Tallies::default());
    }

    /// A code accepted while the clock read an hour later: at the real time every current
    /// code is a replay, told as the clock having gone back; an ordinary replay is not.
    #[test]
    fn a_replay_after_the_clock_went_back_says_so() {
        let e = totp_enrollment();
        let ahead = NOW + 3600;
        let future = run(&e, &State::default(), &totp_code(&e, ahead), ahead);
        assert!(matches!(future.verdict, Verdict::Accepted(_)));
        let back = run(&e, &future.state, &totp_code(&e, NOW), NOW);
        match back.verdict {
            Verdict::Replayed(Replay::ClockWentBack { seconds }) => {
                assert!((3570..=3600).contains(&seconds), "{seconds}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(back.state, future.state, "not counted");
        let used = run(&e, &State::default(), &totp_code(&e, NOW), NOW);
        let again = run(&e, &used.state, &totp_code(&e, NOW), NOW + 1);
        assert_eq!(again.verdict, Verdict::Replayed(Replay::Code));
        // The phone a step ahead (within the window) is no clock going back.
        let next_step = run(&e, &State::default(), &totp_code(&e, NOW + 30), NOW);
        let current = run(&e, &next_step.state, &totp_code(&e, NOW), NOW + 1);
        assert_eq!(current.verdict, Verdict::Replayed(Replay::Code));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the state and whatever is typed, a decision with an enrollment the
        /// user can write leaves every tally guarding the store exactly as it was.
        #[test]
        fn the_users_own_file_never_changes_the_stores_tallies(
            attempts in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..100, 0u8..3), 1..40),
        ) {
            let (home, store) = (hotp_enrollment(), totp_enrollment());
            let refs = [
                EnrollmentRef::new(&home, FILE, Custody::User),
                EnrollmentRef::new(&store, STORE_FILE, Custody::Administrator),
            ];
            let limits = Limits { max_failures: 3, max_failures_user: 5, ..Limits::default() };
            let mut state = State::default();
            let mut now = NOW;
            let mut counter = 0;
            for (with_store, right, advance, from) in attempts {
                now += advance;
                let enrolled = &refs[usize::from(with_store)];
                let answer = match (with_store, right) {
                    (true, true) => totp_code(&store, now),
                    (false, true) => { counter += 1; code_at(&home, counter - 1) }
                    (_, false) => "000000x".to_string(),
                };
                let source = Source::from_rhost(&format!("10.0.0.{from}"));
                let d = decide(enrolled, &source, &state, &limits, &answer, now);
                if !with_store {
                    prop_assert_eq!(&d.state.protected, &state.protected);
                }
                state = d.state;
            }
        }

        /// Whatever is typed, whenever, from wherever, through whichever of two enrollments:
        /// no TOTP step, HOTP counter or recovery code is accepted twice per enrollment.
        #[test]
        fn no_code_is_ever_accepted_twice_per_enrollment(
            attempts in proptest::collection::vec(
                (any::<bool>(), 0u64..40, 0u64..200, any::<bool>(), 0u8..4), 1..60),
        ) {
            let (totp, hotp) = (totp_enrollment(), hotp_enrollment());
            let refs = [EnrollmentRef::new(&totp, FILE, Custody::User), EnrollmentRef::new(&hotp, STORE_FILE, Custody::Administrator)];
            let limits = Limits { max_failures: 0, ..Limits::default() };
            let mut state = State::default();
            let mut now = NOW;
            let mut accepted = Vec::new();
            for (use_hotp, counter, advance, recovery, from) in attempts {
                now += advance;
                let enrolled = &refs[usize::from(use_hotp)];
                let e = enrolled.enrollment;
                let answer = if recovery { "aaaa-bbbb".to_string() }
                    else if use_hotp { code_at(e, counter) }
                    else { totp_code(e, now.saturating_sub(counter % 3 * 30)) };
                let source = Source::from_rhost(&format!("10.0.0.{from}"));
                let before = state.record(enrolled);
                let d = decide(enrolled, &source, &state, &limits, &answer, now);
                if let Verdict::Accepted(m) = d.verdict {
                    let key = match m {
                        Method::Totp { step } => (use_hotp, 0, step),
                        Method::Hotp { counter } => (use_hotp, 1, counter),
                        Method::Recovery { index, .. } => (use_hotp, 2, u64::from(index)),
                    };
                    prop_assert!(!accepted.contains(&key), "{key:?} accepted twice");
                    accepted.push(key);
                }
                // Monotonic guards never move backwards.
                let after = d.state.record(enrolled);
                prop_assert!(after.last_totp_step >= before.last_totp_step);
                prop_assert!(after.next_hotp_counter >= before.next_hotp_counter);
                state = d.state;
            }
        }

        /// Wrong answers through different enrollments (services) add up on the person.
        #[test]
        fn failures_across_enrollments_add_up(picks in proptest::collection::vec(any::<bool>(), 1..19)) {
            let (totp, hotp) = (totp_enrollment(), hotp_enrollment());
            let refs = [EnrollmentRef::new(&totp, FILE, Custody::User), EnrollmentRef::new(&hotp, "/etc/otp/t.toml", Custody::User)];
            let limits = Limits { max_failures: 1000, ..Limits::default() };
            let mut state = State::default();
            let local = Source::from_rhost("");
            for (n, use_hotp) in picks.iter().enumerate() {
                let d = decide(&refs[usize::from(*use_hotp)], &local, &state, &limits, "nope", NOW);
                prop_assert_eq!(d.state.all.user.failures, n as u32 + 1);
                state = d.state;
            }
        }

        /// While the user or the source is locked nothing is checked and nothing changes.
        #[test]
        fn nothing_is_accepted_while_locked(
            locked_for in 1u64..100_000,
            offset in 0u64..100_000,
            recovery in any::<bool>(),
            user_wide in any::<bool>(),
        ) {
            let e = totp_enrollment();
            let lock = Tally { locked_until: NOW + locked_for, lockouts: 1, ..Tally::default() };
            let mut state = State::default();
            if user_wide {
                state.all.user = lock;
            } else {
                state.all.sources.insert("192.0.2.1".into(), lock);
            }
            let now = NOW + offset % locked_for;
            let answer = if recovery { "aaaa-bbbb".to_string() } else { totp_code(&e, now) };
            let d = decide_from(&e, "192.0.2.1", &state, &Limits::default(), &answer, now);
            let scope = if user_wide { LockScope::User } else { LockScope::Source };
            prop_assert_eq!(d.verdict, Verdict::Locked(Lock { until: NOW + locked_for, scope }));
            prop_assert_eq!(d.state, state);
        }

        /// However many sources fail in whatever order, the table stays bounded and a locked
        /// source is never forgotten while its lock runs.
        #[test]
        fn eviction_never_drops_a_locked_source(
            failures in proptest::collection::vec((0u16..300, 0u64..30), 1..400),
        ) {
            let limits = Limits { max_failures_user: 0, ..Limits::default() };
            let mut state = State::default();
            let mut now = NOW;
            for (host, advance) in failures {
                now += advance;
                let locked_before: Vec<String> =
                    state.all.locked_sources(now).map(|(k, _)| k.to_string()).collect();
                let source = Source::from_rhost(&format!("10.{}.0.1", host % 256));
                state.record_failure(&source, Custody::User, &limits, now);
                prop_assert!(state.all.sources.len() <= crate::state::MAX_SOURCES);
                for key in locked_before {
                    prop_assert!(state.all.sources[&key].is_locked(now), "{key} forgotten");
                }
            }
        }

        /// A right code for any step inside the window, newer than the last accepted, is accepted when not locked.
        #[test]
        fn a_right_code_inside_the_window_is_accepted(
            now in 1_000_000u64..4_000_000_000,
            window in 0u64..5,
            pick in 0u64..11,
            failures in 0u32..4,
            last_behind in proptest::option::of(0u64..5),
        ) {
            let e = totp_enrollment();
            let current = now / 30;
            let step = current - window + pick % (2 * window + 1);
            let last = last_behind.map(|behind| current - window - 1 - behind);
            let mut state = with_record(&e, EnrollmentRecord { last_totp_step: last, ..EnrollmentRecord::default() });
            state.all.user.failures = failures;
            let limits = Limits { window, ..Limits::default() };
            let d = dec(&e, &state, &limits, &code_at(&e, step), now);
            let accepted = matches!(d.verdict, Verdict::Accepted(Method::Totp { step: s }) if s >= step);
            prop_assert!(accepted, "{:?}", d.verdict);
        }

        #[test]
        fn a_right_hotp_code_inside_the_lookahead_is_accepted(next in 0u64..1_000_000, ahead in 0u64..=10) {
            let e = hotp_enrollment();
            let state = with_record(&e, EnrollmentRecord { next_hotp_counter: Some(next), ..EnrollmentRecord::default() });
            let d = run(&e, &state, &code_at(&e, next + ahead), NOW);
            let accepted = matches!(d.verdict, Verdict::Accepted(Method::Hotp { counter }) if counter <= next + ahead);
            prop_assert!(accepted, "{:?}", d.verdict);
        }
    }
}
