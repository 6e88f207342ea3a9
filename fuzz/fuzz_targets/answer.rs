//! Fuzzes what the user types: `answer::as_code`, `answer::split_password_and_code`
//! (forward_pass) and `decision::decide` on a fixed enrollment and state.
//!
//! Input layout: byte 0 picks digits (6, 7, 8) and TOTP/HOTP, byte 1 the state,
//! bytes 2..10 a time offset, the rest (UTF-8) is the answer.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pam_otp::core::answer::{as_code, split_password_and_code};
use pam_otp::core::decision::{decide, Limits, Method, Verdict};
use pam_otp::core::enrollment::{Enrollment, Kind};
use pam_otp::core::otp::{format_code, hotp, totp_step};
use pam_otp::core::recovery::{normalise, RecoveryHash};
use pam_otp::core::state::State;

/// RFC 6238 Appendix B time; the seeds carry the right codes for it.
const BASE_TIME: u64 = 1_111_111_109;
const RECOVERY: [&str; 2] = ["aaaa-bbbb", "cccc-dddd"];

/// [digits 6, 7, 8] x [totp, hotp].
fn enrollments() -> &'static Vec<Enrollment> {
    static ENROLLMENTS: OnceLock<Vec<Enrollment>> = OnceLock::new();
    ENROLLMENTS.get_or_init(|| {
        let mut all = Vec::new();
        for digits in 6..=8 {
            for kind in ["totp", "hotp"] {
                let hashes: Vec<String> = RECOVERY
                    .iter()
                    .enumerate()
                    .map(|(i, code)| format!("\"{}\"", RecoveryHash::new(code, [i as u8; 16]).to_stored()))
                    .collect();
                let text = format!(
                    "secret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\ntype = \"{kind}\"\ndigits = {digits}\ncounter = 5\nrecovery_codes = [{}]\n",
                    hashes.join(", ")
                );
                all.push(Enrollment::parse(&text).unwrap());
            }
        }
        all
    })
}

fn state_for(enrollment: &Enrollment, pick: u8, now: u64) -> State {
    let fresh = State::fresh(enrollment);
    match pick % 4 {
        0 => fresh,
        // The previous step was accepted: only the current and next remain.
        1 => State {
            last_totp_step: Some(totp_step(now, 30).saturating_sub(1)),
            next_hotp_counter: fresh.next_hotp_counter.map(|c| c + 2),
            spent_recovery_codes: vec![0],
            ..fresh
        },
        // One failure short of a lockout.
        2 => State {
            failures: 4,
            lockouts: 3,
            ..fresh
        },
        // Locked for another minute.
        _ => State {
            locked_until: now + 60,
            lockouts: 1,
            ..fresh
        },
    }
}

fn check_code_parsing(answer: &str, digits: u32) {
    let trimmed = answer.trim();
    match as_code(answer, digits) {
        Some(value) => {
            assert!(value < 10u32.pow(digits));
            assert_eq!(format_code(value, digits), trimmed);
        }
        None => assert!(
            trimmed.len() != digits as usize || !trimmed.bytes().all(|b| b.is_ascii_digit())
        ),
    }
    match split_password_and_code(answer, digits) {
        Some((password, code)) => {
            assert_eq!(code.len(), digits as usize);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(
                format!("{}{}", password.as_str(), code.as_str()),
                answer.trim_end()
            );
        }
        None => {
            let end = answer.trim_end();
            assert!(
                end.len() < digits as usize
                    || !end.is_char_boundary(end.len() - digits as usize)
                    || !end.as_bytes()[end.len() - digits as usize..]
                        .iter()
                        .all(u8::is_ascii_digit)
            );
        }
    }
}

/// Whatever decide says must be consistent with the codes that are really acceptable.
fn check_decision(enrollment: &Enrollment, state: &State, answer: &str, now: u64) {
    let limits = Limits::default();
    let decision = decide(enrollment, state, &limits, answer, now);
    let next = &decision.state;
    assert!(next.last_totp_step >= state.last_totp_step);
    assert!(next.next_hotp_counter >= state.next_hotp_counter);
    assert!(next.spent_recovery_codes.len() >= state.spent_recovery_codes.len());
    let code_of = |counter: u64| {
        format_code(
            hotp(
                enrollment.algorithm,
                enrollment.secret.as_bytes(),
                counter,
                enrollment.digits,
            ),
            enrollment.digits,
        )
    };
    match decision.verdict {
        Verdict::Locked { until } => {
            assert!(state.is_locked(now));
            assert_eq!(until, state.locked_until);
            assert_eq!(next, state);
        }
        Verdict::Accepted(method) => {
            assert!(!state.is_locked(now));
            assert_eq!((next.failures, next.lockouts, next.locked_until), (0, 0, 0));
            match (method, enrollment.kind) {
                (Method::Totp { step }, Kind::Totp { period }) => {
                    let current = totp_step(now, period);
                    assert!(step + limits.window >= current && step <= current + limits.window);
                    assert!(state.last_totp_step.is_none_or(|last| step > last));
                    assert_eq!(code_of(step), answer.trim());
                    assert_eq!(next.last_totp_step, Some(step));
                }
                (Method::Hotp { counter }, Kind::Hotp { counter: first }) => {
                    let expected = state.next_hotp_counter.unwrap_or(first);
                    assert!(counter >= expected && counter <= expected + limits.hotp_lookahead);
                    assert_eq!(code_of(counter), answer.trim());
                    assert_eq!(next.next_hotp_counter, Some(counter + 1));
                }
                (Method::Recovery { index, .. }, _) => {
                    assert!(!state.spent_recovery_codes.contains(&index));
                    assert_eq!(
                        normalise(RECOVERY[index as usize]).as_str(),
                        normalise(answer.trim()).as_str()
                    );
                    assert!(next.spent_recovery_codes.contains(&index));
                }
                (method, kind) => panic!("{method:?} accepted for {kind:?}"),
            }
        }
        Verdict::Rejected {
            failures,
            locked_until,
        } => {
            assert!(!state.is_locked(now));
            assert_eq!(failures, state.failures + 1);
            assert_eq!(next.last_totp_step, state.last_totp_step);
            assert_eq!(next.next_hotp_counter, state.next_hotp_counter);
            assert_eq!(next.spent_recovery_codes, state.spent_recovery_codes);
            assert_eq!(locked_until.is_some(), failures >= limits.max_failures);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let enrollment = &enrollments()[usize::from(data[0]) % 6];
    // Within a day of the base time, either way.
    let offset = u64::from_le_bytes(data[2..10].try_into().unwrap()) % (2 * 86_400);
    let now = BASE_TIME - 86_400 + offset;
    let Ok(answer) = std::str::from_utf8(&data[10..]) else {
        return;
    };
    let state = state_for(enrollment, data[1], now);
    check_code_parsing(answer, enrollment.digits);
    check_decision(enrollment, &state, answer, now);
    // forward_pass: the module decides on the split-off code, or on "" when there is none.
    let code = split_password_and_code(answer, enrollment.digits)
        .map(|(_, code)| code)
        .unwrap_or_default();
    check_decision(enrollment, &state, &code, now);
});
