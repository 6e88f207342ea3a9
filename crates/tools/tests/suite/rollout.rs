//! A roll-out with a deadline (`enforce_after`) instead of `nullok`, through the real
//! sshd (real ssh client) and the real sudo: before the date a user with no enrollment
//! gets in and is reminded, from it on such a user is refused and told why; an enrolled
//! user never sees the reminder; `nullok` with a deadline is a service error. And the
//! reason for a refusal reaches the person only after a first factor has passed.
//! sudo 1.9.13 calls PAM with PAM_SILENT, which the module obeys: through sudo the
//! outcomes are checked, the messages through sshd. Must run as root.

use std::fs;

use crate::support;
use crate::support::clients;
use clients::{run_sudo, Answers, InstalledService, ShellUser, SshClient, SshRun, Sshd, SudoRule};
use support::secret_store::StoreSecret;
use support::{new_secret, totp, totp_enrollment, unique, utc_date};

const REMINDER: &str = "Verification codes are required here from ";

/// A week ahead: the deadline is UTC midnight seven days on, so it is 7 days left all
/// day long.
fn week_ahead() -> (String, String) {
    let date = utc_date(7);
    let told = format!("{REMINDER}{date} (7 days left), and this account has none yet");
    (date, told)
}

fn quoted(date: &str) -> String {
    format!("\"{date}\"")
}

/// The key-then-code sshd of the sshd tests, logged into with a terminal and a shell.
type SshSetup = crate::sshd::Setup;

impl SshSetup {
    /// What the shell prints when it runs what `login_shell` types (the terminal echoes
    /// the typed line, which holds the marker but not this).
    fn ran(&self) -> String {
        format!("{}-42", self.marker)
    }

    /// An interactive login that types `echo MARKER-$((6*7)); exit` into the shell.
    fn login_shell(&self, code: Option<String>) -> SshRun {
        let answers = Answers {
            code,
            password: None,
        };
        let typed = format!("echo {}-$((6*7)); exit\n", self.marker);
        self.client
            .login_shell(&self.sshd, &self.user.name, &answers, &typed)
    }

    fn assert_in(&self, run: &SshRun, what: &str) {
        assert!(
            run.status == Some(0) && run.stdout.contains(&self.ran()),
            "{what}: expected the shell to run\n{}",
            run.describe()
        );
    }
}

#[test]
fn sshd_before_the_deadline_lets_the_unenrolled_in_and_reminds_them() {
    let (date, told) = week_ahead();
    let s = SshSetup::key_then_code(false, &[("enforce_after", &quoted(&date))]);
    let run = s.login_shell(None);
    s.assert_in(&run, "unenrolled, a week before the deadline");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
    assert!(
        run.stdout
            .contains(&format!("{told}: run otp-setup to set one up.")),
        "the reminder is missing or wrong\n{}",
        run.describe()
    );
}

#[test]
fn sshd_the_enrolled_user_never_sees_the_reminder() {
    let (date, _) = week_ahead();
    let s = SshSetup::key_then_code(true, &[("enforce_after", &quoted(&date))]);
    support::wait_for_step_margin(5);
    let run = s.login_shell(Some(totp(&s.secret)));
    s.assert_in(&run, "enrolled, right code");
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
    assert!(
        !run.stdout.contains(REMINDER) && !run.stderr.contains(REMINDER),
        "an enrolled user was reminded\n{}",
        run.describe()
    );
}

#[test]
fn sshd_after_the_deadline_refuses_the_unenrolled_and_says_why() {
    let date = utc_date(-1);
    let s = SshSetup::key_then_code(false, &[("enforce_after", &quoted(&date))]);
    let run = s.login_shell(None);
    run.assert_refused(&s.ran(), "unenrolled, the day after the deadline");
    assert_eq!(run.code_prompts(), 0, "{}", run.describe());
    let why = format!(
        "Login refused: verification codes are required here since {date}, and this \
         account has none: run otp-setup to set one up."
    );
    assert!(
        run.stderr.contains(&why),
        "the refusal does not say why\n{}",
        run.describe()
    );
}

#[test]
fn sshd_nullok_with_a_deadline_is_a_service_error() {
    let (date, _) = week_ahead();
    let s = SshSetup::key_then_code(
        false,
        &[("enforce_after", &quoted(&date)), ("nullok", "true")],
    );
    let run = s.login_shell(None);
    run.assert_refused(&s.ran(), "nullok and enforce_after together");
    assert!(!run.stdout.contains(REMINDER), "{}", run.describe());
}

#[test]
fn sshd_with_a_key_the_unenrolled_user_is_told_why_without_nullok() {
    let s = SshSetup::key_then_code(false, &[]);
    let run = s.login_shell(None);
    run.assert_refused(&s.ran(), "unenrolled, no nullok");
    assert!(
        run.stderr.contains(
            "Login refused: this login needs a verification code, and this account has \
             none: run otp-setup to set one up."
        ),
        "the refused user is not told why\n{}",
        run.describe()
    );
}

#[test]
fn sshd_with_pam_otp_before_the_password_nothing_is_told() {
    // keyboard-interactive only, pam_otp first and the password after it: nothing has
    // proved who is typing when pam_otp decides, so it says nothing.
    let user = ShellUser::new();
    let password = user.set_password();
    let client = SshClient::new();
    let service = InstalledService::install("sshd-password-otp", "tx-roll-", &[]);
    let text = fs::read_to_string(&service.pam_file).unwrap();
    let otp_line = text
        .lines()
        .find(|l| l.contains("pam_otp.so") && l.starts_with("auth"))
        .unwrap()
        .to_string();
    let reordered = text.replace(&format!("{otp_line}\n"), "").replacen(
        "\n@include common-auth\n",
        &format!("\n{otp_line}\n@include common-auth\n"),
        1,
    );
    assert!(
        reordered.find(&otp_line) < reordered.find("\n@include common-auth\n"),
        "{reordered}"
    );
    fs::write(&service.pam_file, reordered).unwrap();
    let sshd = Sshd::start(&service, &["AuthenticationMethods keyboard-interactive"]);
    let answers = Answers {
        code: Some("123456".into()),
        password: Some(password),
    };
    let marker = unique("tx-ran-");
    let run = client.run(&sshd, &user.name, &answers, 1, &format!("echo {marker}"));
    run.assert_refused(&marker, "pam_otp first, unenrolled");
    assert!(
        !run.stderr.contains("Login refused") && !run.stderr.contains("verification code"),
        "pam_otp told someone who had proved nothing\n{}",
        run.describe()
    );
}

/// A user with a password whose sudo goes through the shipped sudo-otp stack (the
/// administrator's store) with `policy`; `enrolled`: a secret in the store.
struct SudoUser {
    _rule: SudoRule,
    _service: InstalledService,
    _secret: Option<StoreSecret>,
    user: ShellUser,
    password: String,
    secret: String,
}

impl SudoUser {
    fn new(enrolled: bool, policy: &[(&str, &str)]) -> SudoUser {
        let user = ShellUser::new();
        let password = user.set_password();
        let secret = new_secret();
        let stored = enrolled.then(|| StoreSecret::write(&user.name, &totp_enrollment(&secret)));
        let service = InstalledService::install("sudo-otp", "tx-roll-sudo-", policy);
        SudoUser {
            _rule: SudoRule::install(&user.name, &service),
            _service: service,
            _secret: stored,
            user,
            password,
            secret,
        }
    }
}

#[test]
fn sudo_before_the_deadline_lets_the_unenrolled_through() {
    let (date, _) = week_ahead();
    let s = SudoUser::new(false, &[("enforce_after", &quoted(&date))]);
    let run = run_sudo(&s.user.name, &[&s.password]);
    assert!(
        run.status == Some(0) && run.stdout.contains("root"),
        "unenrolled, a week ahead\n{}",
        run.describe()
    );
    assert!(
        !run.stderr.contains("Verification code: "),
        "{}",
        run.describe()
    );
    // Without the password the same user is refused: the deadline skips only the code.
    let run = run_sudo(&s.user.name, &["not-the-password"]);
    crate::sudo::assert_refused(&run, "without the password");
}

#[test]
fn sudo_the_enrolled_user_never_sees_the_reminder() {
    let (date, _) = week_ahead();
    let s = SudoUser::new(true, &[("enforce_after", &quoted(&date))]);
    support::wait_for_step_margin(5);
    let run = run_sudo(&s.user.name, &[&s.password, &totp(&s.secret)]);
    assert!(
        run.status == Some(0) && run.stdout.contains("root"),
        "enrolled, right code\n{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains(REMINDER) && !run.stderr.contains(REMINDER),
        "{}",
        run.describe()
    );
}

#[test]
fn sudo_after_the_deadline_refuses_the_unenrolled() {
    let date = utc_date(-30);
    let s = SudoUser::new(false, &[("enforce_after", &quoted(&date))]);
    let run = run_sudo(&s.user.name, &[&s.password]);
    crate::sudo::assert_refused(&run, "unenrolled after the deadline");
    // The same settings let an enrolled user through: the refusal is the deadline's,
    // not a service error.
    let enrolled = SudoUser::new(true, &[("enforce_after", &quoted(&date))]);
    support::wait_for_step_margin(5);
    let run = run_sudo(
        &enrolled.user.name,
        &[&enrolled.password, &totp(&enrolled.secret)],
    );
    crate::sudo::assert_ran(&run, "enrolled after the deadline");
}

#[test]
fn sudo_nullok_with_a_deadline_is_a_service_error() {
    let (date, _) = week_ahead();
    let s = SudoUser::new(
        false,
        &[("enforce_after", &quoted(&date)), ("nullok", "true")],
    );
    let run = run_sudo(&s.user.name, &[&s.password]);
    crate::sudo::assert_refused(&run, "nullok + enforce_after let sudo through");
    assert!(!run.stderr.contains(REMINDER), "{}", run.describe());
}

#[test]
fn doctor_names_nullok_with_a_deadline_as_an_error() {
    let dir = support::scratch_path("tx-roll-doctor");
    fs::create_dir(&dir).unwrap();
    let (date, _) = week_ahead();
    fs::write(
        dir.join("sudo"),
        format!(
            "auth required pam_unix.so\nauth required {} nullok enforce_after={date}\n",
            support::module_path().display()
        ),
    )
    .unwrap();
    let pam_dir = dir.display().to_string();
    let run =
        crate::support::admin::otp_admin(&["doctor", "--json", "--pam-dir", &pam_dir, "sudo"]);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(run.status, Some(2), "{run:#?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let refused = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "otp-settings-refused")
        .unwrap_or_else(|| panic!("no otp-settings-refused finding:\n{json:#}"));
    assert_eq!(refused["severity"], "error");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("nullok and enforce_after are both set"),
        "{refused:#}"
    );
}
