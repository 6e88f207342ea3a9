//! What `otp-admin status` puts on root's terminal: a user's `~/.otp.toml` cannot clear,
//! retitle or forge lines on it, and PAM services on different state directories are
//! called out. The real binary, run as root. Users and services are named `ta…`.

use crate::support;
use crate::support::admin;

use admin::{otp_admin, Service, StateDir, User};
use support::{new_secret, totp_enrollment};

#[test]
fn status_escapes_what_the_user_wrote() {
    let user = User::new();
    let secret = new_secret();
    user.enroll(&format!(
        "{}\"\\u001b[2J\\u001b[H\\u001b]0;owned\\u0007\\u001b[32muser: x\\nenrollment: TOTP \
         (ok)\\u202e\\u2028\\u001b[8m\" = 1\n",
        totp_enrollment(&secret)
    ));
    let state = StateDir::new();
    let run = otp_admin(&["--state-dir", &state.arg(), "status", &user.name]);
    run.assert_ok("status of a user with a hostile key");
    for raw in ['\u{1b}', '\u{7}', '\u{202e}', '\u{2028}'] {
        assert!(
            !run.stdout.contains(raw),
            "raw {raw:?} reached the terminal:\n{:?}",
            run.stdout
        );
    }
    assert!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("user:"))
            .count()
            == 1
            && run
                .stdout
                .lines()
                .filter(|l| l.starts_with("enrollment:"))
                .count()
                == 1,
        "a line was forged:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("BROKEN") && run.stdout.contains("\\u{1b}[2J"),
        "the broken file is not shown escaped:\n{}",
        run.stdout
    );
}

#[test]
fn status_warns_when_services_use_different_state_dirs() {
    let user = User::new();
    user.enroll(&totp_enrollment(&new_secret()));
    let (one, two) = (StateDir::new(), StateDir::new());
    let (first, second) = (Service::new(&one, ""), Service::new(&two, ""));
    let run = otp_admin(&["--state-dir", &one.arg(), "status", &user.name]);
    run.assert_ok("status");
    let warning = run
        .stdout
        .lines()
        .find(|l| l.starts_with("WARNING:"))
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stdout));
    for (dir, service) in [(&one, &first), (&two, &second)] {
        assert!(
            warning.contains(&format!("{} (", dir.arg())) && warning.contains(&service.name),
            "{} on {} not named: {warning}",
            service.name,
            dir.arg()
        );
    }
    assert!(
        warning.contains("replay guard and guess budget"),
        "{warning}"
    );
    let json = otp_admin(&["--state-dir", &one.arg(), "status", &user.name, "--json"]).json();
    assert!(
        json["split_state_dirs"][one.arg()]
            .as_array()
            .is_some_and(|s| s.iter().any(|n| n == first.name.as_str())),
        "{json}"
    );
}

/// The name typed is shown as typed, in plain quotes: no backslashes before them, as a
/// second round of escaping would leave; what could move the cursor is still escaped.
#[test]
fn an_unknown_user_is_named_without_escaped_quotes() {
    let state = StateDir::new();
    for cmd in ["status", "unlock", "reset"] {
        let run = otp_admin(&["--state-dir", &state.arg(), cmd, "ta-no-such-user"]);
        run.assert_refused(&format!("{cmd} of an unknown user"));
        assert_eq!(
            run.stderr, "otp-admin: no such user: \"ta-no-such-user\"\n",
            "{cmd}"
        );
    }
    let run = otp_admin(&["--state-dir", &state.arg(), "status", "ta\u{1b}[2Jx\"y"]);
    run.assert_refused("status of a name with an escape sequence");
    assert_eq!(
        run.stderr, "otp-admin: no such user: \"ta\\u{1b}[2Jx\\\"y\"\n",
        "{run:#?}"
    );
}
