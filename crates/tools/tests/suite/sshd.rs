//! pam_otp behind a real OpenSSH sshd, logged into with the real ssh client.
//!
//! Each test starts its own sshd on 127.0.0.1 with the shipped drop-in
//! `config/sshd_config.d/pam-otp.conf` and a PAM service made from the shipped
//! `config/pam.d/sshd-otp` (public key, then code) or `config/pam.d/sshd-password-otp`
//! (password, then code). Codes come from oathtool. Must run as root.

use crate::support;
use crate::support::clients;

use clients::{Answers, InstalledService, ShellUser, SshClient, SshRun, Sshd};
use support::{new_secret, totp, totp_enrollment, unique, wrong_totp};

/// One user, one client key, one PAM service, one sshd. Fields drop in order:
/// sshd stops before its service and user go.
pub(crate) struct Setup {
    pub(crate) sshd: Sshd,
    _service: InstalledService,
    pub(crate) client: SshClient,
    pub(crate) user: ShellUser,
    pub(crate) secret: String,
    /// Printed by the remote command: proof that it ran.
    pub(crate) marker: String,
}

impl Setup {
    /// Public key, then code (config/pam.d/sshd-otp, the drop-in as shipped).
    /// `enrolled`: whether the user has a `~/.otp.toml`; `policy`: keys set in the
    /// shipped policy file besides state_dir.
    pub(crate) fn key_then_code(enrolled: bool, policy: &[(&str, &str)]) -> Setup {
        Setup::new("sshd-otp", &[], enrolled, true, policy)
    }

    /// Password, then code (config/pam.d/sshd-password-otp, with
    /// `AuthenticationMethods keyboard-interactive` as the drop-in describes).
    fn password_then_code() -> (Setup, String) {
        let setup = Setup::new(
            "sshd-password-otp",
            &["AuthenticationMethods keyboard-interactive"],
            true,
            false,
            &[],
        );
        let password = setup.user.set_password();
        (setup, password)
    }

    fn new(
        pam_file: &str,
        sshd_settings: &[&str],
        enrolled: bool,
        authorize_key: bool,
        policy: &[(&str, &str)],
    ) -> Setup {
        let user = ShellUser::new();
        let secret = new_secret();
        if enrolled {
            user.enroll(&totp_enrollment(&secret));
        }
        let client = SshClient::new();
        if authorize_key {
            user.authorize_key(&client.public_key());
        }
        let service = InstalledService::install(pam_file, "tx-sshd-otp-", policy);
        let sshd = Sshd::start(&service, sshd_settings);
        Setup {
            sshd,
            _service: service,
            client,
            user,
            secret,
            marker: unique("tx-ran-"),
        }
    }

    /// Logs in and runs `echo MARKER`, answering with `answers`, at most `tries`
    /// keyboard-interactive rounds.
    fn login(&self, answers: &Answers, tries: u32) -> SshRun {
        let command = format!("echo {}; id -un", self.marker);
        self.client
            .run(&self.sshd, &self.user.name, answers, tries, &command)
    }

    fn code(code: &str) -> Answers {
        Answers {
            code: Some(code.to_string()),
            password: None,
        }
    }
}

#[test]
fn sshd_publickey_and_right_code_runs_the_command() {
    let s = Setup::key_then_code(true, &[]);
    let run = s.login(&Setup::code(&totp(&s.secret)), 1);
    run.assert_ran(&s.marker, "key + right code");
    assert!(
        run.stdout.contains(&s.user.name),
        "the command ran as someone else\n{}",
        run.describe()
    );
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
}

#[test]
fn sshd_right_key_and_wrong_code_is_refused() {
    let s = Setup::key_then_code(true, &[]);
    let run = s.login(&Setup::code(&wrong_totp(&s.secret)), 1);
    run.assert_refused(&s.marker, "key + wrong code");
    assert_eq!(
        run.code_prompts(),
        1,
        "the code was not asked for\n{}",
        run.describe()
    );
}

#[test]
fn sshd_without_the_key_the_code_is_never_asked() {
    // The client's key is not in authorized_keys: publickey fails first, so the
    // keyboard-interactive step (and the code) never comes.
    let s = Setup::new("sshd-otp", &[], true, false, &[]);
    let run = s.login(&Setup::code(&totp(&s.secret)), 1);
    run.assert_refused(&s.marker, "no key, right code");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
}

#[test]
fn sshd_password_and_right_code_runs_the_command() {
    let (s, password) = Setup::password_then_code();
    let answers = Answers {
        code: Some(totp(&s.secret)),
        password: Some(password),
    };
    let run = s.login(&answers, 1);
    run.assert_ran(&s.marker, "password + right code");
    let password_at = run.prompts.iter().position(|p| p.contains("assword"));
    let code_at = run
        .prompts
        .iter()
        .position(|p| p.contains("Verification code: "));
    assert!(
        matches!((password_at, code_at), (Some(p), Some(c)) if p < c),
        "expected the password, then the code\n{}",
        run.describe()
    );
}

#[test]
fn sshd_password_and_wrong_code_is_refused() {
    let (s, password) = Setup::password_then_code();
    let answers = Answers {
        code: Some(wrong_totp(&s.secret)),
        password: Some(password),
    };
    let run = s.login(&answers, 1);
    run.assert_refused(&s.marker, "password + wrong code");
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
}

#[test]
fn sshd_wrong_password_is_refused_before_the_code() {
    // common-auth ends a failed password with `requisite pam_deny.so`: the stack
    // stops there and pam_otp never asks.
    let (s, _password) = Setup::password_then_code();
    let answers = Answers {
        code: Some(totp(&s.secret)),
        password: Some("not-the-password".into()),
    };
    let run = s.login(&answers, 1);
    run.assert_refused(&s.marker, "wrong password + right code");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
}

#[test]
fn sshd_same_code_on_a_second_connection_is_refused() {
    let s = Setup::key_then_code(true, &[]);
    let code = totp(&s.secret);
    s.login(&Setup::code(&code), 1)
        .assert_ran(&s.marker, "first use of the code");
    let again = s.login(&Setup::code(&code), 1);
    again.assert_refused(&s.marker, "the same code again");
    assert_eq!(again.code_prompts(), 1, "{}", again.describe());
}

#[test]
fn sshd_lockout_then_right_code_is_refused() {
    // sshd allows several keyboard-interactive rounds per connection (up to
    // MaxAuthTries, 6 in the test configuration); with NumberOfPasswordPrompts=3 one
    // connection makes three wrong tries, which is max_failures.
    let s = Setup::key_then_code(true, &[("max_failures", "3"), ("lockout", "600")]);
    let wrong = s.login(&Setup::code(&wrong_totp(&s.secret)), 3);
    wrong.assert_refused(&s.marker, "three wrong codes");
    assert_eq!(
        wrong.code_prompts(),
        3,
        "expected three tries in one connection\n{}",
        wrong.describe()
    );
    // Locked: the right code is refused, and not even asked for.
    let right = s.login(&Setup::code(&totp(&s.secret)), 3);
    assert!(
        right.status == Some(255) && !right.stdout.contains(&s.marker),
        "a locked user got in\n{}",
        right.describe()
    );
    assert_eq!(
        right.code_prompts(),
        0,
        "a locked user was asked for a code\n{}",
        right.describe()
    );
    // What the user sees: that they are locked out and for how long, and no question
    // that cannot succeed (PAM_MAXTRIES made sshd offer no method at all, and the
    // OpenSSH client then asked for a password twice).
    assert!(
        right
            .stderr
            .contains("Locked out after too many failed attempts; try again in ")
            && right
                .stderr
                .contains("Permission denied (keyboard-interactive)"),
        "the locked user is not told so\n{}",
        right.describe()
    );
    assert!(
        right.prompts.is_empty(),
        "a locked user was asked something\n{}",
        right.describe()
    );
}

#[test]
fn sshd_unenrolled_user_with_nullok_gets_in_with_the_key_only() {
    let s = Setup::key_then_code(false, &[("nullok", "true")]);
    let run = s.login(&Answers::default(), 1);
    run.assert_ran(&s.marker, "not enrolled, nullok");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
}

#[test]
fn sshd_unenrolled_user_without_nullok_is_refused() {
    let s = Setup::key_then_code(false, &[]);
    let run = s.login(&Setup::code("123456"), 1);
    run.assert_refused(&s.marker, "not enrolled, no nullok");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
}
