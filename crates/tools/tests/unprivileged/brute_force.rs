//! The brute-force arithmetic of SECURITY.md, checked by simulation: an attacker who already
//! has the first factor guesses codes continuously against the pure decision core
//! (`decision::decide`) on a fake clock, under the default policy (window=1,
//! max_failures=5, lockout=60 doubling to max_lockout=86400). The simulation counts the
//! guesses the module really checks and, at each, how many codes it would accept; the sum
//! of (acceptable codes / 10^6) is the expected number of successes, compared with the
//! closed-form figure of SECURITY.md.

use pam_otp_core::decision::{decide, lockout_length, Limits, Verdict};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::otp::{format_code, hotp, totp_step};
use pam_otp_core::source::Source;
use pam_otp_core::state::{Custody, EnrollmentRef, State, Tally};

use crate::rng::Rng;

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
    let record = state.record(&EnrollmentRef::new(e, FILE, Custody::User));
    let counters: Vec<u64> = match e.kind {
        pam_otp_core::enrollment::Kind::Totp { period } => {
            let current = totp_step(now, period);
            (current - limits.window..=current + limits.window)
                .filter(|&s| record.last_totp_step.is_none_or(|last| s > last))
                .collect()
        }
        pam_otp_core::enrollment::Kind::Hotp { counter } => {
            let next = record.next_hotp_counter.unwrap_or(counter);
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

const FILE: &str = "/home/victim/.otp.toml";

/// The real user, logging in at a fixed interval.
#[derive(Clone, Copy)]
struct Owner {
    every: u64,
    /// From the attacker's (first) address (a shared NAT, or sudo: both "local"), or from
    /// an address of their own.
    same_source: bool,
}

/// The attacker's `n`-th address.
fn attacker_source(n: u32) -> Source {
    Source::from_rhost(&format!("10.{}.{}.1", n / 256, n % 256))
}

/// Whether the next failure from `source` would start a lockout that still runs at
/// `login_at` and keeps the owner (from `owner_source`) out.
fn would_block_owner(
    state: &State,
    limits: &Limits,
    source: &Source,
    owner_source: &Source,
    now: u64,
    login_at: u64,
) -> bool {
    let ends_after_login = |tally: Option<&Tally>, threshold: u32| {
        let tally = tally.cloned().unwrap_or_default();
        threshold > 0
            && tally.failures + 1 >= threshold
            && now + lockout_length(limits, tally.lockouts.saturating_add(1)) > login_at
    };
    ends_after_login(Some(&state.all.user), limits.max_failures_user)
        || (source == owner_source
            && ends_after_login(state.all.sources.get(source.as_str()), limits.max_failures))
}

/// An attacker guessing as fast as the module lets them for `duration` seconds from
/// `addresses` addresses (the first one not locked; waiting when all are). With `owner`,
/// the real user logs in at that interval, and the attacker never starts a lockout that
/// would keep the owner out then (so the owner's success resets what it resets: the
/// attacker's best pacing against a user who logs in regularly).
fn attack(
    e: &Enrollment,
    limits: &Limits,
    duration: u64,
    owner: Option<Owner>,
    addresses: u32,
    seed: u64,
) -> Attack {
    let enrolled = EnrollmentRef::new(e, FILE, Custody::User);
    let mut rng = Rng::seeded(seed);
    let mut state = State::default();
    let mut now = START;
    let end = START + duration;
    let owner_source = match owner {
        Some(Owner {
            same_source: true, ..
        }) => attacker_source(0),
        _ => Source::from_rhost("192.0.2.1"),
    };
    let mut next_owner_login = owner.map(|o| START + o.every);
    let mut result = Attack {
        guesses: 0,
        expected_successes: 0.0,
        successes: 0,
    };
    let space = 10f64.powi(e.digits as i32);
    while now < end {
        let unlocked = (0..addresses)
            .map(attacker_source)
            .find(|s| state.lock_for(s, Custody::User, now).is_none());
        if let (Some(login_at), Some(owner)) = (next_owner_login, owner) {
            let blocks = unlocked.as_ref().is_some_and(|s| {
                would_block_owner(&state, limits, s, &owner_source, now, login_at)
            });
            if now >= login_at || blocks {
                // Wait for the owner's login, which succeeds and resets what it resets.
                now = now.max(login_at);
                let right = &acceptable_codes(e, &state, limits, now)[0];
                let d = decide(&enrolled, &owner_source, &state, limits, right, now);
                assert!(
                    matches!(d.verdict, Verdict::Accepted(_)),
                    "owner refused: {d:?}"
                );
                state = d.state;
                next_owner_login = Some(login_at + owner.every);
                now += 1; // the attacker's next guess comes after it
                continue;
            }
        }
        let Some(source) = unlocked else {
            // Every address is locked: wait for the first lock to end (or the owner).
            let first_unlock = (0..addresses)
                .filter_map(|n| state.lock_for(&attacker_source(n), Custody::User, now))
                .map(|lock| lock.until)
                .min()
                .expect("some address is locked");
            now = next_owner_login.map_or(first_unlock, |at| first_unlock.min(at));
            continue;
        };
        let acceptable = acceptable_codes(e, &state, limits, now);
        let guess = format_code((rng.next() % space as u64) as u32, e.digits);
        let d = decide(&enrolled, &source, &state, limits, &guess, now);
        match d.verdict {
            Verdict::Locked(_) => unreachable!("the address was checked unlocked"),
            Verdict::Accepted(_) => {
                assert!(
                    acceptable.contains(&guess),
                    "accepted a code outside the set"
                );
                result.successes += 1;
            }
            Verdict::Rejected { .. } | Verdict::Replayed(_) | Verdict::NoRoom => {
                assert!(
                    !acceptable.contains(&guess),
                    "refused a code inside the set"
                );
            }
        }
        // Spot-check that the set is exactly what decide accepts at this moment.
        if result.guesses.is_multiple_of(97) {
            for code in &acceptable {
                let check = decide(&enrolled, &source, &state, limits, code, now);
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
    let attack = attack(&e, &limits, YEAR, None, 1, 0x5eed_0001);
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
    let attack = attack(&e, &Limits::default(), 10 * YEAR, None, 1, 0x5eed_0002);
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
    let owner = Owner {
        every: DAY,
        same_source: true,
    };
    let attack = attack(&e, &Limits::default(), YEAR, Some(owner), 1, 0x5eed_0003);
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
    let attack = attack(&e, &Limits::default(), YEAR, None, 1, 0x5eed_0004);
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
    let enrolled = EnrollmentRef::new(&e, FILE, Custody::User);
    let source = attacker_source(0);
    let mut state = State::default();
    for i in 0..1000 {
        state = decide(&enrolled, &source, &state, &limits, "000000", START + i).state;
    }
    assert_eq!(state.lock_for(&source, Custody::User, START + 1000), None);
    let per_year_at_one_a_second = YEAR as f64 * 3.0 / 1e6;
    assert!(per_year_at_one_a_second > 90.0);
}

#[test]
fn many_addresses_are_held_by_the_user_wide_ceiling() {
    // Unlimited addresses (more than the table remembers): each user-wide lockout comes
    // after max_failures_user (20) guesses, so the formula holds with 20 for 5.
    let e = totp_enrollment();
    let attack = attack(&e, &Limits::default(), YEAR, None, 200, 0x5eed_0005);
    let guesses = formula_guesses(20, 60, 86_400, YEAR);
    eprintln!("many addresses, one year: {attack:?}; formula {guesses} guesses");
    assert_eq!(guesses, 7500);
    assert_close(
        attack.guesses as f64,
        guesses as f64,
        0.01,
        "guesses per year",
    );
    assert_close(
        attack.expected_successes,
        guesses as f64 * 3.0 / 1e6,
        0.01,
        "expected successes per year",
    );
}

#[test]
fn many_addresses_around_a_daily_owner_login() {
    // The owner's daily success (from an address of their own) resets the user-wide
    // doubling: 10 batches of 20 a day (user lockouts end at 61380 s), then 19 guesses
    // that stop short of the 11th: 219 guesses a day.
    let e = totp_enrollment();
    let owner = Owner {
        every: DAY,
        same_source: false,
    };
    let attack = attack(&e, &Limits::default(), YEAR, Some(owner), 200, 0x5eed_0006);
    eprintln!("many addresses, daily owner login, one year: {attack:?}");
    assert_close(
        attack.guesses as f64,
        365.0 * 219.0,
        0.01,
        "guesses per year",
    );
}

#[test]
fn one_address_gains_nothing_from_the_owner_logging_in_elsewhere() {
    // The owner's success clears the user-wide tally and the owner's own source, not the
    // attacker's: the attacker's address keeps doubling as if the owner never came.
    let e = totp_enrollment();
    let owner = Owner {
        every: DAY,
        same_source: false,
    };
    let attack = attack(&e, &Limits::default(), YEAR, Some(owner), 1, 0x5eed_0007);
    eprintln!("one address, daily owner login elsewhere, one year: {attack:?}");
    assert_close(
        attack.guesses as f64,
        formula_guesses(5, 60, 86_400, YEAR) as f64,
        0.01,
        "guesses per year",
    );
}

/// One attacking address guessing as fast as it may for a year; the owner, from another
/// address, is locked out only by the user-wide ceiling. With `owner_returns`, the owner
/// logs in as soon as each user-wide lockout ends (which resets its doubling). Returns the
/// number of user-wide lockouts and the seconds they kept the owner out.
fn owner_exposure_to_one_address(owner_returns: bool) -> (u32, u64) {
    let e = totp_enrollment();
    let limits = Limits::default();
    let enrolled = EnrollmentRef::new(&e, FILE, Custody::User);
    let (attacker, owner) = (attacker_source(0), Source::from_rhost("192.0.2.1"));
    let mut state = State::default();
    let mut now = START;
    let (mut lockouts, mut seconds) = (0, 0);
    while now < START + YEAR {
        if owner_returns && state.all.user.lockouts > 0 && !state.all.user.is_locked(now) {
            let right = &acceptable_codes(&e, &state, &limits, now)[0];
            let d = decide(&enrolled, &owner, &state, &limits, right, now);
            assert!(matches!(d.verdict, Verdict::Accepted(_)), "{d:?}");
            state = d.state;
        }
        match state.lock_for(&attacker, Custody::User, now) {
            Some(lock) => {
                let next = if owner_returns && state.all.user.is_locked(now) {
                    lock.until.min(state.all.user.locked_until)
                } else {
                    lock.until
                };
                if let Some(owner_lock) = state.lock_for(&owner, Custody::User, now) {
                    seconds += owner_lock.until.min(next) - now;
                }
                now = next;
            }
            None => {
                let d = decide(&enrolled, &attacker, &state, &limits, "000000x", now);
                lockouts += u32::from(d.state.all.user.is_locked(now));
                state = d.state;
            }
        }
    }
    (lockouts, seconds)
}

#[test]
fn the_owners_exposure_to_one_address() {
    let (lockouts, seconds) = owner_exposure_to_one_address(false);
    eprintln!("one address, owner away: {lockouts} user-wide lockouts, {seconds} s");
    // 1875 guesses = 93 user-wide lockouts (every 20th failure), doubling from 60 s to the
    // cap: 60 * (2^11 - 1) + 82 * 86400 = 7 207 620 s, about 83 days.
    assert_eq!((lockouts, seconds), (93, 7_207_620));
    let (lockouts, seconds) = owner_exposure_to_one_address(true);
    eprintln!("one address, owner returns: {lockouts} user-wide lockouts, {seconds} s");
    // Each return resets the doubling: 93 lockouts of 60 s.
    assert_eq!((lockouts, seconds), (93, 93 * 60));
}

#[test]
fn a_year_against_the_store_with_home_successes_between_every_guess() {
    // Malware running as the user, with the password, guesses the store's code through
    // sudo (source "local") and, after every lockout, logs in with a right code
    // from the user's own HOTP file, which it can write. Those successes clear what
    // guards the user's own file, never the store's tallies: the store still gives one
    // source's 1 875 guesses a year.
    let store = totp_enrollment();
    let home = Enrollment::parse(&format!("type = \"hotp\"\nsecret = \"{SECRET}\"")).unwrap();
    let store_ref = EnrollmentRef::new(
        &store,
        "/var/lib/pam-otp/secrets/victim.toml",
        Custody::Administrator,
    );
    let home_ref = EnrollmentRef::new(&home, FILE, Custody::User);
    let limits = Limits::default();
    let local = Source::from_rhost("");
    let mut rng = Rng::seeded(0x5eed_0021);
    let mut state = State::default();
    let (mut now, end) = (START, START + YEAR);
    let (mut guesses, mut expected, mut home_successes) = (0u64, 0f64, 0u64);
    while now < end {
        if let Some(lock) = state.lock_for(&local, Custody::Administrator, now) {
            // Store failures count on the home file's tallies too: wait them out, then
            // clear those with a home success.
            now = lock.until;
            let right = &acceptable_codes(&home, &state, &limits, now)[0];
            let d = decide(&home_ref, &local, &state, &limits, right, now);
            assert!(matches!(d.verdict, Verdict::Accepted(_)), "{d:?}");
            assert_eq!(
                d.state.protected, state.protected,
                "a home success lowered the store's tallies"
            );
            state = d.state;
            home_successes += 1;
            continue;
        }
        let acceptable = acceptable_codes(&store, &state, &limits, now);
        let guess = format_code((rng.next() % 1_000_000) as u32, 6);
        expected += acceptable.len() as f64 / 1e6;
        let d = decide(&store_ref, &local, &state, &limits, &guess, now);
        assert!(!matches!(d.verdict, Verdict::Locked(_)));
        guesses += 1;
        state = d.state;
        now += 1;
    }
    let formula = formula_guesses(5, 60, 86_400, YEAR);
    eprintln!(
        "store attacked with home successes, one year: {guesses} guesses, E = {expected}, {home_successes} home successes; formula {formula}"
    );
    assert!(home_successes > 300, "{home_successes}");
    assert_close(guesses as f64, formula as f64, 0.01, "guesses per year");
    assert!((0.0055..0.0058).contains(&expected), "{expected}");
}
