//! pam_otp as sudo's second factor, with the real sudo.
//!
//! Each test installs the shipped `config/pam.d/sudo-otp` as its own PAM service
//! and points sudo at it for one test user only, with a sudoers file
//! `Defaults:USER pam_service=...` (checked with visudo, removed afterwards);
//! `/etc/pam.d/sudo` is never touched. The user's secret is in the administrator's
//! store, as the shipped file reads it. sudo runs as the test user, reading the
//! password and then the code from standard input (`sudo -S`). Codes come from
//! oathtool. Must run as root.

use crate::support;
use crate::support::clients;

use clients::{run_sudo, SudoRule, SudoRun, SudoSetup, SUDO_PASSWORD_PROMPT};
use support::{totp, wrong_totp};

type Setup = SudoSetup;

impl SudoSetup {
    fn plain() -> Setup {
        SudoSetup::new("sudo-otp", "tx-sudo-otp-", SudoRule::install)
    }

    fn sudo(&self, password: &str, code: &str) -> SudoRun {
        run_sudo(&self.user.name, &[password, code])
    }
}

pub(crate) fn asked_for_the_code(run: &SudoRun) -> bool {
    run.stderr.contains("Verification code: ")
}

#[track_caller]
pub(crate) fn assert_ran(run: &SudoRun, what: &str) {
    assert!(
        run.status == Some(0) && run.stdout.trim() == "root",
        "{what}: expected /usr/bin/id to run as root\n{}",
        run.describe()
    );
    assert!(
        run.stderr.contains(SUDO_PASSWORD_PROMPT) && asked_for_the_code(run),
        "{what}: expected sudo to ask for the password and then the code\n{}",
        run.describe()
    );
}

#[track_caller]
pub(crate) fn assert_refused(run: &SudoRun, what: &str) {
    assert!(
        run.status == Some(1) && !run.stdout.contains("root"),
        "{what}: expected sudo to refuse\n{}",
        run.describe()
    );
}

#[test]
fn sudo_password_and_right_code_runs_the_command() {
    let s = Setup::plain();
    let run = s.sudo(&s.password, &totp(&s.secret));
    assert_ran(&run, "password + right code");
}

#[test]
fn sudo_password_and_wrong_code_is_refused() {
    let s = Setup::plain();
    let run = s.sudo(&s.password, &wrong_totp(&s.secret));
    assert_refused(&run, "password + wrong code");
    assert!(asked_for_the_code(&run), "{}", run.describe());
}

#[test]
fn sudo_same_code_twice_is_refused() {
    let s = Setup::plain();
    let code = totp(&s.secret);
    assert_ran(&s.sudo(&s.password, &code), "first use of the code");
    // timestamp_timeout=0 and -k: sudo asks again rather than remembering the success.
    let again = s.sudo(&s.password, &code);
    assert_refused(&again, "the same code again");
    assert!(asked_for_the_code(&again), "{}", again.describe());
}

#[test]
fn sudo_wrong_password_is_refused_before_the_code() {
    // common-auth ends a failed password with `requisite pam_deny.so`, so pam_otp
    // never asks and the code is not spent.
    let s = Setup::plain();
    let code = totp(&s.secret);
    let run = s.sudo("not-the-password", &code);
    assert_refused(&run, "wrong password + right code");
    assert!(!asked_for_the_code(&run), "{}", run.describe());
    // The code was never checked, so it still works.
    assert_ran(&s.sudo(&s.password, &code), "the unspent code afterwards");
}
