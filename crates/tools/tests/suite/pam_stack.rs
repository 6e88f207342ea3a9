//! The module driven through real libpam by `pamtester`, with codes from `oathtool`.
//!
//! Run as root after `cargo build` (the tests need the cdylib and write
//! `/etc/pam.d` files and test users).

use crate::support;

use std::fs;
use std::io::Write;
use support::*;

/// Asserts that the login fails closed with PAM_AUTHINFO_UNAVAIL both without and with
/// `nullok` (followed by pam_permit), even though `answer` is a right code.
#[track_caller]
fn assert_refused_even_with_nullok(fx: &Fixture, answer: &str, what: &str) {
    let strict = Service::otp_then_permit(&fx.state, "");
    fx.login(&strict, answer)
        .assert_failure(AUTHINFO_UNAVAIL, &format!("{what}, without nullok"));
    let lenient = Service::otp_then_permit(&fx.state, "nullok");
    fx.login(&lenient, answer)
        .assert_failure(AUTHINFO_UNAVAIL, &format!("{what}, with nullok"));
}

// ---- TOTP basics ----

#[test]
fn right_totp_code_succeeds() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let out = fx.login(&service, &totp(&fx.secret));
    out.assert_success("right code");
    assert!(
        out.prompted(DEFAULT_PROMPT),
        "default prompt {DEFAULT_PROMPT:?} not shown: {out:?}"
    );
    assert!(
        fx.state.state_file(&fx.user.name).exists(),
        "no state file {} after a login",
        fx.state.state_file(&fx.user.name).display()
    );
}

#[test]
fn wrong_totp_code_fails() {
    let fx = Fixture::totp();
    let service = fx.service("");
    fx.login(&service, &wrong_totp(&fx.secret))
        .assert_failure(AUTH_ERR, "wrong code");
    // And the right code still works afterwards: the failure was about the code.
    fx.login(&service, &totp(&fx.secret))
        .assert_success("right code after a wrong one");
}

#[test]
fn answer_that_is_not_a_code_fails() {
    let fx = Fixture::totp();
    let service = fx.service("max_failures=10");
    for answer in ["hello", "", "12345", "1234567", "12 34 56"] {
        fx.login(&service, answer)
            .assert_failure(AUTH_ERR, &format!("answer {answer:?}"));
    }
    fx.login(&service, &totp(&fx.secret))
        .assert_success("the right code afterwards");
}

#[test]
fn code_with_surrounding_whitespace_is_accepted() {
    let fx = Fixture::totp();
    let service = fx.service("");
    fx.login(&service, &format!("  {}\t ", totp(&fx.secret)))
        .assert_success("right code with surrounding white space");
}

#[test]
fn same_code_twice_is_refused_the_second_time() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let code = totp(&fx.secret);
    fx.login(&service, &code).assert_success("first use");
    fx.login(&service, &code)
        .assert_failure(AUTH_ERR, "the same code again (replay)");
}

#[test]
fn older_code_is_refused_after_a_newer_one() {
    let fx = Fixture::totp();
    let service = fx.service("");
    wait_for_step_margin(8);
    let t = now();
    let current = totp_at(&fx.secret, t, &[]);
    let previous = totp_at(&fx.secret, t - 30, &[]);
    fx.login(&service, &current).assert_success("current code");
    fx.login(&service, &previous)
        .assert_failure(AUTH_ERR, "previous step's code after the current one");
}

#[test]
fn previous_step_code_is_accepted() {
    let fx = Fixture::totp();
    let service = fx.service("");
    wait_for_step_margin(8);
    let code = totp_at(&fx.secret, now() - 30, &[]);
    fx.login(&service, &code)
        .assert_success("code of the previous step (window=1)");
}

#[test]
fn five_steps_old_code_is_refused() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let code = totp_at(&fx.secret, now() - 150, &[]);
    fx.login(&service, &code)
        .assert_failure(AUTH_ERR, "code from five steps ago");
    fx.login(&service, &totp(&fx.secret))
        .assert_success("the current code afterwards");
}

#[test]
fn wider_window_accepts_an_older_code() {
    let fx = Fixture::totp();
    let narrow = fx.service("window=1");
    let wide = fx.service("window=5");
    wait_for_step_margin(8);
    let code = totp_at(&fx.secret, now() - 120, &[]);
    fx.login(&narrow, &code)
        .assert_failure(AUTH_ERR, "four steps old with window=1");
    fx.login(&wide, &code)
        .assert_success("four steps old with window=5");
}

#[test]
fn policy_file_applies_and_module_arguments_win() {
    let fx = Fixture::totp();
    fs::write(&fx.state.policy, "window = 5\n").unwrap();
    let from_file = fx.service("");
    let overridden = fx.service("window=1");
    wait_for_step_margin(8);
    let code = totp_at(&fx.secret, now() - 120, &[]);
    fx.login(&overridden, &code).assert_failure(
        AUTH_ERR,
        "four steps old, policy window = 5, argument window=1",
    );
    fx.login(&from_file, &code)
        .assert_success("four steps old, policy file window = 5");
}

#[test]
fn code_from_a_faked_later_clock_is_accepted() {
    // The client's clock (libfaketime) is what the module goes by.
    let fx = Fixture::totp();
    let service = fx.service("");
    let later = totp_at(&fx.secret, now() + 600, &[]);
    fx.login(&service, &later)
        .assert_failure(AUTH_ERR, "code of ten minutes from now, real clock");
    fx.login_at(&service, &later, "+600s")
        .assert_success("code of ten minutes from now, clock 10 minutes ahead");
}

#[test]
fn after_the_clock_went_back_a_current_code_is_refused_with_the_reason() {
    // A login while the clock read an hour ahead spent that hour's step; back at the real
    // time every current code is a step at or before it. Refused, as a replay must be, but
    // the person is told that the clock went back, and the log says what to do.
    let fx = Fixture::totp();
    let service = fx.service("");
    let ahead = totp_at(&fx.secret, now() + 3600, &[]);
    fx.login_at(&service, &ahead, "+3600s")
        .assert_success("a code of an hour from now, clock an hour ahead");
    let run = crate::support::hostile::run_logged(&service, &fx.user.name, &totp(&fx.secret), None);
    let out = &run.outcome;
    out.assert_failure(AUTH_ERR, "the current code, clock back at the real time");
    assert!(
        out.stderr.contains("clock is")
            && out.stderr.contains("behind the time of an earlier login"),
        "the person is not told the clock went back: {out:?}"
    );
    assert!(!out.stderr.contains("already used"), "{out:?}");
    run.assert_logged(
        &["the clock went back", "otp-admin reset", &fx.user.name],
        "the clock went back",
    );
}

// ---- lockout ----

#[test]
fn lockout_after_max_failures_and_recovery_after_it_expires() {
    let fx = Fixture::totp();
    let service = fx.service("max_failures=3 lockout=60");
    let wrong = wrong_totp(&fx.secret);
    for i in 1..=3 {
        fx.login(&service, &wrong)
            .assert_failure(AUTH_ERR, &format!("wrong code #{i}"));
    }
    // Locked: even the right code is refused, and no code is asked for.
    let out = fx.login(&service, &totp(&fx.secret));
    out.assert_failure(LOCKED, "right code while locked");
    assert!(
        !out.prompted(DEFAULT_PROMPT),
        "a locked user was still asked for a code: {out:?}"
    );
    // Still locked 30 s later.
    let code = totp_at(&fx.secret, now() + 30, &[]);
    fx.login_at(&service, &code, "+30s")
        .assert_failure(LOCKED, "right code 30 s into a 60 s lockout");
    // Works again once the lockout has expired.
    let code = totp_at(&fx.secret, now() + 90, &[]);
    fx.login_at(&service, &code, "+90s")
        .assert_success("right code 90 s after a 60 s lockout");
    // The success reset the failure count: one wrong code is a plain failure.
    fx.login_at(&service, &wrong_totp(&fx.secret), "+90s")
        .assert_failure(AUTH_ERR, "one wrong code after the success");
}

#[test]
fn failures_below_max_failures_do_not_lock() {
    let fx = Fixture::totp();
    let service = fx.service("max_failures=3 lockout=60");
    let wrong = wrong_totp(&fx.secret);
    for i in 1..=2 {
        fx.login(&service, &wrong)
            .assert_failure(AUTH_ERR, &format!("wrong code #{i}"));
    }
    fx.login(&service, &totp(&fx.secret))
        .assert_success("right code after two of three allowed failures");
}

// ---- concurrency ----

#[test]
fn twenty_concurrent_logins_with_one_code_succeed_exactly_once() {
    let fx = Fixture::totp();
    // Enough allowed failures that the 19 losers are plain failures, not a lockout.
    let service = fx.service("max_failures=100");
    let mut children: Vec<_> = (0..20)
        .map(|_| spawn_pamtester(&service, &fx.user.name, None))
        .collect();
    let code = totp(&fx.secret);
    // All 20 are waiting at the prompt; answer them all, then collect.
    for child in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(format!("{code}\n").as_bytes());
    }
    let outcomes: Vec<Outcome> = children.into_iter().map(|c| finish(c, "")).collect();
    let successes = outcomes.iter().filter(|o| o.succeeded()).count();
    assert_eq!(
        successes, 1,
        "one code raced by 20 logins must be accepted exactly once: {outcomes:#?}"
    );
    for o in outcomes.iter().filter(|o| !o.succeeded()) {
        o.assert_failure(AUTH_ERR, "a losing racer");
    }
}

// ---- not enrolled ----

#[test]
fn unenrolled_user_with_nullok_passes_through() {
    let fx = Fixture::unenrolled();
    let stack = Service::otp_then_permit(&fx.state, "nullok");
    let out = fx.login(&stack, "");
    out.assert_success("no ~/.otp.toml, nullok, then pam_permit");
    assert!(
        !out.prompted(DEFAULT_PROMPT),
        "an unenrolled user was asked for a code: {out:?}"
    );
    // Alone, the module's PAM_IGNORE leaves libpam with no decision: not a success.
    let alone = fx.service("nullok");
    fx.login(&alone, "").assert_failure(
        PERM_DENIED,
        "no ~/.otp.toml, nullok, module alone (PAM_IGNORE)",
    );
}

#[test]
fn unenrolled_user_without_nullok_is_refused() {
    let fx = Fixture::unenrolled();
    let stack = Service::otp_then_permit(&fx.state, "");
    fx.login(&stack, "123456")
        .assert_failure(AUTHINFO_UNAVAIL, "no ~/.otp.toml, no nullok");
}

// ---- broken enrollment files (files of the wrong kind, owner or mode: hostile.rs) ----

#[test]
fn garbage_enrollment_is_refused() {
    let fx = Fixture::unenrolled();
    fx.user
        .write_file(".otp.toml", b"\x00\xff this is [[[ not toml\n\x7f", 0o600);
    assert_refused_even_with_nullok(&fx, "123456", "~/.otp.toml is garbage");
}

#[test]
fn enrollment_with_unknown_key_is_refused() {
    let secret = new_secret();
    let toml = format!("{}colour = \"blue\"\n", totp_enrollment(&secret));
    let fx = Fixture::with_enrollment(&secret, &toml);
    assert_refused_even_with_nullok(&fx, &totp(&secret), "~/.otp.toml with an unknown key");
}

#[test]
fn enrollment_with_bad_base32_is_refused() {
    let fx = Fixture::with_enrollment("", &totp_enrollment("NOT-BASE32!!0189"));
    assert_refused_even_with_nullok(&fx, "123456", "~/.otp.toml with a bad base32 secret");
}

#[test]
fn enrollment_with_too_short_secret_is_refused() {
    // 40 bits, below the 80-bit minimum; oathtool still makes codes for it.
    let secret = base32(&random_bytes(5));
    let fx = Fixture::with_enrollment(&secret, &totp_enrollment(&secret));
    assert_refused_even_with_nullok(&fx, &totp(&secret), "~/.otp.toml with a 40-bit secret");
}

#[test]
fn enrollment_with_out_of_range_digits_is_refused() {
    let secret = new_secret();
    let toml = format!("{}digits = 5\n", totp_enrollment(&secret));
    let fx = Fixture::with_enrollment(&secret, &toml);
    // A d-digit code is the value mod 10^d: the 5-digit code ends the 6-digit one.
    wait_for_step_margin(5);
    let six = totp(&secret);
    assert_refused_even_with_nullok(&fx, &six[1..], "~/.otp.toml with digits = 5");
}

// ---- HOTP ----

fn hotp_fixture(counter: u64) -> Fixture {
    let secret = new_secret();
    let toml =
        format!("version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\ncounter = {counter}\n");
    Fixture::with_enrollment(&secret, &toml)
}

#[test]
fn hotp_codes_in_order_are_accepted() {
    let fx = hotp_fixture(0);
    let service = fx.service("");
    for c in 0..4 {
        fx.login(&service, &hotp(&fx.secret, c))
            .assert_success(&format!("HOTP counter {c}"));
    }
}

#[test]
fn hotp_skipped_ahead_within_lookahead_is_accepted() {
    let fx = hotp_fixture(0);
    let service = fx.service("");
    // Default look-ahead 10: counter 7 while the next expected is 0.
    fx.login(&service, &hotp(&fx.secret, 7))
        .assert_success("HOTP counter 7 with next = 0, look-ahead 10");
    fx.login(&service, &hotp(&fx.secret, 8))
        .assert_success("HOTP counter 8 right after 7");
}

#[test]
fn hotp_beyond_lookahead_is_refused() {
    let fx = hotp_fixture(0);
    let service = fx.service("hotp_lookahead=3");
    fx.login(&service, &hotp(&fx.secret, 4))
        .assert_failure(AUTH_ERR, "HOTP counter 4 with next = 0, look-ahead 3");
    fx.login(&service, &hotp(&fx.secret, 3))
        .assert_success("HOTP counter 3 with next = 0, look-ahead 3");
}

#[test]
fn hotp_old_counter_is_refused() {
    let fx = hotp_fixture(0);
    let service = fx.service("");
    fx.login(&service, &hotp(&fx.secret, 0))
        .assert_success("HOTP counter 0");
    fx.login(&service, &hotp(&fx.secret, 5))
        .assert_success("HOTP counter 5");
    for c in [0, 3, 5] {
        fx.login(&service, &hotp(&fx.secret, c))
            .assert_failure(AUTH_ERR, &format!("old HOTP counter {c} after 5"));
    }
    fx.login(&service, &hotp(&fx.secret, 6))
        .assert_success("HOTP counter 6");
}

#[test]
fn hotp_starts_at_the_enrolled_counter() {
    let fx = hotp_fixture(20);
    let service = fx.service("");
    fx.login(&service, &hotp(&fx.secret, 2))
        .assert_failure(AUTH_ERR, "HOTP counter 2 when enrolled at 20");
    fx.login(&service, &hotp(&fx.secret, 20))
        .assert_success("HOTP counter 20 when enrolled at 20");
}

// ---- recovery codes ----

#[test]
fn recovery_code_works_once() {
    let secret = new_secret();
    let first = "k7p2-9xqm-4rtv";
    let second = "hw3n-c8da-qz5e";
    let toml = format!(
        "{}recovery_codes = [\"{}\", \"{}\"]\n",
        totp_enrollment(&secret),
        recovery_hash(first),
        recovery_hash(second)
    );
    let fx = Fixture::with_enrollment(&secret, &toml);
    let service = fx.service("");

    let out = fx.login(&service, first);
    out.assert_success("first recovery code");
    let info: String = out
        .stdout
        .lines()
        .filter(|l| !l.contains("successfully authenticated"))
        .collect();
    assert!(
        info.contains('1'),
        "no PAM_TEXT_INFO saying 1 recovery code remains: {out:?}"
    );
    fx.login(&service, first)
        .assert_failure(AUTH_ERR, "first recovery code again");

    // Any spelling of the second one: upper case, spaces instead of dashes.
    let out = fx.login(&service, "HW3N C8DA QZ5E");
    out.assert_success("second recovery code, other spelling");
    let info: String = out
        .stdout
        .lines()
        .filter(|l| !l.contains("successfully authenticated"))
        .collect();
    assert!(
        info.contains('0') || info.to_lowercase().contains("no "),
        "no PAM_TEXT_INFO saying no recovery codes remain: {out:?}"
    );
    fx.login(&service, second)
        .assert_failure(AUTH_ERR, "second recovery code again");
    fx.login(&service, "zzzz-zzzz-zzzz")
        .assert_failure(AUTH_ERR, "a recovery code that was never issued");
    // TOTP is unaffected.
    fx.login(&service, &totp(&secret))
        .assert_success("TOTP code after the recovery codes are spent");
}

// ---- algorithms and digits ----

fn assert_algorithm_with_8_digits(algorithm: &str, oath_mode: &str) {
    let secret = new_secret();
    let toml = format!(
        "{}algorithm = \"{algorithm}\"\ndigits = 8\n",
        totp_enrollment(&secret)
    );
    let fx = Fixture::with_enrollment(&secret, &toml);
    let service = fx.service("");
    let right = oathtool(&[oath_mode, "--digits=8", "-b", &secret]);
    assert_eq!(right.len(), 8);
    let six = oathtool(&[oath_mode, "-b", &secret]);
    fx.login(&service, &six).assert_failure(
        AUTH_ERR,
        &format!("{algorithm}: a 6-digit code for 8 digits"),
    );
    let sha1 = oathtool(&["--totp", "--digits=8", "-b", &secret]);
    if sha1 != right {
        fx.login(&service, &sha1)
            .assert_failure(AUTH_ERR, &format!("{algorithm}: the SHA1 8-digit code"));
    }
    fx.login(&service, &right)
        .assert_success(&format!("{algorithm}: the right 8-digit code"));
}

#[test]
fn sha256_with_8_digits() {
    assert_algorithm_with_8_digits("SHA256", "--totp=sha256");
}

#[test]
fn sha512_with_8_digits() {
    assert_algorithm_with_8_digits("SHA512", "--totp=sha512");
}

// ---- module arguments, prompt, users ----

#[test]
fn unknown_module_argument_is_a_service_error() {
    let fx = Fixture::totp();
    let service = fx.service("frobnicate=1");
    fx.login(&service, &totp(&fx.secret))
        .assert_failure(SERVICE_ERR, "unknown argument frobnicate=1");
}

#[test]
fn malformed_module_argument_is_a_service_error() {
    let fx = Fixture::totp();
    for args in ["window=abc", "max_failures=-1", "lockout="] {
        let service = fx.service(args);
        fx.login(&service, &totp(&fx.secret))
            .assert_failure(SERVICE_ERR, &format!("malformed argument {args}"));
    }
}

#[test]
fn custom_prompt_is_shown() {
    let fx = Fixture::totp();
    let service = fx.service("[prompt=Your token please: ]");
    let out = fx.login(&service, &totp(&fx.secret));
    out.assert_success("right code with a custom prompt");
    assert!(
        out.prompted("Your token please: "),
        "custom prompt not shown: {out:?}"
    );
    assert!(
        !out.prompted(DEFAULT_PROMPT),
        "default prompt shown despite prompt=: {out:?}"
    );
}

#[test]
fn nonexistent_user_is_refused() {
    let state = StateDir::new();
    let name = unique("potnosuch");
    let exists = std::process::Command::new("getent")
        .args(["passwd", &name])
        .status()
        .unwrap()
        .success();
    assert!(!exists, "user {name} unexpectedly exists");
    let service = Service::otp(&state, "");
    run_pamtester(&service, &name, "123456", None)
        .assert_failure(USER_UNKNOWN, "a user that does not exist");
    let lenient = Service::otp_then_permit(&state, "nullok");
    let out = run_pamtester(&lenient, &name, "123456", None);
    assert!(
        !out.succeeded(),
        "a user that does not exist passed with nullok: {out:?}"
    );
}

// ---- pam_unix around pam_otp: the password and the code in PAM_AUTHTOK ----

/// Sets the test user's Unix password (pam_unix checks it after pam_otp).
fn set_password(user: &str, password: &str) {
    let mut child = std::process::Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{user}:{password}").unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd failed");
}

#[test]
fn forward_pass_is_refused_as_an_unknown_argument() {
    // The one-line stack that checked the code before pam_unix checked the password:
    // split_pass + use_split_code replace it, and the old line fails closed, like any
    // argument the module does not know, rather than quietly asking for a code alone.
    let fx = Fixture::totp();
    set_password(&fx.user.name, "Correct-Horse-9");
    let code = totp(&fx.secret);
    for arg in ["forward_pass", "forward_pass=true"] {
        let service = Service::with_lines(&[
            otp_line(&fx.state, arg),
            "auth required pam_unix.so use_first_pass".to_string(),
        ]);
        let out = fx.login(&service, &format!("Correct-Horse-9{code}"));
        out.assert_failure(SERVICE_ERR, &format!("{arg}: the right password and code"));
        assert!(
            !out.prompted("Password and verification code: "),
            "{arg}: asked for a password and code: {out:?}"
        );
    }
    // Nothing was checked, so the code is still unspent.
    fx.login(&fx.service(""), &code)
        .assert_success("the code the refused lines never checked");
}

#[test]
fn use_first_pass_takes_the_code_from_an_earlier_module() {
    let fx = Fixture::totp();
    // pam_unix asks "Password: " and leaves the answer in PAM_AUTHTOK; making the
    // password the current code lets one answer satisfy both modules.
    let code = totp(&fx.secret);
    set_password(&fx.user.name, &code);
    let service = Service::with_lines(&[
        "auth required pam_unix.so".to_string(),
        otp_line(&fx.state, "use_first_pass"),
    ]);
    let out = fx.login(&service, &code);
    out.assert_success("the code taken from PAM_AUTHTOK");
    assert!(
        !out.prompted(DEFAULT_PROMPT),
        "use_first_pass must not ask: {out:?}"
    );
    // The same token again is a replay.
    fx.login(&service, &code)
        .assert_failure(AUTH_ERR, "the same code again through use_first_pass");
}

#[test]
fn try_first_pass_asks_when_the_earlier_token_is_not_a_code() {
    let fx = Fixture::totp();
    set_password(&fx.user.name, "Correct-Horse-9");
    let service = Service::with_lines(&[
        "auth required pam_unix.so".to_string(),
        otp_line(&fx.state, "try_first_pass"),
    ]);
    let code = totp(&fx.secret);
    let out = fx.login(&service, &format!("Correct-Horse-9\n{code}"));
    out.assert_success("password, then the code asked for");
    assert!(
        out.prompted(DEFAULT_PROMPT),
        "the code must be asked for: {out:?}"
    );
}
