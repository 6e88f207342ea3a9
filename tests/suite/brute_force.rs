//! The brute-force arithmetic of SECURITY.md, checked by simulation: an attacker who already
//! has the first factor guesses codes continuously against the pure decision core
//! (`decision::decide`) on a fake clock, under the default policy (window=1,
//! max_failures=5, lockout=60 doubling to max_lockout=86400). The simulation counts the
//! guesses the module really checks and, at each, how many codes it would accept; the sum
//! of (acceptable codes / 10^6) is the expected number of successes, compared with the
//! closed-form figure of SECURITY.md.

use pam_otp::core::decision::{decide, Limits, Verdict};
use pam_otp::core::enrollment::Enrollment;
use pam_otp::core::otp::{format_code, hotp, totp_step};
use pam_otp::core::state::State;

use crate::support::Rng;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
const START: u64 = 1_700_000_000;
const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// What a simulated attacker achieved.
#[derive(Debug)]
struct Attack {
    /// Guesses the module checked (not refused unseen as locked).
    guesses: u64,
    /// Sum over checked guesses of (codes acceptable at that moment) / 10^digits.
    expected_successes: f64,
    /// Guesses that were actually right (random guesses; usually none).
    successes: u64,
}

/// The codes `decide` would accept right now: TOTP steps in the window newer than the last
/// accepted one, or HOTP counters in the look-ahead.
fn acceptable_codes(e: &Enrollment, state: &State, limits: &Limits, now: u64) -> Vec<String> {
    let counters: Vec<u64> = match e.kind {
        pam_otp::core::enrollment::Kind::Totp { period } => {
            let current = totp_step(now, period);
            (current - limits.window..=current + limits.window)
                .filter(|&s| state.last_totp_step.is_none_or(|last| s > last))
                .collect()
        }
        pam_otp::core::enrollment::Kind::Hotp { counter } => {
            let next = state.next_hotp_counter.unwrap_or(counter);
            (next..=next + limits.hotp_lookahead).collect()
        }
    };
    let mut codes: Vec<String> = counters
        .into_iter()
        .map(|c| {
            format_code(
                hotp(e.algorithm, e.secret.as_bytes(), c, e.digits),
                e.digits,
            )
        })
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// An attacker guessing as fast as the module lets them for `duration` seconds. With
/// `user_logs_in_every`, the real user logs in at that interval, and the attacker never
/// starts a lockout that would still run then (so the user's success resets the doubling:
/// the attacker's best pacing against a user who logs in regularly).
fn attack(
    e: &Enrollment,
    limits: &Limits,
    duration: u64,
    user_logs_in_every: Option<u64>,
    seed: u64,
) -> Attack {
    let mut rng = Rng::seeded(seed);
    let mut state = State::fresh(e);
    let mut now = START;
    let end = START + duration;
    let mut next_user_login = user_logs_in_every.map(|every| START + every);
    let mut result = Attack {
        guesses: 0,
        expected_successes: 0.0,
        successes: 0,
    };
    let space = 10f64.powi(e.digits as i32);
    while now < end {
        if let Some(login_at) = next_user_login {
            let would_lock = state.failures + 1 >= limits.max_failures;
            let lock_ends = now
                + pam_otp::core::decision::lockout_length(limits, state.lockouts.saturating_add(1));
            if now >= login_at || (would_lock && lock_ends > login_at) {
                // Wait for the user's login, which succeeds and resets the counters.
                now = now.max(login_at);
                let right = &acceptable_codes(e, &state, limits, now)[0];
                let d = decide(e, &state, limits, right, now);
                assert!(
                    matches!(d.verdict, Verdict::Accepted(_)),
                    "user refused: {d:?}"
                );
                state = d.state;
                next_user_login = Some(login_at + user_logs_in_every.unwrap());
                now += 1; // the attacker's next guess comes after it
                continue;
            }
        }
        let acceptable = acceptable_codes(e, &state, limits, now);
        let guess = format_code((rng.next() % space as u64) as u32, e.digits);
        let d = decide(e, &state, limits, &guess, now);
        match d.verdict {
            Verdict::Locked { until } => {
                now = until;
                continue;
            }
            Verdict::Accepted(_) => {
                assert!(
                    acceptable.contains(&guess),
                    "accepted a code outside the set"
                );
                result.successes += 1;
            }
            Verdict::Rejected { .. } => {
                assert!(
                    !acceptable.contains(&guess),
                    "refused a code inside the set"
                );
            }
        }
        // Spot-check that the set is exactly what decide accepts at this moment.
        if result.guesses.is_multiple_of(97) {
            for code in &acceptable {
                let check = decide(e, &state, limits, code, now);
                assert!(
                    matches!(check.verdict, Verdict::Accepted(_)),
                    "{code} refused"
                );
            }
        }
        result.guesses += 1;
        result.expected_successes += acceptable.len() as f64 / space;
        state = d.state;
    }
    result
}

fn totp_enrollment() -> Enrollment {
    Enrollment::parse(&format!("secret = \"{SECRET}\"")).unwrap()
}

/// SECURITY.md's formula, written out independently of the module's code: batches of
/// `max_failures` guesses start at S_1 = 0 and S_(k+1) = S_k + L_k, with
/// L_k = min(lockout * 2^(k-1), max_lockout); the guesses in `duration` are
/// max_failures * #{k : S_k < duration}.
fn formula_guesses(max_failures: u64, lockout: u64, max_lockout: u64, duration: u64) -> u64 {
    // Lockouts below the cap: L_k = lockout * 2^(k-1) <= max_lockout for k <= doubling.
    let doubling = (1..64)
        .take_while(|k| lockout << (k - 1) <= max_lockout)
        .count() as u64;
    let uncapped_total = lockout * ((1 << doubling) - 1); // S_(doubling+1)
    let batches = if duration <= uncapped_total {
        (1..=doubling)
            .filter(|&k| lockout * ((1 << (k - 1)) - 1) < duration)
            .count() as u64
    } else {
        doubling + 1 + (duration - 1 - uncapped_total) / max_lockout
    };
    max_failures * batches
}

fn assert_close(measured: f64, expected: f64, tolerance: f64, what: &str) {
    let relative = (measured - expected).abs() / expected;
    assert!(
        relative <= tolerance,
        "{what}: simulated {measured}, formula {expected} ({:.2}% off)",
        relative * 100.0
    );
}

#[test]
fn formula_matches_hand_computed_values() {
    // S_12 = 60 * (2^11 - 1) = 122820 s; then one batch a day: 12 + 363 = 375 batches.
    assert_eq!(formula_guesses(5, 60, 86_400, YEAR), 1875);
    assert_eq!(formula_guesses(5, 60, 86_400, 1), 5);
    assert_eq!(formula_guesses(5, 60, 86_400, 61), 10);
    assert_eq!(formula_guesses(5, 60, 86_400, 60), 5);
}

#[test]
fn a_year_of_guessing_under_the_default_policy() {
    let e = totp_enrollment();
    let limits = Limits::default();
    let attack = attack(&e, &limits, YEAR, None, 0x5eed_0001);
    let guesses = formula_guesses(5, 60, 86_400, YEAR);
    // 3 acceptable codes (window 1) among 10^6 at each guess.
    let expected = guesses as f64 * 3.0 / 1e6;
    eprintln!(
        "default policy, one year: {attack:?}; formula {guesses} guesses, {expected} successes"
    );
    assert_close(
        attack.guesses as f64,
        guesses as f64,
        0.01,
        "guesses per year",
    );
    assert_close(
        attack.expected_successes,
        expected,
        0.01,
        "expected successes per year",
    );
    assert!((0.0055..0.0058).contains(&attack.expected_successes));
}

#[test]
fn later_years_at_the_lockout_cap() {
    // Ten years in a row: after the first day and a half every lockout is 86400 s.
    let e = totp_enrollment();
    let attack = attack(&e, &Limits::default(), 10 * YEAR, None, 0x5eed_0002);
    let guesses = formula_guesses(5, 60, 86_400, 10 * YEAR);
    let per_year = attack.expected_successes / 10.0;
    eprintln!("default policy, ten years: {attack:?}; {per_year} expected successes a year");
    assert_close(
        attack.guesses as f64,
        guesses as f64,
        0.01,
        "guesses in ten years",
    );
    assert_close(
        per_year,
        5.0 * 365.0 * 3.0 / 1e6,
        0.01,
        "steady-state successes a year",
    );
}

#[test]
fn a_year_of_guessing_around_a_daily_user_login() {
    // The user's daily success resets the doubling; the best the attacker can then do is
    // the first 10 batches of each day (lockouts end at 61380 s), then 4 guesses that stop
    // short of the 11th lockout (61440 s, which would still run at the next login):
    // 54 guesses a day.
    let e = totp_enrollment();
    let attack = attack(&e, &Limits::default(), YEAR, Some(DAY), 0x5eed_0003);
    let expected_guesses = 365.0 * 54.0;
    eprintln!("daily user login, one year: {attack:?}");
    assert_close(
        attack.guesses as f64,
        expected_guesses,
        0.01,
        "guesses per year",
    );
    // Right after the user's login the spent step leaves 1 or 2 acceptable codes, so the
    // average is a little under 3.
    let per_guess = attack.expected_successes / attack.guesses as f64 * 1e6;
    assert!(
        (2.7..3.0).contains(&per_guess),
        "{per_guess} acceptable codes per guess"
    );
}

#[test]
fn hotp_look_ahead_widens_each_guess() {
    let e = Enrollment::parse(&format!("type = \"hotp\"\nsecret = \"{SECRET}\"")).unwrap();
    let attack = attack(&e, &Limits::default(), YEAR, None, 0x5eed_0004);
    eprintln!("HOTP, one year: {attack:?}");
    // hotp_lookahead=10: 11 acceptable counters per guess.
    assert_close(
        attack.expected_successes,
        1875.0 * 11.0 / 1e6,
        0.01,
        "HOTP successes per year",
    );
}

#[test]
fn without_lockout_the_figure_explodes() {
    // max_failures=0 (benchmarks only): one guess a second is 31.5 million guesses a year.
    let e = totp_enrollment();
    let limits = Limits {
        max_failures: 0,
        ..Limits::default()
    };
    let mut state = State::fresh(&e);
    for i in 0..1000 {
        state = decide(&e, &state, &limits, "000000", START + i).state;
    }
    assert!(!state.is_locked(START + 1000));
    let per_year_at_one_a_second = YEAR as f64 * 3.0 / 1e6;
    assert!(per_year_at_one_a_second > 90.0);
}
