//! `otp-admin report` on a machine with enrolled (home file and store), unenrolled,
//! locked and broken users and two PAM services using pam_otp (one with a deadline, one
//! reading the store): every column, `--json`, `--not-enrolled` and its exit status, and
//! what users wrote (a broken file full of escape sequences, a service file name with
//! one) never reaching the terminal raw. Must run as root.

use std::fs;
use std::path::Path;

use crate::support;
use crate::support::admin::otp_admin;
use crate::support::clients::ShellUser;
use crate::support::secret_store::StoreSecret;
use support::{
    new_secret, otp_line, totp, totp_enrollment, utc_date, wait_for_step_margin, Service, StateDir,
};

/// The report's text line of `user`.
fn line_of<'a>(report: &'a str, user: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{user} (uid ")))
        .unwrap_or_else(|| panic!("{user} is not in the report:\n{report}"))
}

/// A PAM file written by the test (one named with an escape sequence), removed on drop.
struct HostileService(std::path::PathBuf);

impl Drop for HostileService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn report_shows_every_account_that_can_log_in_and_what_each_service_does() {
    let state = StateDir::new();
    let date = utc_date(7);
    let home = Service::with_lines(&[otp_line(&state, &format!("enforce_after={date}"))]);
    let store = Service::with_lines(&[otp_line(&state, "secret=/var/lib/pam-otp/secrets/%u.toml")]);
    let hostile = HostileService(Path::new("/etc/pam.d").join("tx-rep-\u{1b}]0;pwned\u{7}"));
    fs::write(&hostile.0, otp_line(&state, "")).unwrap();
    // A file services include, named as Debian names them: not a service of its own.
    let include = HostileService(
        Path::new("/etc/pam.d").join(format!("common-{}", support::unique("tx-rep"))),
    );
    fs::write(&include.0, otp_line(&state, "")).unwrap();
    let include_name = include.0.file_name().unwrap().to_str().unwrap();

    let enrolled = ShellUser::new();
    enrolled.set_password();
    let secret = new_secret();
    enrolled.enroll(&totp_enrollment(&secret));
    let unenrolled = ShellUser::new();
    unenrolled.set_password();
    let locked = ShellUser::new();
    locked.set_password();
    let locked_secret = new_secret();
    locked.enroll(&totp_enrollment(&locked_secret));
    let stored = ShellUser::new();
    stored.set_password();
    let _stored_secret = StoreSecret::write(&stored.name, &totp_enrollment(&new_secret()));
    let broken = ShellUser::new();
    broken.set_password();
    broken.enroll("secret = \"\u{1b}[2J\u{1b}]0;owned\u{7}\"\n");
    // No password and no key: cannot log in, so not listed.
    let keyless = ShellUser::new();

    wait_for_step_margin(5);
    home.login(&enrolled, &totp(&secret))
        .assert_success("enrolled user's login");
    let lock = Service::with_lines(&[otp_line(&state, "max_failures=1 max_failures_user=1")]);
    let _ = lock.login(&locked, "000000");

    let dir = state.path.to_str().unwrap();
    let run = otp_admin(&["--state-dir", dir, "report"]);
    assert_eq!(run.status, Some(0), "{run:#?}");
    let report = &run.stdout;
    assert!(
        !report.contains('\u{1b}') && !report.contains('\u{7}'),
        "{report:?}"
    );
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with(&format!("{} (uid ", keyless.name))),
        "{report}"
    );
    assert!(
        !report.contains(include_name),
        "the include file is listed as a service:\n{report}"
    );
    let (h, s) = (&home.name, &store.name);

    let line = line_of(report, &enrolled.name);
    for part in [
        "enrolled=yes",
        "where=home",
        "type=totp",
        "failures=0",
        "locked=no",
        &format!("{h}: asked"),
        &format!("{s}: refused (not enrolled)"),
    ] {
        assert!(line.contains(part), "{part:?} missing:\n{line}");
    }
    assert!(!line.contains("last_code=never"), "{line}");

    let line = line_of(report, &unenrolled.name);
    for part in [
        "enrolled=no",
        "where=-",
        "type=-",
        "last_code=never",
        &format!("{h}: passes until {date} (7 days)"),
        &format!("{s}: refused (not enrolled)"),
    ] {
        assert!(line.contains(part), "{part:?} missing:\n{line}");
    }

    let line = line_of(report, &locked.name);
    for part in [
        "enrolled=yes",
        "locked=yes",
        &format!("{h}: refused (locked)"),
    ] {
        assert!(line.contains(part), "{part:?} missing:\n{line}");
    }

    let line = line_of(report, &stored.name);
    for part in [
        "enrolled=yes",
        "where=store",
        &format!("{s}: asked"),
        &format!("{h}: passes until {date}"),
    ] {
        assert!(line.contains(part), "{part:?} missing:\n{line}");
    }

    let line = line_of(report, &broken.name);
    for part in [
        "enrolled=broken",
        &format!("{h}: refused (broken enrollment file)"),
    ] {
        assert!(line.contains(part), "{part:?} missing:\n{line}");
    }
    // The hostile service's name, escaped where it is shown.
    assert!(line.contains("tx-rep-\\u{1b}]0;pwned\\u{7}: "), "{line}");

    // --json: the same, for scripts.
    let run = otp_admin(&["--state-dir", dir, "report", "--json"]);
    assert_eq!(run.status, Some(0), "{run:#?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = |user: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|e| e["user"] == user)
            .unwrap_or_else(|| panic!("{user} not in {json:#}"))
            .clone()
    };
    let e = entry(&enrolled.name);
    assert_eq!(e["enrolled"], "yes");
    assert_eq!(e["where"], serde_json::json!(["home"]));
    assert_eq!(e["type"], "totp");
    assert!(e["last_code"].as_u64().unwrap() > 0);
    assert_eq!(e["services"][h.as_str()], "asked");
    assert_eq!(entry(&locked.name)["locked"], true);
    assert_eq!(entry(&stored.name)["where"], serde_json::json!(["store"]));
    assert_eq!(entry(&unenrolled.name)["enrolled"], "no");

    // --not-enrolled: only those, and exit 1.
    let run = otp_admin(&["--state-dir", dir, "report", "--not-enrolled"]);
    assert_eq!(run.status, Some(1), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("{} (uid ", unenrolled.name)),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains(&format!("{} (uid ", broken.name)),
        "{run:#?}"
    );
    for user in [&enrolled.name, &locked.name, &stored.name] {
        assert!(!run.stdout.contains(&format!("{user} (uid ")), "{run:#?}");
    }
}
