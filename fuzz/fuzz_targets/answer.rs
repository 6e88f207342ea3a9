//! Fuzzes what the user types: `answer::as_code`, `answer::split_password_and_code`
//! (split_pass) and `decision::decide` on a fixed enrollment and state.
//!
//! Input layout: byte 0 picks digits (6, 7, 8) and TOTP/HOTP, byte 1 the state,
//! bytes 2..10 a time offset, the rest (UTF-8) is the answer.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pam_otp_core::answer::{as_code, split_password_and_code};
use pam_otp_core::decision::{decide, Limits, Method, Verdict};
use pam_otp_core::enrollment::{Enrollment, Kind};
use pam_otp_core::otp::{format_code, hotp, totp_step};
use pam_otp_core::recovery::{normalise, RecoveryHash};
use pam_otp_core::source::Source;
use pam_otp_core::state::{Custody, EnrollmentRecord, EnrollmentRef, State, Tally};

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

const FILE: &str = "/home/fuzz/.otp.toml";

fn state_for(enrolled: &EnrollmentRef, pick: u8, now: u64) -> State {
    let mut state = State::default();
    match pick % 4 {
        0 => {}
        // The previous step was accepted: only the current and next remain.
        1 => {
            let fresh = enrolled.fresh_record();
            let record = EnrollmentRecord {
                last_totp_step: Some(totp_step(now, 30).saturating_sub(1)),
                next_hotp_counter: fresh.next_hotp_counter.map(|c| c + 2),
                spent_recovery_codes: vec![0],
                ..fresh
            };
            assert!(state.accept(enrolled, record, now.saturating_sub(60)));
        }
        // One failure short of a lockout.
        2 => {
            state.all.user.failures = 4;
            state.all.sources.insert(
                "local".into(),
                Tally {
                    failures: 4,
                    lockouts: 3,
                    ..Tally::default()
                },
            );
        }
        // Locked for another minute.
        _ => {
            state.all.sources.insert(
                "local".into(),
                Tally {
                    locked_until: now + 60,
                    lockouts: 1,
                    ..Tally::default()
                },
            );
        }
    }
    state
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
fn check_decision(enrolled: &EnrollmentRef, state: &State, answer: &str, now: u64) {
    let enrollment = enrolled.enrollment;
    let limits = Limits::default();
    let local = Source::from_rhost("");
    let decision = decide(enrolled, &local, state, &limits, answer, now);
    let next = &decision.state;
    let (before, after) = (state.record(enrolled), next.record(enrolled));
    assert!(after.last_totp_step >= before.last_totp_step);
    assert!(after.next_hotp_counter >= before.next_hotp_counter);
    assert!(after.spent_recovery_codes.len() >= before.spent_recovery_codes.len());
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
    let locked = state.lock_for(&local, Custody::User, now);
    match decision.verdict {
        Verdict::Locked(lock) => {
            assert_eq!(Some(lock), locked);
            assert_eq!(next, state);
        }
        Verdict::Accepted(method) => {
            assert!(locked.is_none());
            assert_eq!(next.all.user, Tally::default());
            assert!(!next.all.sources.contains_key("local"));
            match (method, enrollment.kind) {
                (Method::Totp { step }, Kind::Totp { period }) => {
                    let current = totp_step(now, period);
                    assert!(step + limits.window >= current && step <= current + limits.window);
                    assert!(before.last_totp_step.is_none_or(|last| step > last));
                    assert_eq!(code_of(step), answer.trim());
                    assert_eq!(after.last_totp_step, Some(step));
                }
                (Method::Hotp { counter }, Kind::Hotp { counter: first }) => {
                    let expected = before.next_hotp_counter.unwrap_or(first);
                    assert!(counter >= expected && counter <= expected + limits.hotp_lookahead);
                    assert_eq!(code_of(counter), answer.trim());
                    assert_eq!(after.next_hotp_counter, Some(counter + 1));
                }
                (Method::Recovery { index, .. }, _) => {
                    assert!(!before.spent_recovery_codes.contains(&index));
                    assert_eq!(
                        normalise(RECOVERY[index as usize]).as_str(),
                        normalise(answer.trim()).as_str()
                    );
                    assert!(after.spent_recovery_codes.contains(&index));
                }
                (method, kind) => panic!("{method:?} accepted for {kind:?}"),
            }
        }
        Verdict::Replayed(_) | Verdict::NoRoom => {
            assert!(locked.is_none());
            assert_eq!(next, state);
        }
        Verdict::Rejected {
            user_failures,
            locked: lock,
            ..
        } => {
            assert!(locked.is_none());
            assert_eq!(after, before);
            if lock.is_none() {
                assert_eq!(user_failures, state.all.user.failures + 1);
            }
            let source_failures = state.all.sources.get("local").map_or(0, |t| t.failures);
            assert_eq!(lock.is_some(), source_failures + 1 >= limits.max_failures);
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
    let enrolled = EnrollmentRef::new(enrollment, FILE, Custody::User);
    let state = state_for(&enrolled, data[1], now);
    check_code_parsing(answer, enrollment.digits);
    check_decision(&enrolled, &state, answer, now);
    // split_pass keeps the split-off code, or "" when there is none, for use_split_code.
    let code = split_password_and_code(answer, enrollment.digits)
        .map(|(_, code)| code)
        .unwrap_or_default();
    check_decision(&enrolled, &state, &code, now);
});
