//! The pure decision of one login: given enrollment, state, limits, answer and time,
//! what happens and what the new state is. No I/O, no clock: everything is passed in.

use crate::core::answer::as_code;
use crate::core::enrollment::{Enrollment, Kind};
use crate::core::otp::totp_step;
use crate::core::state::State;
use crate::core::window::{matching_counter, Prefer};

/// The administrator's verification and lockout policy (SPEC "Module arguments").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TOTP: steps accepted either side of the current one.
    pub window: u64,
    /// HOTP: counter values accepted beyond the next expected one.
    pub hotp_lookahead: u64,
    /// Consecutive failures that trigger a lockout; 0 turns lockout off.
    pub max_failures: u32,
    /// Failures from all sources together that lock the user everywhere; 0 turns it off.
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
    Totp { step: u64 },
    Hotp { counter: u64 },
    Recovery { index: u32, remaining: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Method),
    /// A wrong answer; `locked_until` is set when this failure started a lockout.
    Rejected {
        failures: u32,
        locked_until: Option<u64>,
    },
    /// Locked out: the answer was not looked at.
    Locked {
        until: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub state: State,
}

/// Decides one answer. `state` must belong to `enrollment` (see `State::for_enrollment`).
pub fn decide(
    enrollment: &Enrollment,
    state: &State,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Decision {
    if state.is_locked(now) {
        return Decision {
            verdict: Verdict::Locked {
                until: state.locked_until,
            },
            state: state.clone(),
        };
    }
    let mut next = state.clone();
    let method = match_code(enrollment, state, limits, answer, now)
        .or_else(|| match_recovery_code(enrollment, state, answer));
    let verdict = match method {
        Some(method) => {
            match method {
                Method::Totp { step } => next.last_totp_step = Some(step),
                Method::Hotp { counter } => {
                    next.next_hotp_counter = Some(counter.saturating_add(1))
                }
                Method::Recovery { index, .. } => next.spent_recovery_codes.push(index),
            }
            next.failures = 0;
            next.lockouts = 0;
            next.locked_until = 0;
            next.last_success = now;
            Verdict::Accepted(method)
        }
        None => {
            next.failures = next.failures.saturating_add(1);
            let failures = next.failures;
            let mut locked_until = None;
            if limits.max_failures > 0 && next.failures >= limits.max_failures {
                next.lockouts = next.lockouts.saturating_add(1);
                next.failures = 0;
                next.locked_until = now.saturating_add(lockout_length(limits, next.lockouts));
                locked_until = Some(next.locked_until);
            }
            Verdict::Rejected {
                failures,
                locked_until,
            }
        }
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

/// Checks the answer against every acceptable step or counter (see `core::window`).
fn match_code(
    enrollment: &Enrollment,
    state: &State,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Option<Method> {
    let given = as_code(answer, enrollment.digits)?;
    match enrollment.kind {
        Kind::Totp { period } => {
            let current = totp_step(now, period);
            let oldest_allowed = match state.last_totp_step {
                Some(last) => last.saturating_add(1),
                None => 0,
            };
            let first = current.saturating_sub(limits.window).max(oldest_allowed);
            let last = current.saturating_add(limits.window);
            if first > last {
                return None;
            }
            matching_counter(enrollment, given, first..=last, Prefer::Newest)
                .map(|step| Method::Totp { step })
        }
        Kind::Hotp { counter } => {
            let next = state.next_hotp_counter.unwrap_or(counter);
            let last = next.saturating_add(limits.hotp_lookahead);
            matching_counter(enrollment, given, next..=last, Prefer::Oldest)
                .map(|counter| Method::Hotp { counter })
        }
    }
}

fn match_recovery_code(enrollment: &Enrollment, state: &State, answer: &str) -> Option<Method> {
    let trimmed = answer.trim();
    if trimmed.is_empty() {
        return None;
    }
    let spent = |i: usize| state.spent_recovery_codes.contains(&(i as u32));
    let index = (0..enrollment.recovery_codes.len())
        .find(|&i| !spent(i) && enrollment.recovery_codes[i].matches(trimmed))?;
    let unspent_before = (0..enrollment.recovery_codes.len())
        .filter(|&i| !spent(i))
        .count();
    Some(Method::Recovery {
        index: index as u32,
        remaining: unspent_before - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::otp::{format_code, Algorithm};
    use crate::core::recovery::RecoveryHash;
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

    fn run(e: &Enrollment, state: &State, answer: &str, now: u64) -> Decision {
        decide(e, state, &Limits::default(), answer, now)
    }

    #[test]
    fn totp_accepts_current_previous_and_next_step_only() {
        let e = totp_enrollment();
        let fresh = State::fresh(&e);
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
        let first = run(&e, &State::fresh(&e), &totp_code(&e, NOW), NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Totp { step: NOW / 30 })
        );
        let again = run(&e, &first.state, &totp_code(&e, NOW), NOW);
        assert!(matches!(
            again.verdict,
            Verdict::Rejected { failures: 1, .. }
        ));
        let older = run(&e, &first.state, &totp_code(&e, NOW - 30), NOW);
        assert!(matches!(older.verdict, Verdict::Rejected { .. }));
        let newer = run(&e, &first.state, &totp_code(&e, NOW + 30), NOW + 30);
        assert!(matches!(newer.verdict, Verdict::Accepted(_)));
    }

    #[test]
    fn window_zero_accepts_only_the_current_step() {
        let e = totp_enrollment();
        let limits = Limits {
            window: 0,
            ..Limits::default()
        };
        let fresh = State::fresh(&e);
        assert!(matches!(
            decide(&e, &fresh, &limits, &totp_code(&e, NOW), NOW).verdict,
            Verdict::Accepted(_)
        ));
        assert!(matches!(
            decide(&e, &fresh, &limits, &totp_code(&e, NOW - 30), NOW).verdict,
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn hotp_accepts_within_lookahead_and_moves_the_counter() {
        let e = hotp_enrollment();
        let fresh = State::fresh(&e);
        let first = run(&e, &fresh, &code_at(&e, 0), NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Hotp { counter: 0 })
        );
        assert_eq!(first.state.next_hotp_counter, Some(1));
        let ahead = run(&e, &first.state, &code_at(&e, 11), NOW);
        assert_eq!(
            ahead.verdict,
            Verdict::Accepted(Method::Hotp { counter: 11 })
        );
        assert_eq!(ahead.state.next_hotp_counter, Some(12));
        let old = run(&e, &ahead.state, &code_at(&e, 5), NOW);
        assert!(matches!(old.verdict, Verdict::Rejected { .. }));
        let too_far = run(&e, &ahead.state, &code_at(&e, 12 + 11), NOW);
        assert!(matches!(too_far.verdict, Verdict::Rejected { .. }));
    }

    #[test]
    fn recovery_codes_work_once_and_count_down() {
        let e = totp_enrollment();
        let first = run(&e, &State::fresh(&e), " CCCC-DDDD ", NOW);
        assert_eq!(
            first.verdict,
            Verdict::Accepted(Method::Recovery {
                index: 1,
                remaining: 1
            })
        );
        let again = run(&e, &first.state, "ccccdddd", NOW);
        assert!(matches!(again.verdict, Verdict::Rejected { .. }));
        let other = run(&e, &first.state, "aaaabbbb", NOW);
        assert_eq!(
            other.verdict,
            Verdict::Accepted(Method::Recovery {
                index: 0,
                remaining: 0
            })
        );
    }

    #[test]
    fn lockout_engages_doubles_and_caps() {
        let e = totp_enrollment();
        let limits = Limits {
            lockout: 60,
            max_lockout: 200,
            ..Limits::default()
        };
        let wrong = wrong_code(&e, NOW / 30);
        let mut state = State::fresh(&e);
        let mut now = NOW;
        for expected_lock in [60u64, 120, 200, 200] {
            for attempt in 1..=5u32 {
                let d = decide(&e, &state, &limits, &wrong, now);
                match d.verdict {
                    Verdict::Rejected {
                        failures,
                        locked_until,
                    } => {
                        assert_eq!(failures, attempt);
                        assert_eq!(locked_until, (attempt == 5).then_some(now + expected_lock));
                    }
                    other => panic!("unexpected {other:?}"),
                }
                state = d.state;
            }
            // Locked: even the right code is not looked at, and nothing changes.
            let locked = decide(&e, &state, &limits, &totp_code(&e, now), now);
            assert_eq!(
                locked.verdict,
                Verdict::Locked {
                    until: now + expected_lock
                }
            );
            assert_eq!(locked.state, state);
            now += expected_lock;
        }
        // After the lock expires a right code gets in and resets the doubling.
        let ok = decide(&e, &state, &limits, &totp_code(&e, now), now);
        assert!(matches!(ok.verdict, Verdict::Accepted(_)));
        assert_eq!(
            (ok.state.failures, ok.state.lockouts, ok.state.locked_until),
            (0, 0, 0)
        );
    }

    #[test]
    fn max_failures_zero_never_locks() {
        let e = totp_enrollment();
        let limits = Limits {
            max_failures: 0,
            ..Limits::default()
        };
        let mut state = State::fresh(&e);
        for _ in 0..50 {
            state = decide(&e, &state, &limits, "000000x", NOW).state;
        }
        assert!(!state.is_locked(NOW));
        assert!(matches!(
            decide(&e, &state, &limits, &totp_code(&e, NOW), NOW).verdict,
            Verdict::Accepted(_)
        ));
    }

    #[test]
    fn non_codes_fail_like_wrong_codes() {
        let e = totp_enrollment();
        for junk in ["", " ", "abcdef", "12345", "1234567", "123 456", "\u{0}"] {
            let d = run(&e, &State::fresh(&e), junk, NOW);
            assert_eq!(
                d.verdict,
                Verdict::Rejected {
                    failures: 1,
                    locked_until: None
                },
                "{junk:?}"
            );
        }
    }

    #[test]
    fn success_resets_failures() {
        let e = totp_enrollment();
        let mut state = State::fresh(&e);
        for _ in 0..4 {
            state = run(&e, &state, "nope", NOW).state;
        }
        assert_eq!(state.failures, 4);
        let ok = run(&e, &state, &totp_code(&e, NOW), NOW);
        assert_eq!(ok.state.failures, 0);
        assert_eq!(ok.state.last_success, NOW);
    }

    #[test]
    fn eight_digit_sha512_codes() {
        let mut e = totp_enrollment();
        e.algorithm = Algorithm::Sha512;
        e.digits = 8;
        let code = totp_code(&e, NOW);
        assert_eq!(code.len(), 8);
        assert!(matches!(
            run(&e, &State::fresh(&e), &code, NOW).verdict,
            Verdict::Accepted(_)
        ));
        assert!(matches!(
            run(&e, &State::fresh(&e), &code[2..], NOW).verdict,
            Verdict::Rejected { .. }
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever is typed, whenever: no TOTP step, HOTP counter or recovery code is accepted twice.
        #[test]
        fn no_code_is_ever_accepted_twice(
            hotp_kind in any::<bool>(),
            attempts in proptest::collection::vec((0u64..40, 0u64..200, any::<bool>()), 1..60),
        ) {
            let e = if hotp_kind { hotp_enrollment() } else { totp_enrollment() };
            let limits = Limits { max_failures: 0, ..Limits::default() };
            let mut state = State::fresh(&e);
            let mut now = NOW;
            let mut accepted = Vec::new();
            for (counter, advance, recovery) in attempts {
                now += advance;
                let answer = if recovery { "aaaa-bbbb".to_string() }
                    else if hotp_kind { code_at(&e, counter) }
                    else { totp_code(&e, now.saturating_sub(counter % 3 * 30)) };
                let d = decide(&e, &state, &limits, &answer, now);
                if let Verdict::Accepted(m) = d.verdict {
                    let key = match m {
                        Method::Totp { step } => (0, step),
                        Method::Hotp { counter } => (1, counter),
                        Method::Recovery { index, .. } => (2, u64::from(index)),
                    };
                    prop_assert!(!accepted.contains(&key), "{key:?} accepted twice");
                    accepted.push(key);
                }
                // Monotonic guards never move backwards.
                prop_assert!(d.state.last_totp_step >= state.last_totp_step);
                prop_assert!(d.state.next_hotp_counter >= state.next_hotp_counter);
                state = d.state;
            }
        }

        /// While locked nothing is accepted and the state does not change.
        #[test]
        fn nothing_is_accepted_while_locked(locked_for in 1u64..100_000, offset in 0u64..100_000, recovery in any::<bool>()) {
            let e = totp_enrollment();
            let state = State { locked_until: NOW + locked_for, lockouts: 1, ..State::fresh(&e) };
            let now = NOW + offset % locked_for;
            let answer = if recovery { "aaaa-bbbb".to_string() } else { totp_code(&e, now) };
            let d = decide(&e, &state, &Limits::default(), &answer, now);
            prop_assert_eq!(d.verdict, Verdict::Locked { until: NOW + locked_for });
            prop_assert_eq!(d.state, state);
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
            let state = State { failures, last_totp_step: last, ..State::fresh(&e) };
            let limits = Limits { window, ..Limits::default() };
            let d = decide(&e, &state, &limits, &code_at(&e, step), now);
            let accepted = matches!(d.verdict, Verdict::Accepted(Method::Totp { step: s }) if s >= step);
            prop_assert!(accepted, "{:?}", d.verdict);
        }

        #[test]
        fn a_right_hotp_code_inside_the_lookahead_is_accepted(next in 0u64..1_000_000, ahead in 0u64..=10) {
            let e = hotp_enrollment();
            let state = State { next_hotp_counter: Some(next), ..State::fresh(&e) };
            let d = run(&e, &state, &code_at(&e, next + ahead), NOW);
            let accepted = matches!(d.verdict, Verdict::Accepted(Method::Hotp { counter }) if counter <= next + ahead);
            prop_assert!(accepted, "{:?}", d.verdict);
        }
    }
}
