//! The whole flow of one login: enrollment, lockout check, answer, decision, new state,
//! return code. The system is reached only through [`Host`], so the flow is unit-tested
//! with a scripted host and conversation, without root or a file system.

use std::cell::RefCell;
use std::path::Path;

use ::pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::core::answer::{as_code, split_password_and_code};
use crate::core::decision::{decide, Method, Verdict};
use crate::core::enrollment::Enrollment;
use crate::core::fleet::{Call, RecordKeys, Reply};
use crate::core::state::State;
use crate::pam::conversation::Conversation;
use crate::pam::fleet_login::fleet_login;
use crate::sys::log::Logger;
use crate::sys::policy::{expand_secret_path, PassMode, Policy, RedisSettings, Store};
use crate::sys::redis_client::RedisClient;
use crate::sys::redis_store::RedisStoreError;
use crate::sys::store::{StateStore, StoreError};
use crate::sys::user_file::{read_enrollment, Account, AccountError, UserFileError};

/// What one login needs from the system.
pub(crate) trait Host {
    /// The account called `name`; `Ok(None)` if there is none.
    fn account(&self, name: &str) -> Result<Option<Account>, AccountError>;
    /// The enrollment at `path`, read with the rights `sys::user_file` gives it.
    fn enrollment(&self, path: &Path, account: &Account) -> Result<Enrollment, UserFileError>;
    /// The user's state as last saved, read without the lock (the pre-prompt check).
    fn peek_state(&self, user: &str) -> Result<Option<State>, StoreError>;
    /// Under the user's lock: loads the state, gives it to `change`, and saves what
    /// `change` returns if it differs; an error means nothing was saved.
    fn update_state(
        &self,
        user: &str,
        change: &mut dyn FnMut(Option<State>) -> State,
    ) -> Result<(), StoreError>;
    /// Fleet mode: one call of the shared record's script for the person with `uid`.
    fn shared_record(&self, uid: u32, call: &Call) -> Result<Reply, RedisStoreError>;
    /// Fleet mode, after an accepted code is on the local floor: Ok once as many replicas
    /// as the policy wants hold it.
    fn shared_replicated(&self) -> Result<(), RedisStoreError>;
}

/// The system itself: the user database, the user's file, the state directory, and in
/// fleet mode the Redis connection (opened at its first use, kept for the login).
pub(crate) struct SystemHost<'a> {
    pub state_dir: &'a Path,
    redis: Option<&'a RedisSettings>,
    connection: RefCell<Option<RedisClient>>,
}

impl<'a> SystemHost<'a> {
    pub fn new(policy: &'a Policy) -> SystemHost<'a> {
        SystemHost {
            state_dir: &policy.state_dir,
            redis: match &policy.store {
                Store::Redis(settings) => Some(settings),
                Store::File => None,
            },
            connection: RefCell::new(None),
        }
    }

    /// Runs `action` on the connection, connecting first if need be. After any error the
    /// connection is dropped: a reply may still be on its way.
    fn with_redis<T>(
        &self,
        action: impl FnOnce(&mut RedisClient, &RedisSettings) -> Result<T, RedisStoreError>,
    ) -> Result<T, RedisStoreError> {
        let settings = self.redis.ok_or(RedisStoreError::Command {
            what: "the fleet store",
            why: "store is not \"redis\"".into(),
        })?;
        let mut slot = self.connection.borrow_mut();
        if slot.is_none() {
            *slot = Some(RedisClient::connect(settings)?);
        }
        let connection = slot.as_mut().expect("connected above");
        let result = action(connection, settings);
        if result.is_err() {
            *slot = None;
        }
        result
    }
}

impl Host for SystemHost<'_> {
    fn account(&self, name: &str) -> Result<Option<Account>, AccountError> {
        Account::lookup(name)
    }

    fn enrollment(&self, path: &Path, account: &Account) -> Result<Enrollment, UserFileError> {
        read_enrollment(path, account)
    }

    fn peek_state(&self, user: &str) -> Result<Option<State>, StoreError> {
        let store = StateStore::open(self.state_dir)?;
        store.check_writable()?;
        store.peek(user)
    }

    fn update_state(
        &self,
        user: &str,
        change: &mut dyn FnMut(Option<State>) -> State,
    ) -> Result<(), StoreError> {
        let locked = StateStore::open(self.state_dir)?.lock(user)?;
        let stored = locked.load()?;
        let unchanged = stored.clone();
        let next = change(stored);
        if unchanged.as_ref() != Some(&next) {
            // Not saved means not accepted: a code that cannot be retired must not work.
            locked.save(&next)?;
        }
        Ok(())
    }

    fn shared_record(&self, uid: u32, call: &Call) -> Result<Reply, RedisStoreError> {
        self.with_redis(|redis, settings| redis.run(&RecordKeys::new(&settings.prefix, uid), call))
    }

    fn shared_replicated(&self) -> Result<(), RedisStoreError> {
        self.with_redis(|redis, _| redis.wait_for_replicas())
    }
}

/// How a login ended: the return code and, with `forward_pass`, the password to hand on.
pub(crate) struct Ending {
    pub code: PamResultCode,
    pub forward_password: Option<Zeroizing<String>>,
}

impl From<PamResultCode> for Ending {
    fn from(code: PamResultCode) -> Ending {
        Ending {
            code,
            forward_password: None,
        }
    }
}

/// One login attempt for the user called `user` under `policy`.
pub(crate) struct Request<'a> {
    pub user: &'a str,
    pub policy: &'a Policy,
    /// PAM_AUTHTOK as an earlier module left it (for try_first_pass / use_first_pass).
    pub authtok: Option<Zeroizing<String>>,
    /// PAM_RHOST: where the login comes from (its failures count against that source).
    pub rhost: Option<String>,
}

/// Runs one login. `now` gives the Unix time; it is read once before prompting (the
/// lockout check) and once after the answer (the decision).
pub(crate) fn login(
    request: &Request,
    host: &dyn Host,
    conversation: &mut dyn Conversation,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Ending {
    let policy = request.policy;
    let account = match host.account(request.user) {
        Ok(Some(account)) => account,
        Ok(None) | Err(AccountError::UnsafeName(_)) => {
            log.warning("unknown or unusable user name");
            return PamResultCode::PAM_USER_UNKNOWN.into();
        }
        Err(e) => {
            log.error(&e.to_string());
            return PamResultCode::PAM_AUTHINFO_UNAVAIL.into();
        }
    };
    let enrollment = match load_enrollment(host, &account, policy, log) {
        Ok(enrollment) => enrollment,
        Err(code) => return code.into(),
    };
    if let Store::Redis(_) = policy.store {
        return fleet_login(request, &account, &enrollment, host, conversation, now, log);
    }

    // Refuse a locked user before asking anything: no code is checked while locked. The
    // lock is not taken here; the decision below re-reads the state under it.
    let before = now();
    let state = match host.peek_state(&account.name) {
        Ok(stored) => State::for_enrollment(stored, &enrollment),
        Err(e) => return unavailable(log, &e).into(),
    };
    if state.is_locked(before) {
        return report_locked(state.locked_until, before, conversation, log).into();
    }

    let (answer, forward_password) = match obtain_answer(request, &enrollment, conversation, log) {
        Ok(answered) => answered,
        Err(code) => return code.into(),
    };

    let mut decided = None;
    let saved = host.update_state(&account.name, &mut |stored| {
        let state = State::for_enrollment(stored, &enrollment);
        let time = now();
        let decision = decide(&enrollment, &state, &policy.limits, &answer, time);
        decided = Some((decision.verdict, decision.state.lockouts, time));
        decision.state
    });
    let code = match (saved, decided) {
        (Ok(()), Some((verdict, lockouts, time))) => {
            report(verdict, lockouts, time, policy, conversation, log)
        }
        (Ok(()), None) => unreachable_host(log),
        (Err(e), _) => unavailable(log, &e),
    };
    Ending {
        code,
        forward_password,
    }
}

/// A host that reports success without calling back has decided nothing: fail closed.
pub(super) fn unreachable_host(log: &Logger) -> PamResultCode {
    log.error("the state store saved without deciding; refused");
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

pub(super) fn unavailable(log: &Logger, error: &StoreError) -> PamResultCode {
    log.error(&error.to_string());
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

fn load_enrollment(
    host: &dyn Host,
    account: &Account,
    policy: &Policy,
    log: &Logger,
) -> Result<Enrollment, PamResultCode> {
    let path = expand_secret_path(&policy.secret, &account.name, &account.home).map_err(|e| {
        log.error(&e.to_string());
        PamResultCode::PAM_AUTHINFO_UNAVAIL
    })?;
    match host.enrollment(&path, account) {
        Ok(enrollment) => Ok(enrollment),
        Err(UserFileError::NotEnrolled) if policy.nullok => {
            log.debug(&format!(
                "{} does not exist; nullok lets the user pass",
                path.display()
            ));
            Err(PamResultCode::PAM_IGNORE)
        }
        Err(UserFileError::NotEnrolled) => {
            log.warning(&format!(
                "{} does not exist: user not enrolled, refused",
                path.display()
            ));
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
        Err(e) => {
            // A broken file never means "no second factor", not even with nullok.
            log.error(&format!("{}: {e}", path.display()));
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
    }
}

/// The answer to check and, with `forward_pass`, the password to hand on.
pub(super) type Answered = (Zeroizing<String>, Option<Zeroizing<String>>);

pub(super) fn obtain_answer(
    request: &Request,
    enrollment: &Enrollment,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Result<Answered, PamResultCode> {
    let policy = request.policy;
    let mut ask = || {
        conversation.prompt(policy.prompt_text()).map_err(|e| {
            log.error(&e.to_string());
            PamResultCode::PAM_CONV_ERR
        })
    };
    match policy.pass_mode {
        PassMode::Prompt => Ok((ask()?, None)),
        PassMode::UseFirstPass => match &request.authtok {
            Some(token) => Ok((token.clone(), None)),
            None => {
                log.error("use_first_pass: no PAM_AUTHTOK from an earlier module");
                Err(PamResultCode::PAM_AUTH_ERR)
            }
        },
        PassMode::TryFirstPass => match &request.authtok {
            // Only a code-shaped token is tried: an earlier module's password is not a guess.
            Some(token) if as_code(token, enrollment.digits).is_some() => Ok((token.clone(), None)),
            _ => Ok((ask()?, None)),
        },
        PassMode::ForwardPass => {
            let full = ask()?;
            match split_password_and_code(&full, enrollment.digits) {
                Some((password, code)) => Ok((code, Some(password))),
                None => {
                    log.debug("forward_pass: answer does not end in a code");
                    Ok((Zeroizing::new(String::new()), Some(full)))
                }
            }
        }
    }
}

pub(super) fn report_locked(
    until: u64,
    time: u64,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    let wait = until.saturating_sub(time);
    log.warning(&format!(
        "locked out for {wait} more seconds; no code checked"
    ));
    let _ = conversation.error(&format!(
        "Too many failed attempts; try again in {wait} seconds."
    ));
    PamResultCode::PAM_MAXTRIES
}

pub(super) fn report(
    verdict: Verdict,
    lockouts: u32,
    time: u64,
    policy: &Policy,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    match verdict {
        Verdict::Accepted(Method::Totp { step }) => {
            log.info(&format!("accepted TOTP code (step {step})"));
            PamResultCode::PAM_SUCCESS
        }
        Verdict::Accepted(Method::Hotp { counter }) => {
            log.info(&format!("accepted HOTP code (counter {counter})"));
            PamResultCode::PAM_SUCCESS
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
            PamResultCode::PAM_SUCCESS
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
            PamResultCode::PAM_AUTH_ERR
        }
        Verdict::Rejected {
            failures,
            locked_until: Some(until),
        } => {
            let wait = until.saturating_sub(time);
            log.warning(&format!(
                "wrong code; {failures} consecutive failures: locked out for {wait} seconds (lockout {lockouts})"
            ));
            let _ = conversation.error(&format!(
                "Too many failed attempts; locked for {wait} seconds."
            ));
            PamResultCode::PAM_AUTH_ERR
        }
        Verdict::Locked { until } => report_locked(until, time, conversation, log),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pam::conversation::ConversationError;
    use crate::sys::log::Level;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::path::PathBuf;

    /// RFC 6238 Appendix B's SHA-1 seed, so expected codes come from the RFC, not from us.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    /// (time, 8-digit code) rows of RFC 6238 Appendix B (SHA-1).
    const T1: (u64, &str) = (1111111109, "07081804");
    const T2: (u64, &str) = (1234567890, "89005924");

    /// A scripted conversation: answers from a queue, records what it was told. Every
    /// scripted answer must be used: one left over means the login asked less than the
    /// test expected, and fails the test when the script is dropped.
    #[derive(Default)]
    struct Script {
        answers: VecDeque<&'static str>,
        prompts: Vec<String>,
        infos: Vec<String>,
        errors: Vec<String>,
    }

    impl Drop for Script {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                assert!(
                    self.answers.is_empty(),
                    "unused answers: {:?}",
                    self.answers
                );
            }
        }
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

    fn answering(answers: &[&'static str]) -> Script {
        let mut script = Script::default();
        script.answers = answers.iter().copied().collect();
        script
    }

    /// What the scripted host holds in place of the state file.
    #[derive(Clone, Debug, PartialEq)]
    enum Stored {
        Nothing,
        State(State),
        /// A file that does not parse: every read fails, and it is never overwritten.
        Corrupt,
    }

    /// The system as a login sees it: one account, its enrollment file's text (or none),
    /// the state, and whether saving fails.
    struct ScriptedHost {
        account: Account,
        enrollment: Option<String>,
        stored: RefCell<Stored>,
        saves: RefCell<u32>,
        save_fails: bool,
    }

    impl ScriptedHost {
        fn new(enrollment: Option<&str>) -> ScriptedHost {
            ScriptedHost {
                account: Account {
                    name: "tester".into(),
                    uid: 1000,
                    gid: 1000,
                    home: PathBuf::from("/home/tester"),
                },
                enrollment: enrollment.map(str::to_string),
                stored: RefCell::new(Stored::Nothing),
                saves: RefCell::new(0),
                save_fails: false,
            }
        }

        fn corrupt(&self) -> StoreError {
            StoreError::Corrupt {
                path: "/state/tester.state".into(),
                why: "not a state file".into(),
            }
        }

        fn read(&self) -> Result<Option<State>, StoreError> {
            match &*self.stored.borrow() {
                Stored::Nothing => Ok(None),
                Stored::State(state) => Ok(Some(state.clone())),
                Stored::Corrupt => Err(self.corrupt()),
            }
        }
    }

    impl Host for ScriptedHost {
        fn account(&self, name: &str) -> Result<Option<Account>, AccountError> {
            Ok((name == self.account.name).then(|| self.account.clone()))
        }

        fn enrollment(&self, path: &Path, account: &Account) -> Result<Enrollment, UserFileError> {
            assert_eq!(path, account.home.join(".otp.toml"));
            let text = self
                .enrollment
                .as_deref()
                .ok_or(UserFileError::NotEnrolled)?;
            Enrollment::parse(text).map_err(UserFileError::Invalid)
        }

        fn peek_state(&self, user: &str) -> Result<Option<State>, StoreError> {
            assert_eq!(user, self.account.name);
            self.read()
        }

        fn update_state(
            &self,
            user: &str,
            change: &mut dyn FnMut(Option<State>) -> State,
        ) -> Result<(), StoreError> {
            assert_eq!(user, self.account.name);
            let stored = self.read()?;
            let next = change(stored.clone());
            if stored.as_ref() != Some(&next) {
                if self.save_fails {
                    return Err(StoreError::Io {
                        path: "/state/tester.state".into(),
                        action: "write",
                        error: std::io::Error::from_raw_os_error(libc::ENOSPC),
                    });
                }
                *self.saves.borrow_mut() += 1;
                *self.stored.borrow_mut() = Stored::State(next);
            }
            Ok(())
        }

        fn shared_record(&self, _: u32, _: &Call) -> Result<Reply, RedisStoreError> {
            Err(RedisStoreError::Command {
                what: "the fleet script",
                why: "the scripted host has no Redis".into(),
            })
        }

        fn shared_replicated(&self) -> Result<(), RedisStoreError> {
            self.shared_record(0, &Call::Status).map(|_| ())
        }
    }

    fn policy(args: &[&str]) -> Policy {
        crate::sys::policy::parse(args, None).unwrap()
    }

    fn totp8() -> String {
        format!("secret = \"{RFC_SECRET}\"\ndigits = 8\n")
    }

    /// One login of "tester" at `time`; its return code and what it logged.
    fn attempt_with(
        host: &ScriptedHost,
        policy: &Policy,
        script: &mut Script,
        time: u64,
        authtok: Option<&str>,
    ) -> (Ending, Logger) {
        let log = Logger::memory("test");
        let request = Request {
            user: "tester",
            policy,
            authtok: authtok.map(|t| Zeroizing::new(t.to_string())),
            rhost: None,
        };
        (login(&request, host, script, &|| time, &log), log)
    }

    fn attempt(
        host: &ScriptedHost,
        policy: &Policy,
        script: &mut Script,
        time: u64,
    ) -> (PamResultCode, Logger) {
        let (ending, log) = attempt_with(host, policy, script, time, None);
        (ending.code, log)
    }

    #[test]
    fn right_code_then_replay() {
        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&[]);
        let (code, log) = attempt(&host, &p, &mut answering(&[T1.1]), T1.0);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert!(log.lines()[0].1.contains("accepted TOTP code"));
        let (code, log) = attempt(&host, &p, &mut answering(&[T1.1]), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
        assert_eq!(log.lines()[0].0, Level::Warning);
        // No line ever carries the code or the secret.
        assert!(!log
            .lines()
            .iter()
            .any(|(_, l)| l.contains(T1.1) || l.contains(RFC_SECRET)));
    }

    #[test]
    fn unknown_user_is_refused_before_anything_is_read() {
        let host = ScriptedHost::new(Some(&totp8()));
        let log = Logger::memory("test");
        let p = policy(&[]);
        let request = Request {
            user: "nobody-here",
            policy: &p,
            authtok: None,
            rhost: None,
        };
        let ending = login(&request, &host, &mut answering(&[]), &|| T1.0, &log);
        assert_eq!(ending.code, PamResultCode::PAM_USER_UNKNOWN);
        assert_eq!(*host.stored.borrow(), Stored::Nothing);
    }

    #[test]
    fn prompt_is_the_configured_one() {
        let host = ScriptedHost::new(Some(&totp8()));
        let mut script = answering(&[T2.1]);
        let code = attempt(&host, &policy(&["prompt=Code? "]), &mut script, T2.0).0;
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert_eq!(script.prompts, vec!["Code? "]);
    }

    #[test]
    fn lockout_stops_asking_and_tells_the_user() {
        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["max_failures=2", "lockout=100"]);
        let code = attempt(&host, &p, &mut answering(&["00000000"]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
        let mut script = answering(&["00000001"]);
        assert_eq!(
            attempt(&host, &p, &mut script, T1.0).0,
            PamResultCode::PAM_AUTH_ERR
        );
        assert!(
            script.errors[0].contains("locked for 100 seconds"),
            "{:?}",
            script.errors
        );
        let saves = *host.saves.borrow();
        let mut script = answering(&[]);
        let code = attempt(&host, &p, &mut script, T1.0 + 10).0;
        assert_eq!(code, PamResultCode::PAM_MAXTRIES);
        assert!(script.prompts.is_empty(), "asked while locked");
        assert!(script.errors[0].contains("90 seconds"));
        assert_eq!(
            *host.saves.borrow(),
            saves,
            "a refused login wrote the state"
        );
        // After the lockout the right code works.
        let code = attempt(&host, &p, &mut answering(&[T2.1]), T2.0).0;
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn not_enrolled_depends_on_nullok() {
        let host = ScriptedHost::new(None);
        let code = attempt(&host, &policy(&[]), &mut answering(&[]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        let code = attempt(&host, &policy(&["nullok"]), &mut answering(&[]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_IGNORE);
    }

    #[test]
    fn broken_file_fails_closed_even_with_nullok() {
        let host = ScriptedHost::new(Some("secret = \"JBSWY3DPEHPK3PXP\"\nwindow = 9\n"));
        let mut script = answering(&[]);
        let (code, log) = attempt(&host, &policy(&["nullok"]), &mut script, T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
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
        let host = ScriptedHost::new(Some(&totp8()));
        let mut script = answering(&["correct horse07081804"]);
        let (ending, _) = attempt_with(&host, &policy(&["forward_pass"]), &mut script, T1.0, None);
        assert_eq!(ending.code, PamResultCode::PAM_SUCCESS);
        assert_eq!(ending.forward_password.unwrap().as_str(), "correct horse");
        assert_eq!(script.prompts, vec!["Password and verification code: "]);
    }

    #[test]
    fn first_pass_modes_use_the_earlier_token() {
        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["use_first_pass"]);
        let mut script = answering(&[]);
        let (ending, _) = attempt_with(&host, &p, &mut script, T1.0, Some(T1.1));
        assert_eq!(ending.code, PamResultCode::PAM_SUCCESS);
        assert!(script.prompts.is_empty());
        let (ending, _) = attempt_with(&host, &p, &mut script, T2.0, None);
        assert_eq!(ending.code, PamResultCode::PAM_AUTH_ERR);

        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["try_first_pass"]);
        let mut script = answering(&[T1.1]);
        // A password-shaped token is not tried; the user is asked instead.
        let (ending, _) = attempt_with(&host, &p, &mut script, T1.0, Some("hunter2"));
        assert_eq!(ending.code, PamResultCode::PAM_SUCCESS);
        assert_eq!(script.prompts.len(), 1);
    }

    #[test]
    fn recovery_code_reports_what_is_left() {
        let hash = crate::core::recovery::RecoveryHash::new("abcd-efgh", [9; 16]).to_stored();
        let host = ScriptedHost::new(Some(&format!("{}recovery_codes = [\"{hash}\"]\n", totp8())));
        let p = policy(&[]);
        let mut script = answering(&["ABCD-EFGH"]);
        let (code, log) = attempt(&host, &p, &mut script, T1.0);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        assert!(
            script.infos[0].contains("0 recovery codes left"),
            "{:?}",
            script.infos
        );
        assert_eq!(log.lines()[0].0, Level::Warning);
        let code = attempt(&host, &p, &mut answering(&["abcd-efgh"]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn conversation_failure_changes_nothing() {
        let host = ScriptedHost::new(Some(&totp8()));
        let code = attempt(&host, &policy(&[]), &mut answering(&[]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_CONV_ERR);
        assert_eq!(*host.stored.borrow(), Stored::Nothing);
    }

    #[test]
    fn corrupt_state_fails_closed_and_is_kept() {
        let host = ScriptedHost::new(Some(&totp8()));
        *host.stored.borrow_mut() = Stored::Corrupt;
        let mut script = answering(&[]);
        let (code, log) = attempt(&host, &policy(&[]), &mut script, T2.0);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(script.prompts.is_empty());
        assert_eq!(*host.stored.borrow(), Stored::Corrupt);
        assert!(log.lines()[0].1.contains("otp-admin reset"));
    }

    #[test]
    fn a_code_that_cannot_be_saved_is_not_accepted() {
        let mut host = ScriptedHost::new(Some(&totp8()));
        host.save_fails = true;
        let (code, log) = attempt(&host, &policy(&[]), &mut answering(&[T1.1]), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert!(log.lines()[0].1.contains("cannot write"));
        // Once the store works again, the same code is still good: it was never spent.
        host.save_fails = false;
        let code = attempt(&host, &policy(&[]), &mut answering(&[T1.1]), T1.0).0;
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
    }
}
