//! The whole flow of one login: enrollment, lock check, answer, decision, new state, verdict.

use zeroize::Zeroizing;

use crate::answer::{as_code, split_password_and_code};
use crate::conversation::Conversation;
use crate::decision::{decide, Method, Verdict};
use crate::enrollment::Enrollment;
use crate::log::Logger;
use crate::policy::{expand_secret_path, PassMode, Policy};
use crate::state::State;
use crate::store::{StateStore, StoreError};
use crate::user_file::{read_enrollment, Account, UserFileError};

/// How a login ended; the PAM glue maps each onto a return code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    WrongCode,
    Locked,
    /// Not enrolled, and `nullok` lets the user pass through.
    NotEnrolledPassThrough,
    /// Not enrolled without `nullok`, a broken or insecure file, unusable state.
    Unavailable,
    ConversationFailed,
}

/// What the caller must do besides returning: with `forward_pass`, hand on the password.
pub struct LoginResult {
    pub outcome: Outcome,
    pub forward_password: Option<Zeroizing<String>>,
}

/// One login attempt for `account` under `policy`.
pub struct Request<'a> {
    pub account: &'a Account,
    pub policy: &'a Policy,
    /// PAM_AUTHTOK as an earlier module left it (for try_first_pass / use_first_pass).
    pub authtok: Option<Zeroizing<String>>,
}

/// Runs one login. `now` gives the Unix time; it is read when the answer is checked.
pub fn login(
    request: &Request,
    conversation: &mut dyn Conversation,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> LoginResult {
    let mut forward_password = None;
    let outcome = match run(request, conversation, now, log, &mut forward_password) {
        Ok(outcome) | Err(outcome) => outcome,
    };
    LoginResult {
        outcome,
        forward_password,
    }
}

fn run(
    request: &Request,
    conversation: &mut dyn Conversation,
    now: &dyn Fn() -> u64,
    log: &Logger,
    forward_password: &mut Option<Zeroizing<String>>,
) -> Result<Outcome, Outcome> {
    let Request {
        account, policy, ..
    } = request;
    let enrollment = load_enrollment(account, policy, log)?;
    let store = StateStore::open(&policy.state_dir).map_err(|e| unavailable(log, &e))?;

    // Refuse a locked user before asking anything: no code is checked while locked.
    let until = locked_until(&store, account, &enrollment, now(), log)?;
    if let Some(until) = until {
        return Ok(report_locked(until, now(), conversation, log));
    }

    let answer = obtain_answer(request, &enrollment, conversation, log, forward_password)?;

    let locked = store
        .lock(&account.name)
        .map_err(|e| unavailable(log, &e))?;
    let stored = locked.load().map_err(|e| unavailable(log, &e))?;
    let state = State::for_enrollment(stored.clone(), &enrollment);
    let time = now();
    let decision = decide(&enrollment, &state, &policy.limits, &answer, time);
    if stored.as_ref() != Some(&decision.state) {
        // Not saved means not accepted: a code that cannot be retired must not work.
        locked
            .save(&decision.state)
            .map_err(|e| unavailable(log, &e))?;
    }
    drop(locked);
    Ok(report(
        decision.verdict,
        &decision.state,
        time,
        policy,
        conversation,
        log,
    ))
}

fn unavailable(log: &Logger, error: &StoreError) -> Outcome {
    log.error(&error.to_string());
    Outcome::Unavailable
}

fn load_enrollment(
    account: &Account,
    policy: &Policy,
    log: &Logger,
) -> Result<Enrollment, Outcome> {
    let path = expand_secret_path(&policy.secret, &account.name, &account.home).map_err(|e| {
        log.error(&e.to_string());
        Outcome::Unavailable
    })?;
    match read_enrollment(&path, account) {
        Ok(enrollment) => Ok(enrollment),
        Err(UserFileError::NotEnrolled) if policy.nullok => {
            log.debug(&format!(
                "{} does not exist; nullok lets the user pass",
                path.display()
            ));
            Err(Outcome::NotEnrolledPassThrough)
        }
        Err(UserFileError::NotEnrolled) => {
            log.warning(&format!(
                "{} does not exist: user not enrolled, refused",
                path.display()
            ));
            Err(Outcome::Unavailable)
        }
        Err(e) => {
            // A broken file never means "no second factor", not even with nullok.
            log.error(&format!("{}: {e}", path.display()));
            Err(Outcome::Unavailable)
        }
    }
}

fn locked_until(
    store: &StateStore,
    account: &Account,
    enrollment: &Enrollment,
    time: u64,
    log: &Logger,
) -> Result<Option<u64>, Outcome> {
    let locked = store
        .lock(&account.name)
        .map_err(|e| unavailable(log, &e))?;
    let stored = locked.load().map_err(|e| unavailable(log, &e))?;
    let state = State::for_enrollment(stored, enrollment);
    Ok(state.is_locked(time).then_some(state.locked_until))
}

fn obtain_answer(
    request: &Request,
    enrollment: &Enrollment,
    conversation: &mut dyn Conversation,
    log: &Logger,
    forward_password: &mut Option<Zeroizing<String>>,
) -> Result<Zeroizing<String>, Outcome> {
    let policy = request.policy;
    let mut ask = || {
        conversation.prompt(policy.prompt_text()).map_err(|e| {
            log.error(&e.to_string());
            Outcome::ConversationFailed
        })
    };
    match policy.pass_mode {
        PassMode::Prompt => ask(),
        PassMode::UseFirstPass => request.authtok.clone().ok_or_else(|| {
            log.error("use_first_pass: no PAM_AUTHTOK from an earlier module");
            Outcome::WrongCode
        }),
        PassMode::TryFirstPass => match &request.authtok {
            // Only a code-shaped token is tried: an earlier module's password is not a guess.
            Some(token) if as_code(token, enrollment.digits).is_some() => Ok(token.clone()),
            _ => ask(),
        },
        PassMode::ForwardPass => {
            let full = ask()?;
            match split_password_and_code(&full, enrollment.digits) {
                Some((password, code)) => {
                    *forward_password = Some(password);
                    Ok(code)
                }
                None => {
                    log.debug("forward_pass: answer does not end in a code");
                    *forward_password = Some(full);
                    Ok(Zeroizing::new(String::new()))
                }
            }
        }
    }
}

fn report_locked(
    until: u64,
    time: u64,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Outcome {
    let wait = until.saturating_sub(time);
    log.warning(&format!(
        "locked out for {wait} more seconds; no code checked"
    ));
    // sshd shows this before "Permission denied (keyboard-interactive)"; no code is
    // asked for while locked, so it is the only thing that says why.
    let _ = conversation.error(&format!(
        "Locked out after too many failed attempts; try again in {}, or ask an administrator to unlock you.",
        wait_in_words(wait)
    ));
    Outcome::Locked
}

/// A lockout's remaining time as a person reads it: seconds, minutes or hours, rounded up.
fn wait_in_words(seconds: u64) -> String {
    let (amount, unit) = match seconds {
        0..120 => (seconds, "second"),
        120..7200 => (seconds.div_ceil(60), "minute"),
        _ => (seconds.div_ceil(3600), "hour"),
    };
    let plural = if amount == 1 { "" } else { "s" };
    format!("{amount} {unit}{plural}")
}

fn report(
    verdict: Verdict,
    state: &State,
    time: u64,
    policy: &Policy,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Outcome {
    match verdict {
        Verdict::Accepted(Method::Totp { step }) => {
            log.info(&format!("accepted TOTP code (step {step})"));
            Outcome::Success
        }
        Verdict::Accepted(Method::Hotp { counter }) => {
            log.info(&format!("accepted HOTP code (counter {counter})"));
            Outcome::Success
        }
        Verdict::Accepted(Method::Recovery { remaining, .. }) => {
            log.warning(&format!("accepted a recovery code; {remaining} left"));
            let advice = if remaining == 0 {
                " Run otp-setup to make new ones."
            } else {
                ""
            };
            let _ = conversation.info(&format!(
                "Recovery code accepted; {remaining} recovery code{} left.{advice}",
                if remaining == 1 { "" } else { "s" }
            ));
            Outcome::Success
        }
        Verdict::Rejected {
            failures,
            locked_until: None,
        } => {
            let limit = match policy.limits.max_failures {
                0 => "no lockout".to_string(),
                max => format!("lockout after {max}"),
            };
            log.warning(&format!(
                "wrong code ({failures} consecutive failures, {limit})"
            ));
            Outcome::WrongCode
        }
        Verdict::Rejected {
            failures,
            locked_until: Some(until),
        } => {
            let wait = until.saturating_sub(time);
            log.warning(&format!(
                "wrong code; {failures} consecutive failures: locked out for {wait} seconds (lockout {})",
                state.lockouts
            ));
            let _ = conversation.error(&format!(
                "Too many failed attempts; locked for {wait} seconds."
            ));
            Outcome::WrongCode
        }
        Verdict::Locked { until } => report_locked(until, time, conversation, log),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_waits_read_in_the_largest_sensible_unit() {
        let cases = [
            (1, "1 second"),
            (59, "59 seconds"),
            (119, "119 seconds"),
            (120, "2 minutes"),
            (121, "3 minutes"),
            (3600, "60 minutes"),
            (7199, "120 minutes"),
            (7200, "2 hours"),
            (86400, "24 hours"),
        ];
        for (seconds, words) in cases {
            assert_eq!(wait_in_words(seconds), words, "{seconds} s");
        }
    }
    use crate::conversation::ConversationError;
    use crate::log::Level;
    use std::collections::VecDeque;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// RFC 6238 Appendix B's SHA-1 seed, so expected codes come from the RFC, not from us.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    /// (time, 8-digit code) rows of RFC 6238 Appendix B (SHA-1).
    const T1: (u64, &str) = (1111111109, "07081804");
    const T2: (u64, &str) = (1234567890, "89005924");

    /// A scripted conversation: answers from a list, records what it was told.
    #[derive(Default)]
    struct Script {
        answers: VecDeque<&'static str>,
        prompts: Vec<String>,
        infos: Vec<String>,
        errors: Vec<String>,
    }

    impl Conversation for Script {
        fn prompt(&mut self, text: &str) -> Result<Zeroizing<String>, ConversationError> {
            self.prompts.push(text.into());
            self.answers
                .pop_front()
                .map(|a| Zeroizing::new(a.to_string()))
                .ok_or_else(|| ConversationError("script ran out".into()))
        }
        fn info(&mut self, text: &str) -> Result<(), ConversationError> {
            self.infos.push(text.into());
            Ok(())
        }
        fn error(&mut self, text: &str) -> Result<(), ConversationError> {
            self.errors.push(text.into());
            Ok(())
        }
    }

    struct Fixture {
        account: Account,
        policy: Policy,
    }

    fn fixture(name: &str, enrollment: Option<&str>, args: &[&str]) -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run the test suite as root"
        );
        let base =
            std::env::temp_dir().join(format!("pam-otp-login-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let home = base.join("home");
        std::fs::create_dir_all(&home).unwrap();
        if let Some(text) = enrollment {
            let path = home.join(".otp.toml");
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let state_dir = format!("state_dir={}", base.join("state").display());
        let mut all: Vec<&str> = args.to_vec();
        all.push(&state_dir);
        Fixture {
            account: Account {
                name: "tester".into(),
                uid: 0,
                gid: 0,
                home: PathBuf::from(&home),
            },
            policy: crate::policy::parse(&all, None).unwrap(),
        }
    }

    fn totp8() -> String {
        format!("secret = \"{RFC_SECRET}\"\ndigits = 8\n")
    }

    fn attempt(f: &Fixture, script: &mut Script, time: u64) -> (Outcome, Logger) {
        attempt_with(f, script, time, None)
    }

    fn attempt_with(
        f: &Fixture,
        script: &mut Script,
        time: u64,
        authtok: Option<&str>,
    ) -> (Outcome, Logger) {
        let log = Logger::memory("test");
        let request = Request {
            account: &f.account,
            policy: &f.policy,
            authtok: authtok.map(|t| Zeroizing::new(t.to_string())),
        };
        (login(&request, script, &|| time, &log).outcome, log)
    }

    fn answering(answers: &[&'static str]) -> Script {
        Script {
            answers: answers.iter().copied().collect(),
            ..Script::default()
        }
    }

    #[test]
    fn right_code_then_replay() {
        let f = fixture("replay", Some(&totp8()), &[]);
        let (outcome, log) = attempt(&f, &mut answering(&[T1.1]), T1.0);
        assert_eq!(outcome, Outcome::Success);
        assert!(log.lines()[0].1.contains("accepted TOTP code"));
        let (outcome, log) = attempt(&f, &mut answering(&[T1.1]), T1.0);
        assert_eq!(outcome, Outcome::WrongCode);
        assert_eq!(log.lines()[0].0, Level::Warning);
        // No line ever carries the code or the secret.
        assert!(!log
            .lines()
            .iter()
            .any(|(_, l)| l.contains(T1.1) || l.contains(RFC_SECRET)));
    }

    #[test]
    fn prompt_is_the_configured_one() {
        let f = fixture("prompt", Some(&totp8()), &["prompt=Code? "]);
        let mut script = answering(&[T2.1]);
        assert_eq!(attempt(&f, &mut script, T2.0).0, Outcome::Success);
        assert_eq!(script.prompts, vec!["Code? "]);
    }

    #[test]
    fn lockout_stops_asking_and_tells_the_user() {
        let f = fixture(
            "lockout",
            Some(&totp8()),
            &["max_failures=2", "lockout=100"],
        );
        assert_eq!(
            attempt(&f, &mut answering(&["00000000"]), T1.0).0,
            Outcome::WrongCode
        );
        let mut script = answering(&["00000001"]);
        assert_eq!(attempt(&f, &mut script, T1.0).0, Outcome::WrongCode);
        assert!(
            script.errors[0].contains("locked for 100 seconds"),
            "{:?}",
            script.errors
        );
        let mut script = answering(&[T1.1]);
        assert_eq!(attempt(&f, &mut script, T1.0 + 10).0, Outcome::Locked);
        assert!(script.prompts.is_empty(), "asked while locked");
        assert!(script.errors[0].contains("90 seconds"));
        // After the lockout the right code works.
        assert_eq!(
            attempt(&f, &mut answering(&[T2.1]), T2.0).0,
            Outcome::Success
        );
    }

    #[test]
    fn not_enrolled_depends_on_nullok() {
        let f = fixture("absent", None, &[]);
        assert_eq!(
            attempt(&f, &mut answering(&[]), T1.0).0,
            Outcome::Unavailable
        );
        let f = fixture("absent-nullok", None, &["nullok"]);
        assert_eq!(
            attempt(&f, &mut answering(&[]), T1.0).0,
            Outcome::NotEnrolledPassThrough
        );
    }

    #[test]
    fn broken_file_fails_closed_even_with_nullok() {
        let f = fixture(
            "broken",
            Some("secret = \"JBSWY3DPEHPK3PXP\"\nwindow = 9\n"),
            &["nullok"],
        );
        let mut script = answering(&[]);
        let (outcome, log) = attempt(&f, &mut script, T1.0);
        assert_eq!(outcome, Outcome::Unavailable);
        assert!(script.prompts.is_empty());
        let line = &log.lines()[0].1;
        assert!(
            line.contains(".otp.toml") && line.contains("window"),
            "{line}"
        );
        assert!(!line.contains("JBSWY3DPEHPK3PXP"));
    }

    #[test]
    fn forward_pass_splits_password_and_code() {
        let f = fixture("forward", Some(&totp8()), &["forward_pass"]);
        let log = Logger::memory("test");
        let request = Request {
            account: &f.account,
            policy: &f.policy,
            authtok: None,
        };
        let answer = "correct horse07081804";
        let mut script = answering(&[answer]);
        let result = login(&request, &mut script, &|| T1.0, &log);
        assert_eq!(result.outcome, Outcome::Success);
        assert_eq!(result.forward_password.unwrap().as_str(), "correct horse");
        assert_eq!(script.prompts, vec!["Password and verification code: "]);
    }

    #[test]
    fn first_pass_modes_use_the_earlier_token() {
        let f = fixture("use-first", Some(&totp8()), &["use_first_pass"]);
        let mut script = answering(&[]);
        assert_eq!(
            attempt_with(&f, &mut script, T1.0, Some(T1.1)).0,
            Outcome::Success
        );
        assert!(script.prompts.is_empty());
        assert_eq!(
            attempt_with(&f, &mut script, T2.0, None).0,
            Outcome::WrongCode
        );

        let f = fixture("try-first", Some(&totp8()), &["try_first_pass"]);
        let mut script = answering(&[T1.1]);
        // A password-shaped token is not tried; the user is asked instead.
        assert_eq!(
            attempt_with(&f, &mut script, T1.0, Some("hunter2")).0,
            Outcome::Success
        );
        assert_eq!(script.prompts.len(), 1);
    }

    #[test]
    fn recovery_code_reports_what_is_left() {
        let hash = crate::recovery::RecoveryHash::new("abcd-efgh", [9; 16]).to_stored();
        let f = fixture(
            "recovery",
            Some(&format!("{}recovery_codes = [\"{hash}\"]\n", totp8())),
            &[],
        );
        let mut script = answering(&["ABCD-EFGH"]);
        let (outcome, log) = attempt(&f, &mut script, T1.0);
        assert_eq!(outcome, Outcome::Success);
        assert!(
            script.infos[0].contains("0 recovery codes left"),
            "{:?}",
            script.infos
        );
        assert_eq!(log.lines()[0].0, Level::Warning);
        assert_eq!(
            attempt(&f, &mut answering(&["abcd-efgh"]), T1.0).0,
            Outcome::WrongCode
        );
    }

    #[test]
    fn conversation_failure_changes_nothing() {
        let f = fixture("conv", Some(&totp8()), &[]);
        assert_eq!(
            attempt(&f, &mut answering(&[]), T1.0).0,
            Outcome::ConversationFailed
        );
        assert!(!f.policy.state_dir.join("tester.state").exists());
    }

    #[test]
    fn corrupt_state_fails_closed_and_is_kept() {
        let f = fixture("corrupt", Some(&totp8()), &[]);
        assert_eq!(
            attempt(&f, &mut answering(&[T1.1]), T1.0).0,
            Outcome::Success
        );
        let path = f.policy.state_dir.join("tester.state");
        std::fs::write(&path, "not toml at all").unwrap();
        let mut script = answering(&[T2.1]);
        assert_eq!(attempt(&f, &mut script, T2.0).0, Outcome::Unavailable);
        assert!(script.prompts.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not toml at all");
    }
}
