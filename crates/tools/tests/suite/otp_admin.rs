//! otp-admin against real logins: the real binary, the module loaded by real libpam through
//! pamtester, codes from oathtool. Run as root. Users and services are named `ta…`.

use crate::support;
use crate::support::admin;

use std::thread;

use admin::{otp_admin, otp_admin_as, snapshot, Service, StateDir, User};
use support::{
    hotp, new_secret, now, recovery_hash, totp, totp_enrollment, wait_for_step_margin, wrong_totp,
    AUTH_ERR, LOCKED,
};

/// A user enrolled for TOTP, and the secret.
fn totp_user() -> (User, String) {
    let user = User::new();
    let secret = new_secret();
    user.enroll(&totp_enrollment(&secret));
    (user, secret)
}

/// Two wrong codes with `max_failures=2`: the user is locked for `lockout` seconds.
fn lock(service: &Service, user: &User, secret: &str) {
    let wrong = wrong_totp(secret);
    service
        .login(user, &wrong)
        .assert_failure(AUTH_ERR, "first wrong code");
    service
        .login(user, &wrong)
        .assert_failure(AUTH_ERR, "second wrong code (starts the lockout)");
}

fn status_json(state: &StateDir, user: &User) -> serde_json::Value {
    let run = otp_admin(&["--state-dir", &state.arg(), "status", &user.name, "--json"]);
    run.assert_ok("status --json");
    run.json()
}

#[test]
fn ta_status_of_a_locked_user_shows_the_lock() {
    let user = User::new();
    let secret = new_secret();
    let codes = ["ta-recovery-one", "ta-recovery-two"];
    user.enroll(&format!(
        "{}recovery_codes = [\"{}\", \"{}\"]\n",
        totp_enrollment(&secret),
        recovery_hash(codes[0]),
        recovery_hash(codes[1])
    ));
    let state = StateDir::new();
    let service = Service::new(&state, "max_failures=2 lockout=600");
    service
        .login(&user, codes[0])
        .assert_success("recovery code");
    let locked_at = now();
    lock(&service, &user, &secret);
    wait_for_step_margin(3);
    service
        .login(&user, &totp(&secret))
        .assert_failure(LOCKED, "right code while locked");

    let run = otp_admin(&["--state-dir", &state.arg(), "status", &user.name]);
    run.assert_ok("status");
    println!("otp-admin status {}:\n{}", user.name, run.stdout);
    let locked_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("locked:"))
        .unwrap_or_else(|| panic!("no locked: line\n{}", run.stdout));
    assert!(locked_line.contains("YES, until"), "{locked_line}");
    assert!(
        run.stdout.contains("TOTP, SHA1, 6 digits, 30 s period"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 of 2 left"), "{}", run.stdout);
    assert!(
        !run.stdout.contains(&secret),
        "secret shown: {}",
        run.stdout
    );

    let json = status_json(&state, &user);
    assert_eq!(json["locked"], true, "{json}");
    let until = json["locked_until"].as_i64().expect("locked_until");
    assert!(
        (locked_at + 600..=now() + 600).contains(&until),
        "locked_until {until} is not about 600 s after {locked_at}: {json}"
    );
    // pamtester sets no PAM_RHOST: the source "local" is locked, not the user everywhere.
    assert_eq!(json["user_locked"], false, "{json}");
    assert_eq!(json["sources"][0]["source"], "local", "{json}");
    assert_eq!(json["sources"][0]["locked"], true, "{json}");
    assert_eq!(json["sources"][0]["lockouts"], 1, "{json}");
    assert!(
        run.stdout.contains("locked source:") && run.stdout.contains("local until"),
        "{}",
        run.stdout
    );
    assert_eq!(json["type"], "totp", "{json}");
    assert_eq!(json["algorithm"], "SHA1", "{json}");
    assert_eq!(json["enrollment"], "enrolled", "{json}");
    assert_eq!(json["recovery_codes_left"], 1, "{json}");
    assert!(
        json["last_login"].as_i64().unwrap() >= locked_at - 5,
        "{json}"
    );
    assert!(!json.to_string().contains(&secret), "secret shown: {json}");
}

#[test]
fn ta_unlock_lets_the_right_code_in_again() {
    let (user, secret) = totp_user();
    let state = StateDir::new();
    let service = Service::new(&state, "max_failures=2 lockout=600");
    lock(&service, &user, &secret);
    wait_for_step_margin(5);
    let code = totp(&secret);
    service
        .login(&user, &code)
        .assert_failure(LOCKED, "right code while locked");

    let run = otp_admin(&["--state-dir", &state.arg(), "unlock", &user.name]);
    run.assert_ok("unlock");
    assert!(run.stdout.contains("unlocked"), "{run:#?}");
    let json = status_json(&state, &user);
    assert_eq!(json["locked"], false, "{json}");
    assert_eq!(json["failures"], 0, "{json}");
    assert_eq!(json["lockouts"], 0, "{json}");

    service
        .login(&user, &code)
        .assert_success("right code after unlock");
}

#[test]
fn ta_unlock_clears_failures_below_the_limit() {
    let (user, secret) = totp_user();
    let state = StateDir::new();
    let service = Service::new(&state, "max_failures=3 lockout=600");
    let wrong = wrong_totp(&secret);
    for n in 1..=2 {
        service
            .login(&user, &wrong)
            .assert_failure(AUTH_ERR, &format!("wrong code {n}"));
    }
    assert_eq!(status_json(&state, &user)["failures"], 2);
    otp_admin(&["--state-dir", &state.arg(), "unlock", &user.name]).assert_ok("unlock");
    assert_eq!(status_json(&state, &user)["failures"], 0);
    // Two more wrong codes do not reach the limit of 3 again: the count started over.
    for n in 3..=4 {
        service
            .login(&user, &wrong)
            .assert_failure(AUTH_ERR, &format!("wrong code {n}"));
    }
    assert_eq!(status_json(&state, &user)["locked"], false);
}

#[test]
fn ta_reset_lets_an_old_hotp_counter_start_over() {
    let user = User::new();
    let secret = new_secret();
    user.enroll(&format!(
        "version = 1\ntype = \"hotp\"\ncounter = 0\nsecret = \"{secret}\"\n"
    ));
    let state = StateDir::new();
    let service = Service::new(&state, "");
    service
        .login(&user, &hotp(&secret, 0))
        .assert_success("HOTP counter 0");
    service
        .login(&user, &hotp(&secret, 1))
        .assert_success("HOTP counter 1");
    service
        .login(&user, &hotp(&secret, 0))
        .assert_failure(AUTH_ERR, "HOTP counter 0 again (spent)");
    assert_eq!(status_json(&state, &user)["next_hotp_counter"], 2);

    let run = otp_admin(&["--state-dir", &state.arg(), "reset", &user.name]);
    run.assert_ok("reset");
    assert!(
        run.stdout.contains("WARNING"),
        "reset must say so: {run:#?}"
    );
    assert!(run.stdout.contains("HOTP counter"), "{run:#?}");
    assert!(!state.state_file(&user.name).exists());

    service
        .login(&user, &hotp(&secret, 0))
        .assert_success("HOTP counter 0 after reset");
    assert_eq!(status_json(&state, &user)["next_hotp_counter"], 1);
}

#[test]
fn ta_reset_removes_a_broken_state_file() {
    let (user, secret) = totp_user();
    let state = StateDir::new();
    let service = Service::new(&state, "");
    std::fs::write(state.state_file(&user.name), "garbage").unwrap();
    wait_for_step_margin(5);
    service
        .login(&user, &totp(&secret))
        .assert_failure(support::AUTHINFO_UNAVAIL, "broken state fails closed");
    let run = otp_admin(&["--state-dir", &state.arg(), "reset", &user.name]);
    run.assert_ok("reset of a broken state");
    assert!(run.stdout.contains("broken state file"), "{run:#?}");
    service
        .login(&user, &totp(&secret))
        .assert_success("login after reset");
}

#[test]
fn ta_bad_input_exits_2_and_changes_nothing() {
    let state = StateDir::new();
    let dir = state.arg();
    let service = Service::new(&state, "max_failures=5");
    // One user with a state (two failures), one enrolled without state, one with a broken state.
    let (with_state, secret) = totp_user();
    for _ in 0..2 {
        service
            .login(&with_state, &wrong_totp(&secret))
            .assert_failure(AUTH_ERR, "wrong code");
    }
    let (no_state, _) = totp_user();
    let (broken, _) = totp_user();
    let broken_state = state.state_file(&broken.name);
    std::fs::write(&broken_state, "version = 1\nfingerprint = 3\n").unwrap();
    let before = snapshot(&state.path);
    assert_eq!(before.len(), 2, "{:?}", before.keys());

    let missing_dir = format!("{dir}/missing");
    let mut cases: Vec<(String, Vec<String>)> = Vec::new();
    let mut case = |what: &str, args: &[&str]| {
        cases.push((what.into(), args.iter().map(|s| s.to_string()).collect()));
    };
    for cmd in ["status", "unlock", "reset"] {
        case(
            &format!("{cmd}: unknown user"),
            &["--state-dir", &dir, cmd, "ta-no-such-user"],
        );
        case(
            &format!("{cmd}: unusable name"),
            &["--state-dir", &dir, cmd, "../etc"],
        );
        case(
            &format!("{cmd}: relative state dir"),
            &["--state-dir", "relative", cmd, &with_state.name],
        );
        case(
            &format!("{cmd}: bad secret template"),
            &[
                "--state-dir",
                &dir,
                "--secret",
                "relative",
                cmd,
                &with_state.name,
            ],
        );
        case(
            &format!("{cmd}: missing policy file"),
            &["--policy", "/nonexistent/ta.toml", cmd, &with_state.name],
        );
        case(&format!("{cmd}: no user"), &["--state-dir", &dir, cmd]);
    }
    for cmd in ["status", "unlock"] {
        case(
            &format!("{cmd}: broken state file"),
            &["--state-dir", &dir, cmd, &broken.name],
        );
    }
    case(
        "unknown command",
        &["--state-dir", &dir, "frobnicate", &with_state.name],
    );
    case(
        "unknown option",
        &[
            "--state-dir",
            &dir,
            "status",
            "--ta-bogus",
            &with_state.name,
        ],
    );

    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = otp_admin(&args);
        let usage_error = what.contains("no user")
            || what.starts_with("unknown c")
            || what.starts_with("unknown o");
        if usage_error {
            // clap's usage errors: exit 2 with a usage message (several lines).
            assert_eq!(run.status, Some(2), "{what}: {run:#?}");
            assert!(run.stderr.contains("Usage:"), "{what}: {run:#?}");
        } else {
            run.assert_refused(what);
        }
        assert_eq!(snapshot(&state.path), before, "{what}: state changed");
        assert!(
            !std::path::Path::new(&missing_dir).exists(),
            "{what}: created the state directory"
        );
    }

    // Not root: each command refused before it looks at anything.
    for cmd in ["status", "unlock", "reset"] {
        let run = otp_admin_as(&no_state, &["--state-dir", &dir, cmd, &with_state.name]);
        run.assert_refused(&format!("{cmd} as a user"));
        assert!(run.stderr.contains("root"), "{run:#?}");
        assert_eq!(
            snapshot(&state.path),
            before,
            "{cmd} as a user: state changed"
        );
    }
    // The refused unlock left the failures in place.
    assert_eq!(status_json(&state, &with_state)["failures"], 2);
}

/// No state (no login recorded yet) leaves unlock and reset nothing to do: that is not
/// an error, so a script that unlocks or resets a list of users does not stop at one.
#[test]
fn ta_unlock_and_reset_with_nothing_to_do_exit_0_and_change_nothing() {
    let state = StateDir::new();
    let dir = state.arg();
    let missing_dir = format!("{dir}/missing");
    let service = Service::new(&state, "max_failures=5");
    let (with_state, secret) = totp_user();
    service
        .login(&with_state, &wrong_totp(&secret))
        .assert_failure(AUTH_ERR, "wrong code");
    let (no_state, _) = totp_user();
    let before = snapshot(&state.path);
    assert_eq!(before.len(), 1, "{:?}", before.keys());

    for (what, state_dir, user) in [
        ("no state file", &dir, &no_state),
        ("no state directory", &missing_dir, &with_state),
    ] {
        for args in [
            vec!["unlock", user.name.as_str()],
            vec!["unlock", user.name.as_str(), "--source", "192.0.2.7"],
            vec!["reset", user.name.as_str()],
        ] {
            let mut all = vec!["--state-dir", state_dir.as_str()];
            all.extend(&args);
            let run = otp_admin(&all);
            let what = format!("{args:?}, {what}");
            assert_eq!(run.status, Some(0), "{what}: {run:#?}");
            assert!(
                run.stdout.starts_with(&format!("{}: ", user.name))
                    && run.stdout.contains("nothing changed")
                    && run.stdout.lines().count() == 1,
                "{what}: {run:#?}"
            );
            assert!(run.stderr.is_empty(), "{what}: {run:#?}");
            assert_eq!(snapshot(&state.path), before, "{what}: state changed");
            assert!(
                !std::path::Path::new(&missing_dir).exists(),
                "{what}: created the state directory"
            );
        }
    }
    assert_eq!(status_json(&state, &with_state)["failures"], 1);
}

#[test]
fn ta_runs_concurrently_with_logins_without_corrupting_state() {
    let (user, secret) = totp_user();
    let state = StateDir::new();
    let service = Service::new(&state, "max_failures=1000 max_failures_user=0 lockout=60");
    let wrong = wrong_totp(&secret);
    let logins = 12;

    // Phase 1: reads under the lock while failures are counted: no update may be lost.
    let readers = {
        let (dir, name) = (state.arg(), user.name.clone());
        thread::spawn(move || {
            for _ in 0..15 {
                let run = otp_admin(&["--state-dir", &dir, "status", &name, "--json"]);
                assert!(
                    run.status == Some(0),
                    "status during logins failed: {run:#?}"
                );
            }
        })
    };
    let children: Vec<_> = (0..logins).map(|_| service.spawn_login(&user)).collect();
    for child in children {
        support::finish(child, &wrong).assert_failure(AUTH_ERR, "concurrent wrong code");
    }
    readers.join().expect("status thread");
    assert_eq!(
        status_json(&state, &user)["failures"],
        logins,
        "lost or doubled updates"
    );

    // Phase 2: unlocks racing with failures: every write lands whole.
    let unlockers = {
        let (dir, name) = (state.arg(), user.name.clone());
        thread::spawn(move || {
            for _ in 0..10 {
                otp_admin(&["--state-dir", &dir, "unlock", &name])
                    .assert_ok("unlock during logins");
            }
        })
    };
    let children: Vec<_> = (0..logins).map(|_| service.spawn_login(&user)).collect();
    for child in children {
        support::finish(child, &wrong).assert_failure(AUTH_ERR, "concurrent wrong code");
    }
    unlockers.join().expect("unlock thread");
    let json = status_json(&state, &user);
    let failures = json["failures"].as_u64().expect("failures");
    assert!(failures <= logins as u64, "{json}");
    assert_eq!(json["locked"], false, "{json}");
    let leftovers: Vec<_> = snapshot(&state.path)
        .into_keys()
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    wait_for_step_margin(5);
    service
        .login(&user, &totp(&secret))
        .assert_success("right code after the races");
}
