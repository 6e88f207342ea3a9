//! Password and code in one answer, the code checked only after the password:
//! the shipped `config/pam.d/sshd-password-code-one-prompt` (`pam_otp.so split_pass`,
//! `pam_unix.so use_first_pass`, `pam_otp.so use_split_code`), installed as a PAM
//! service and driven by pamtester and by a real sshd with the real ssh client.
//!
//! Every test here would fail on a one-line stack that checks the code before pam_unix
//! has checked the password.

use std::time::Instant;

use crate::support;
use crate::support::clients;

use clients::{Answers, InstalledService, ShellUser, SshClient, SshRun, Sshd};
use support::{
    finish, new_secret, spawn, totp, totp_enrollment, unique, Outcome, AUTHINFO_UNAVAIL, AUTH_ERR,
};

const PAM_FILE: &str = "sshd-password-code-one-prompt";
const PROMPT: &str = "Password and verification code: ";
/// What a stranger types: no password, a code-shaped guess.
const GARBAGE: &str = "idontknow000000";

/// One user with a password (enrolled or not), and the shipped stack as a service.
struct Stack {
    service: InstalledService,
    user: ShellUser,
    password: String,
    secret: String,
}

impl Stack {
    /// `policy`: keys set in the shipped policy file besides state_dir.
    fn new(enrolled: bool, policy: &[(&str, &str)]) -> Stack {
        let user = ShellUser::new();
        let password = user.set_password();
        let secret = new_secret();
        if enrolled {
            user.enroll(&totp_enrollment(&secret));
        }
        let service = InstalledService::install(PAM_FILE, "tx-one-prompt-", policy);
        Stack {
            service,
            user,
            password,
            secret,
        }
    }

    /// `pamtester SERVICE USER authenticate`, answering the one question with `answer`.
    fn login(&self, answer: &str) -> Outcome {
        let argv = [
            "pamtester",
            &self.service.name,
            &self.user.name,
            "authenticate",
        ];
        let out = finish(spawn(&argv.map(String::from)), answer);
        assert_eq!(
            out.stderr.matches(PROMPT).count() + out.stdout.matches(PROMPT).count(),
            1,
            "expected exactly one question {PROMPT:?}: {out:?}"
        );
        out
    }

    fn with_password(&self, code: &str) -> String {
        format!("{}{code}", self.password)
    }
}

#[test]
fn right_password_and_right_code_in_one_answer_succeed() {
    let s = Stack::new(true, &[]);
    s.login(&s.with_password(&totp(&s.secret)))
        .assert_success("password followed by the right code");
    // The code after the password is checked: the same answer again is a replay.
    s.login(&s.with_password(&totp(&s.secret)))
        .assert_failure(AUTH_ERR, "the same code again");
}

#[test]
fn right_password_and_wrong_or_missing_code_fail() {
    let s = Stack::new(true, &[]);
    let wrong = support::wrong_totp(&s.secret);
    s.login(&s.with_password(&wrong))
        .assert_failure(AUTH_ERR, "right password, wrong code");
    s.login(&s.password)
        .assert_failure(AUTH_ERR, "right password, no code");
}

#[test]
fn a_wrong_password_leaves_the_right_code_unspent() {
    // A stack that checked (and spent) the code first would fail the owner's next
    // login with it as a replay.
    let s = Stack::new(true, &[("max_failures", "1")]);
    let code = totp(&s.secret);
    s.login(&format!("not-the-password{code}"))
        .assert_failure(AUTH_ERR, "wrong password, right code");
    // max_failures = 1: had that counted as a failure, the owner would be locked now.
    s.login(&s.with_password(&code))
        .assert_success("the same code with the right password");
}

#[test]
fn strangers_without_the_password_cannot_lock_the_owner_out() {
    let s = Stack::new(true, &[]);
    // Twice max_failures (5) of what an attacker types, then of wrong passwords
    // followed by code-shaped guesses.
    for n in 0..10 {
        let answer = match n % 2 {
            0 => GARBAGE.to_string(),
            _ => format!("guess{n}{:06}", n * 7919),
        };
        s.login(&answer)
            .assert_failure(AUTH_ERR, &format!("stranger's answer {n}"));
    }
    s.login(&s.with_password(&totp(&s.secret)))
        .assert_success("the owner after ten stranger's answers");
}

#[test]
fn a_wrong_password_is_refused_after_the_same_delay_whatever_the_code() {
    // A stack that checked the code first would answer a wrong code at once (pam_otp,
    // requisite) and a right one only after pam_unix's failure delay (about 2 s): an
    // oracle for codes. Here both go through pam_unix's delay alone.
    let s = Stack::new(true, &[]);
    let timed = |answer: String| {
        let start = Instant::now();
        s.login(&answer).assert_failure(AUTH_ERR, "wrong password");
        start.elapsed().as_secs_f64()
    };
    let wrong = timed(format!("not-it{}", support::wrong_totp(&s.secret)));
    let right = timed(format!("not-it{}", totp(&s.secret)));
    // pam_unix asks libpam to wait 2 s on every failure, which libpam varies between
    // 1 and 3 s; a code-first stack refused the wrong code in about 10 ms.
    assert!(
        wrong > 0.5 && right > 0.5,
        "a wrong password was refused without pam_unix's delay: wrong code {wrong:.3} s, right code {right:.3} s"
    );
}

#[test]
fn with_nullok_an_unenrolled_user_is_asked_the_same_and_the_password_suffices() {
    let s = Stack::new(false, &[("nullok", "true")]);
    s.login(&s.password)
        .assert_success("not enrolled, nullok, right password");
    // Whatever follows the password is part of it for an unenrolled user.
    s.login(&s.with_password("123456"))
        .assert_failure(AUTH_ERR, "not enrolled, password followed by digits");
    s.login(GARBAGE)
        .assert_failure(AUTH_ERR, "not enrolled, a stranger's answer");
}

#[test]
fn without_nullok_an_unenrolled_user_is_refused_only_after_the_password() {
    let s = Stack::new(false, &[]);
    // A stranger sees what they see for an enrolled user: the question, then AUTH_ERR.
    s.login(GARBAGE)
        .assert_failure(AUTH_ERR, "not enrolled, wrong password");
    s.login(&s.password)
        .assert_failure(AUTHINFO_UNAVAIL, "not enrolled, right password");
}

#[test]
fn use_split_code_without_a_split_pass_line_fails_closed_and_counts_nothing() {
    // A stack that forgot the split_pass line: nothing was kept, so nothing is checked.
    let fx = support::Fixture::totp();
    let broken = support::Service::otp_then_permit(&fx.state, "use_split_code max_failures=1");
    for _ in 0..3 {
        let out = fx.login(&broken, &totp(&fx.secret));
        out.assert_failure(AUTH_ERR, "use_split_code with nothing kept");
        assert!(
            !out.prompted(support::DEFAULT_PROMPT) && !out.prompted(PROMPT),
            "use_split_code asked: {out:?}"
        );
    }
    // Neither a failure counted (max_failures = 1) nor the code spent.
    fx.login(&fx.service("max_failures=1"), &totp(&fx.secret))
        .assert_success("the same code through a prompting line");
}

// ---- through a real sshd: one keyboard-interactive question ----

/// A real sshd whose PAM service is the shipped stack, with password + code as the
/// only method; fields drop in order: sshd stops before its service and user go.
struct SshStack {
    sshd: Sshd,
    stack: Stack,
    client: SshClient,
    marker: String,
}

impl SshStack {
    fn new(enrolled: bool, policy: &[(&str, &str)]) -> SshStack {
        let stack = Stack::new(enrolled, policy);
        let sshd = Sshd::start(
            &stack.service,
            &["AuthenticationMethods keyboard-interactive"],
        );
        SshStack {
            sshd,
            stack,
            client: SshClient::new(),
            marker: unique("tx-ran-"),
        }
    }

    /// Logs in and runs `echo MARKER`, typing `answer` at each of at most `tries`
    /// questions, each of which must be the one combined question.
    fn login(&self, answer: &str, tries: u32) -> SshRun {
        let answers = Answers {
            // The askpass script answers questions that contain "assword".
            password: Some(answer.to_string()),
            code: None,
        };
        let command = format!("echo {}", self.marker);
        let run = self
            .client
            .run(&self.sshd, &self.stack.user.name, &answers, tries, &command);
        assert!(
            !run.prompts.is_empty() && run.prompts.iter().all(|p| p.contains(PROMPT)),
            "expected only the question {PROMPT:?}\n{}",
            run.describe()
        );
        run
    }
}

#[test]
fn sshd_password_and_code_in_one_answer() {
    let s = SshStack::new(true, &[]);
    let code = totp(&s.stack.secret);
    let run = s.login(&s.stack.with_password(&code), 1);
    run.assert_ran(&s.marker, "password + right code in one answer");
    assert_eq!(run.prompts.len(), 1, "{}", run.describe());
}

#[test]
fn sshd_wrong_password_spends_no_code_and_counts_no_failure() {
    let s = SshStack::new(true, &[("max_failures", "3")]);
    let code = totp(&s.stack.secret);
    // One connection, three questions (max_failures), each answered with a wrong
    // password and the right code; then a stranger's garbage, three more times.
    let run = s.login(&format!("not-the-password{code}"), 3);
    run.assert_refused(&s.marker, "wrong password + right code");
    assert_eq!(run.prompts.len(), 3, "{}", run.describe());
    s.login(GARBAGE, 3)
        .assert_refused(&s.marker, "a stranger's garbage");
    // Neither spent the code nor locked the owner, who now logs in with that code.
    s.login(&s.stack.with_password(&code), 1)
        .assert_ran(&s.marker, "the owner with the same code");
}

#[test]
fn sshd_with_nullok_an_unenrolled_user_is_asked_the_same_question() {
    let s = SshStack::new(false, &[("nullok", "true")]);
    let run = s.login(&s.stack.password, 1);
    run.assert_ran(&s.marker, "not enrolled, nullok, password alone");
    assert_eq!(run.prompts.len(), 1, "{}", run.describe());
}
