//! The whole flow of one login: enrollment, lockout check, answer, decision, new state,
//! return code. The system is reached only through [`Host`], so the flow is unit-tested
//! with a scripted host and conversation, without root or a file system.

use std::path::{Path, PathBuf};

use ::pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::conversation::Conversation;
use crate::records::RecordError;
use crate::unenrolled;
use pam_otp_core::answer::{as_code, split_password_and_code};
use pam_otp_core::decision::{decide, Method, Replay, Verdict};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::fleet::MAX_ATTEMPTS;
use pam_otp_core::source::Source;
use pam_otp_core::state::{Custody, EnrollmentRef, Lock, LockScope, State};
use pam_otp_sys::account::{Account, AccountError};
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::{expand_secret_path, PassMode, Policy};
use pam_otp_sys::store::Durability;
use pam_otp_sys::user_file::UserFileError;

/// What the user is told when a code was used before.
pub(crate) const REPLAY_MESSAGE: &str = "This code was already used; wait for the next one.";

/// What one login needs from the system.
pub(crate) trait Host {
    /// The account called `name`; `Ok(None)` if there is none.
    fn account(&self, name: &str) -> Result<Option<Account>, AccountError>;
    /// The enrollment at `path`, read with the rights `sys::user_file` gives it, and who
    /// can change it (the administrator only if it was read from the store as root).
    fn enrollment(
        &self,
        path: &Path,
        account: &Account,
    ) -> Result<(Enrollment, Custody), UserFileError>;
    /// Where the person's record is kept.
    fn records(&self) -> &dyn Records;
}

/// A person's record as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The state as stored; `None` if there is none yet.
    pub state: Option<State>,
    /// What a write-back must find unchanged (the file store's is always 0: its lock is
    /// held from read to write).
    pub version: u64,
    /// The store's clock when it was read (a fleet's: the server's `TIME`), which then
    /// decides, so that hosts with skewed clocks agree on lockouts and time steps;
    /// `None`: the host's clock decides.
    pub clock: Option<u64>,
}

/// How a write-back went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Written,
    /// The record changed since it was read (another host wrote it): nothing was written.
    Changed,
}

/// Where a person's record is kept: the state file, or a fleet's shared record. The login
/// reads it, decides with the core rules, and writes it back only if unchanged.
pub(crate) trait Records {
    /// The record as last saved, for the lockout check before the prompt (no lock taken).
    fn peek(&self, account: &Account) -> Result<Record, RecordError>;
    /// The record for a decision about `enrolled`. The file store takes the person's lock,
    /// held until `write_if_unchanged` or `release`.
    fn read(&self, account: &Account, enrolled: &EnrollmentRef) -> Result<Record, RecordError>;
    /// Saves `state`, as durably as asked, if the record's version is still `version`; an
    /// error means nothing was saved.
    fn write_if_unchanged(
        &self,
        account: &Account,
        enrolled: &EnrollmentRef,
        version: u64,
        state: &State,
        durability: Durability,
    ) -> Result<Written, RecordError>;
    /// Ends what `read` holds (the file store's lock).
    fn release(&self);
    /// After the `attempt`-th write-back found the record changed: pauses a little (with
    /// jitter, so colliding hosts part); false once the time budget is spent.
    fn retry_after_change(&self, attempt: u32) -> bool;
    /// After an accepted code is written: Ok once as many replicas as the policy wants
    /// hold it.
    fn replicated(&self) -> Result<(), RecordError>;
}

/// The code a `split_pass` line kept for the `use_split_code` line after the password
/// module, with the user it was typed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SplitCode {
    pub user: String,
    pub code: Zeroizing<String>,
}

/// How a login ended: the return code and, with `split_pass`, the password to hand on
/// and the code to keep (`None`: keep nothing).
pub(crate) struct Ending {
    pub code: PamResultCode,
    pub password_to_hand_on: Option<Zeroizing<String>>,
    pub split_code: Option<SplitCode>,
}

impl From<PamResultCode> for Ending {
    fn from(code: PamResultCode) -> Ending {
        Ending {
            code,
            password_to_hand_on: None,
            split_code: None,
        }
    }
}

/// One login attempt for the user called `user` under `policy`.
pub(crate) struct Request<'a> {
    pub user: &'a str,
    pub policy: &'a Policy,
    /// PAM_AUTHTOK as an earlier module left it (for try_first_pass / use_first_pass).
    pub authtok: Option<Zeroizing<String>>,
    /// What a `split_pass` line kept (for use_split_code), taken so it is used once.
    pub split_code: Option<SplitCode>,
    /// Where the login comes from (PAM_RHOST), as lockout counts it.
    pub source: Source,
    /// Whether an earlier factor has passed (see `lib.rs`): only then is a user with no
    /// enrollment told why they are refused, or reminded of the deadline.
    pub earlier_factor_passed: bool,
}

/// One login's fixed parts: whose state, which enrollment, from where.
struct Context<'a> {
    pub account: &'a Account,
    pub enrolled: EnrollmentRef<'a>,
    pub source: &'a Source,
    pub policy: &'a Policy,
}

/// Runs one login. `now` gives the Unix time; it is read once before prompting (the
/// lockout check) and once after each answer (the decision).
pub(crate) fn login(
    request: &Request,
    host: &dyn Host,
    conversation: &mut dyn Conversation,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Ending {
    if request.policy.pass_mode == PassMode::SplitPass {
        return split_pass(request, host, conversation, log);
    }
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
    // A locked user or source is refused before anything else is read or asked: no code
    // is checked while locked, and a flood against a locked account costs the least. The
    // lock is not taken here; each decision re-reads the record. A store that cannot be
    // read matters only once the user turns out to be enrolled.
    let peeked = host.records().peek(&account);
    let checked_at = match &peeked {
        Ok(Record {
            clock: Some(clock), ..
        }) => *clock,
        _ => now(),
    };
    let lock_on = |custody| {
        let stored = peeked.as_ref().ok()?.state.as_ref()?;
        stored.lock_for(&request.source, custody, checked_at)
    };
    if let Some(lock) = lock_on(Custody::User) {
        return report_locked(lock, checked_at, conversation, log).into();
    }
    let (enrollment, path, custody) =
        match load_enrollment(host, &account, request, checked_at, conversation, log) {
            Ok(loaded) => loaded,
            Err(code) => return code.into(),
        };
    // The administrator's enrollment has tallies of its own, which only its successes
    // clear: known once the enrollment is read.
    if custody == Custody::Administrator {
        if let Some(lock) = lock_on(custody) {
            return report_locked(lock, checked_at, conversation, log).into();
        }
    }
    if let Err(e) = peeked {
        return unavailable(log, &e).into();
    }
    let context = Context {
        account: &account,
        enrolled: EnrollmentRef::new(&enrollment, &path.to_string_lossy(), custody),
        source: &request.source,
        policy,
    };

    if policy.pass_mode == PassMode::TryFirstPass {
        if let Some(token) = first_pass_code(request, &enrollment) {
            // Every code checked counts, this one too: an attacker who can choose the
            // token gets no guess for free. The owner whose password merely looks like a
            // code loses one failure, which the right code asked for next clears.
            match settle(&context, host, &token, now, log) {
                Ok((Verdict::Rejected { locked: None, .. } | Verdict::Replayed(_), _)) => {
                    log.info("try_first_pass: the earlier password is not a valid code (counted as one failure); asking for the code");
                }
                Ok((verdict, time)) => {
                    return report(verdict, time, policy, conversation, log).into();
                }
                Err(code) => return code.into(),
            }
        }
    }

    let answer = match obtain_answer(request, conversation, log) {
        Ok(answer) => answer,
        Err(code) => return code.into(),
    };
    match settle(&context, host, &answer, now, log) {
        Ok((verdict, time)) => report(verdict, time, policy, conversation, log).into(),
        Err(code) => code.into(),
    }
}

/// `split_pass`: asks for password followed by code, hands the password on and keeps
/// the code for `use_split_code`; checks nothing and changes no state, so a stranger
/// without the password can neither spend a code nor count a failure. Every user,
/// enrolled or not, known or not, is asked the same question and gets the same
/// PAM_IGNORE: for anyone not enrolled the whole answer is the password, so nothing
/// here tells an outsider who is enrolled.
fn split_pass(
    request: &Request,
    host: &dyn Host,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Ending {
    let digits = enrolled_digits(request, host, log);
    let full = match conversation.prompt(request.policy.prompt_text()) {
        Ok(full) => full,
        Err(e) => {
            log.error(&e.to_string());
            return PamResultCode::PAM_CONV_ERR.into();
        }
    };
    let (password, code) = match digits {
        None => (full, None),
        Some(digits) => match split_password_and_code(&full, digits) {
            Some((password, code)) => (password, Some(code)),
            None => {
                // Kept as an empty code: after a right password it fails like a wrong code.
                log.debug("split_pass: answer does not end in a code");
                (full, Some(Zeroizing::new(String::new())))
            }
        },
    };
    Ending {
        code: PamResultCode::PAM_IGNORE,
        password_to_hand_on: Some(password),
        split_code: code.map(|code| SplitCode {
            user: request.user.to_string(),
            code,
        }),
    }
}

/// The number of digits of the user's codes, if the user is known and enrolled. Any
/// other case is decided by the `use_split_code` line, after the password.
fn enrolled_digits(request: &Request, host: &dyn Host, log: &Logger) -> Option<u32> {
    let account = host.account(request.user).ok()??;
    let path = expand_secret_path(&request.policy.secret, &account.name, &account.home).ok()?;
    match host.enrollment(&path, &account) {
        Ok((enrollment, _)) => Some(enrollment.digits),
        Err(e) => {
            log.debug(&format!(
                "split_pass: {}: {e}; the whole answer is the password",
                path.display()
            ));
            None
        }
    }
}

/// Decides `answer` and saves the outcome: reads the record, decides with the core rules,
/// writes it back if it is unchanged since the read (else reads again, a bounded number of
/// times). The verdict and the time it was decided at, or the return code if nothing could
/// be decided or saved.
fn settle(
    context: &Context,
    host: &dyn Host,
    answer: &str,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Result<(Verdict, u64), PamResultCode> {
    let records = host.records();
    let settled = settle_held(context, records, answer, now, log);
    records.release();
    settled
}

fn settle_held(
    context: &Context,
    records: &dyn Records,
    answer: &str,
    now: &dyn Fn() -> u64,
    log: &Logger,
) -> Result<(Verdict, u64), PamResultCode> {
    let (account, enrolled) = (context.account, &context.enrolled);
    for attempt in 1..=MAX_ATTEMPTS {
        let record = records
            .read(account, enrolled)
            .map_err(|e| unavailable(log, &e))?;
        let time = record.clock.unwrap_or_else(now);
        let state = record.state.clone().unwrap_or_default();
        let decision = decide(
            enrolled,
            context.source,
            &state,
            &context.policy.limits,
            answer,
            time,
        );
        let verdict = decision.verdict;
        if record.state.as_ref() == Some(&decision.state) {
            return Ok((verdict, time));
        }
        // Not saved means not accepted: a code that cannot be retired must not work.
        let written = records
            .write_if_unchanged(
                account,
                enrolled,
                record.version,
                &decision.state,
                durability_of(&verdict),
            )
            .map_err(|e| unavailable(log, &e))?;
        match written {
            Written::Written => {
                if matches!(verdict, Verdict::Accepted(_)) {
                    records.replicated().map_err(|e| unavailable(log, &e))?;
                }
                return Ok((verdict, time));
            }
            Written::Changed if attempt < MAX_ATTEMPTS && records.retry_after_change(attempt) => {
                log.debug(&format!(
                    "the record changed since it was read (another host); deciding again ({attempt})"
                ));
            }
            Written::Changed => break,
        }
    }
    log.error(&format!(
        "the record kept changing under this login's write-backs (other hosts logging the \
         same person in); gave up after at most {MAX_ATTEMPTS} attempts; refused"
    ));
    Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
}

/// How durably a decision's state must be saved. A spent code (and a lockout imposed)
/// is on stable storage before the verdict is given; a failure that locks nothing is
/// only buffered: after a machine crash the failure count may be lower (SECURITY.md has
/// the arithmetic), never a spent code usable again.
fn durability_of(verdict: &Verdict) -> Durability {
    match verdict {
        Verdict::Accepted(_)
        | Verdict::Rejected {
            locked: Some(_), ..
        } => Durability::Synced,
        Verdict::Rejected { locked: None, .. }
        | Verdict::Replayed(_)
        | Verdict::Locked(_)
        | Verdict::NoRoom => Durability::Buffered,
    }
}

fn unavailable(log: &Logger, error: &RecordError) -> PamResultCode {
    log.error(&error.to_string());
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

fn load_enrollment(
    host: &dyn Host,
    account: &Account,
    request: &Request,
    checked_at: u64,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Result<(Enrollment, PathBuf, Custody), PamResultCode> {
    let policy = request.policy;
    let path = expand_secret_path(&policy.secret, &account.name, &account.home).map_err(|e| {
        log.error(&e.to_string());
        PamResultCode::PAM_AUTHINFO_UNAVAIL
    })?;
    match host.enrollment(&path, account) {
        Ok((enrollment, custody)) => Ok((enrollment, path, custody)),
        Err(UserFileError::NotEnrolled) => Err(unenrolled::decide(
            policy,
            &path,
            request.earlier_factor_passed,
            checked_at,
            conversation,
            log,
        )),
        Err(e) => {
            // A broken file never means "no second factor", not even with nullok.
            log.error(&format!("{}: {e}", path.display()));
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
    }
}

/// try_first_pass: the earlier module's token, if it has the shape of a code (a
/// password that does not is no guess at all, and is not tried).
fn first_pass_code(request: &Request, enrollment: &Enrollment) -> Option<Zeroizing<String>> {
    request
        .authtok
        .as_ref()
        .filter(|token| as_code(token, enrollment.digits).is_some())
        .cloned()
}

/// The answer to check (the setuid checker's too, which the module answers the same way).
pub(crate) fn obtain_answer(
    request: &Request,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> Result<Zeroizing<String>, PamResultCode> {
    let policy = request.policy;
    let mut ask = || {
        conversation.prompt(policy.prompt_text()).map_err(|e| {
            log.error(&e.to_string());
            PamResultCode::PAM_CONV_ERR
        })
    };
    match policy.pass_mode {
        // try_first_pass: the token, if it was a code, has been tried already.
        PassMode::Prompt | PassMode::TryFirstPass => ask(),
        PassMode::UseFirstPass => match &request.authtok {
            Some(token) => Ok(token.clone()),
            None => {
                log.error("use_first_pass: no PAM_AUTHTOK from an earlier module");
                Err(PamResultCode::PAM_AUTH_ERR)
            }
        },
        PassMode::UseSplitCode => match &request.split_code {
            Some(kept) if kept.user == request.user => Ok(kept.code.clone()),
            Some(_) => {
                log.error("use_split_code: the kept code was typed for another user; refused");
                Err(PamResultCode::PAM_AUTH_ERR)
            }
            None => {
                log.error(
                    "use_split_code: no code kept by an earlier \"pam_otp.so split_pass\" line; refused",
                );
                Err(PamResultCode::PAM_AUTH_ERR)
            }
        },
        PassMode::SplitPass => unreachable_split(log),
    }
}

/// `split_pass` never reaches the answer of a checking login; fail closed if it does.
fn unreachable_split(log: &Logger) -> Result<Zeroizing<String>, PamResultCode> {
    log.error("split_pass reached the code check; refused");
    Err(PamResultCode::PAM_SERVICE_ERR)
}

fn scope_text(scope: LockScope) -> &'static str {
    match scope {
        LockScope::User => "user locked out from every source",
        LockScope::Source => "this source is locked out",
        LockScope::OtherSources => "sources not remembered individually are locked out",
    }
}

fn report_locked(
    lock: Lock,
    time: u64,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    let wait = lock.until.saturating_sub(time);
    log.warning(&format!(
        "{} for {wait} more seconds; no code checked",
        scope_text(lock.scope)
    ));
    // sshd shows this before "Permission denied (keyboard-interactive)"; no code is
    // asked for while locked, so it is the only thing that says why.
    let _ = conversation.error(&format!(
        "Locked out after too many failed attempts; try again in {}, or ask an administrator to unlock you.",
        wait_in_words(wait)
    ));
    // Not PAM_MAXTRIES: on that sshd offers the client no method at all, and the OpenSSH
    // client falls back to asking for a password that can never work.
    PamResultCode::PAM_PERM_DENIED
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

/// What the log and the person are told of a replay (refused, never counted).
fn replay_words(replay: Replay) -> (String, String) {
    let plain = |what: &str, told: &str| {
        (
            format!("replay: {what} was given again (refused, not counted as a failure)"),
            told.to_string(),
        )
    };
    match replay {
        Replay::Code => plain("a code already used", REPLAY_MESSAGE),
        Replay::RecoveryCode => plain(
            "a recovery code already spent",
            "This recovery code was already used.",
        ),
        Replay::ClockWentBack { seconds } => (
            format!(
                "refused a code of a time already used: a code {seconds} seconds ahead of this \
                 host's clock was accepted before, so the clock went back (or was ahead then); \
                 codes work again once the clock has caught up, or at once after \
                 otp-admin reset (not counted as a failure)"
            ),
            format!(
                "This code is refused: this computer's clock is {} behind the time of an \
                 earlier login. Ask an administrator to check the clock.",
                wait_in_words(seconds)
            ),
        ),
    }
}

fn report(
    verdict: Verdict,
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
        Verdict::Replayed(replay) => {
            let (logged, told) = replay_words(replay);
            log.warning(&logged);
            let _ = conversation.error(&told);
            PamResultCode::PAM_AUTH_ERR
        }
        Verdict::Rejected {
            failures,
            user_failures,
            locked: None,
        } => {
            let limits = &policy.limits;
            let limit = match (limits.max_failures, limits.max_failures_user) {
                (0, _) => "no lockout".to_string(),
                (max, 0) => format!("lockout after {max}"),
                (max, user) => {
                    format!("lockout after {max}; {user_failures} of {user} for the user")
                }
            };
            log.warning(&format!(
                "wrong code ({failures} consecutive failures from this source, {limit})"
            ));
            PamResultCode::PAM_AUTH_ERR
        }
        Verdict::Rejected {
            locked: Some(lock), ..
        } => {
            let wait = lock.until.saturating_sub(time);
            log.warning(&format!(
                "wrong code: {} for {wait} seconds",
                scope_text(lock.scope)
            ));
            let _ = conversation.error(&format!(
                "Too many failed attempts; locked for {wait} seconds."
            ));
            PamResultCode::PAM_AUTH_ERR
        }
        Verdict::Locked(lock) => report_locked(lock, time, conversation, log),
        Verdict::NoRoom => {
            log.error(
                "the right code, but the state already holds 8 enrollments used within a \
                 week and cannot remember a ninth; refused (see otp-admin status)",
            );
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ConversationError;
    use pam_otp_sys::log::Level;
    use pam_otp_sys::store::StoreError;
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

    /// Another host's write, coming between a read and its write-back.
    type OtherHost = fn(&mut State);

    /// The system as a login sees it: one account, its enrollment file's text (or none),
    /// the record, and whether saving fails. With a `fleet_skew` it stands for a fleet's
    /// shared record: the store's clock decides, and a write-back finds the record changed
    /// when `other_hosts` write in between.
    struct ScriptedHost {
        account: Account,
        enrollment: Option<String>,
        stored: RefCell<Stored>,
        saves: RefCell<u32>,
        /// How durably each changed state was to be saved, in order.
        durabilities: RefCell<Vec<Durability>>,
        save_fails: bool,
        /// Who can change the scripted enrollment.
        custody: Custody,
        /// A fleet's server clock minus the host's, if this stands for a fleet.
        fleet_skew: Option<i64>,
        /// The host's clock in the login under way (set by `run`).
        host_now: RefCell<u64>,
        /// The record's version: one more with every write.
        version: RefCell<u64>,
        /// Writes of other hosts, one before each write-back, in order.
        other_hosts: RefCell<VecDeque<OtherHost>>,
        /// Reads for a decision.
        reads: RefCell<u32>,
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
                durabilities: RefCell::new(Vec::new()),
                save_fails: false,
                custody: Custody::User,
                fleet_skew: None,
                host_now: RefCell::new(0),
                version: RefCell::new(0),
                other_hosts: RefCell::new(VecDeque::new()),
                reads: RefCell::new(0),
            }
        }

        /// A fleet's shared record whose server's clock is `skew` seconds ahead of the
        /// host's.
        fn fleet(enrollment: Option<&str>, skew: i64) -> ScriptedHost {
            ScriptedHost {
                fleet_skew: Some(skew),
                ..ScriptedHost::new(enrollment)
            }
        }

        /// The same login flow over both stores: the state file, and a fleet's record.
        fn both(enrollment: Option<&str>) -> [ScriptedHost; 2] {
            [
                ScriptedHost::new(enrollment),
                ScriptedHost::fleet(enrollment, 0),
            ]
        }

        fn corrupt(&self) -> RecordError {
            RecordError::Store(StoreError::Corrupt {
                path: "/state/tester.state".into(),
                why: "not a state file".into(),
            })
        }

        fn record(&self) -> Result<Record, RecordError> {
            let state = match &*self.stored.borrow() {
                Stored::Nothing => None,
                Stored::State(state) => Some(state.clone()),
                Stored::Corrupt => return Err(self.corrupt()),
            };
            Ok(Record {
                state,
                version: *self.version.borrow(),
                clock: self
                    .fleet_skew
                    .map(|skew| self.host_now.borrow().saturating_add_signed(skew)),
            })
        }

        fn state(&self) -> State {
            match &*self.stored.borrow() {
                Stored::State(state) => state.clone(),
                other => panic!("no state: {other:?}"),
            }
        }
    }

    impl Host for ScriptedHost {
        fn account(&self, name: &str) -> Result<Option<Account>, AccountError> {
            Ok((name == self.account.name).then(|| self.account.clone()))
        }

        fn enrollment(
            &self,
            path: &Path,
            account: &Account,
        ) -> Result<(Enrollment, Custody), UserFileError> {
            assert_eq!(path, account.home.join(".otp.toml"));
            let text = self
                .enrollment
                .as_deref()
                .ok_or(UserFileError::NotEnrolled)?;
            let enrollment = Enrollment::parse(text).map_err(UserFileError::Invalid)?;
            Ok((enrollment, self.custody))
        }

        fn records(&self) -> &dyn Records {
            self
        }
    }

    impl Records for ScriptedHost {
        fn peek(&self, account: &Account) -> Result<Record, RecordError> {
            assert_eq!(account.uid, self.account.uid);
            self.record()
        }

        fn read(&self, account: &Account, _: &EnrollmentRef) -> Result<Record, RecordError> {
            assert_eq!(account.uid, self.account.uid);
            *self.reads.borrow_mut() += 1;
            self.record()
        }

        fn write_if_unchanged(
            &self,
            account: &Account,
            _: &EnrollmentRef,
            version: u64,
            state: &State,
            durability: Durability,
        ) -> Result<Written, RecordError> {
            assert_eq!(account.uid, self.account.uid);
            if let Some(other) = self.other_hosts.borrow_mut().pop_front() {
                let mut theirs = self.record()?.state.unwrap_or_default();
                other(&mut theirs);
                *self.stored.borrow_mut() = Stored::State(theirs);
                *self.version.borrow_mut() += 1;
            }
            if version != *self.version.borrow() {
                return Ok(Written::Changed);
            }
            self.durabilities.borrow_mut().push(durability);
            if self.save_fails {
                return Err(RecordError::Store(StoreError::Io {
                    path: "/state/tester.state".into(),
                    action: "write",
                    error: std::io::Error::from_raw_os_error(libc::ENOSPC),
                }));
            }
            *self.saves.borrow_mut() += 1;
            *self.version.borrow_mut() += 1;
            *self.stored.borrow_mut() = Stored::State(state.clone());
            Ok(Written::Written)
        }

        fn release(&self) {}

        fn retry_after_change(&self, _: u32) -> bool {
            true
        }

        fn replicated(&self) -> Result<(), RecordError> {
            Ok(())
        }
    }

    fn policy(args: &[&str]) -> Policy {
        pam_otp_sys::policy::parse(args, None).unwrap()
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
        let request = Request {
            user: "tester",
            policy,
            authtok: authtok.map(|t| Zeroizing::new(t.to_string())),
            split_code: None,
            source: Source::from_rhost(""),
            earlier_factor_passed: true,
        };
        run(&request, host, script, time)
    }

    fn run(
        request: &Request,
        host: &ScriptedHost,
        script: &mut Script,
        time: u64,
    ) -> (Ending, Logger) {
        let log = Logger::memory("test");
        *host.host_now.borrow_mut() = time;
        (login(request, host, script, &|| time, &log), log)
    }

    /// A `use_split_code` login of "tester" at `time`, given what the `split_pass` line
    /// kept: (the user it was typed for, the code).
    fn use_kept(
        host: &ScriptedHost,
        kept: Option<(&str, &str)>,
        time: u64,
    ) -> (PamResultCode, Logger) {
        let p = policy(&["use_split_code"]);
        let request = Request {
            user: "tester",
            policy: &p,
            authtok: None,
            split_code: kept.map(|(user, code)| SplitCode {
                user: user.into(),
                code: Zeroizing::new(code.into()),
            }),
            source: Source::from_rhost(""),
            earlier_factor_passed: true,
        };
        let mut script = answering(&[]);
        let (ending, log) = run(&request, host, &mut script, time);
        assert!(script.prompts.is_empty(), "use_split_code asked");
        assert!(ending.password_to_hand_on.is_none() && ending.split_code.is_none());
        (ending.code, log)
    }

    /// A `split_pass` login of `user` answering `answer`: what it handed on and kept.
    fn split(host: &ScriptedHost, user: &str, args: &[&str], answer: &'static str) -> Ending {
        let p = policy(&[&["split_pass"], args].concat());
        let request = Request {
            user,
            policy: &p,
            authtok: None,
            split_code: None,
            source: Source::from_rhost(""),
            earlier_factor_passed: true,
        };
        let mut script = answering(&[answer]);
        let (ending, log) = run(&request, host, &mut script, T1.0);
        assert_eq!(script.prompts, vec!["Password and verification code: "]);
        assert!(script.errors.is_empty() && script.infos.is_empty());
        assert!(!log.lines().iter().any(|(_, l)| l.contains(answer)));
        ending
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

    #[test]
    fn right_code_then_replay() {
        for host in ScriptedHost::both(Some(&totp8())) {
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
            split_code: None,
            source: Source::from_rhost(""),
            earlier_factor_passed: true,
        };
        let ending = login(&request, &host, &mut answering(&[]), &|| T1.0, &log);
        assert_eq!(ending.code, PamResultCode::PAM_USER_UNKNOWN);
        assert_eq!(*host.stored.borrow(), Stored::Nothing);
    }

    #[test]
    fn prompt_is_the_configured_one() {
        for host in ScriptedHost::both(Some(&totp8())) {
            let mut script = answering(&[T2.1]);
            let code = attempt(&host, &policy(&["prompt=Code? "]), &mut script, T2.0).0;
            assert_eq!(code, PamResultCode::PAM_SUCCESS);
            assert_eq!(script.prompts, vec!["Code? "]);
        }
    }

    #[test]
    fn lockout_stops_asking_and_tells_the_user() {
        for host in ScriptedHost::both(Some(&totp8())) {
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
            assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
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
            // A failure is buffered; the lockout and the spent code are synced.
            assert_eq!(
                *host.durabilities.borrow(),
                [Durability::Buffered, Durability::Synced, Durability::Synced]
            );
        }
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
    fn a_lock_holds_even_when_the_enrollment_is_gone_or_broken() {
        let locked = State {
            all: pam_otp_core::state::Tallies {
                user: pam_otp_core::state::Tally {
                    locked_until: T1.0 + 100,
                    ..Default::default()
                },
                ..Default::default()
            },
            ..State::default()
        };
        for enrollment in [None, Some("secret = \"JBSWY3DPEHPK3PXP\"\nwindow = 9\n")] {
            let host = ScriptedHost::new(enrollment);
            *host.stored.borrow_mut() = Stored::State(locked.clone());
            let mut script = answering(&[]);
            let code = attempt(&host, &policy(&["nullok"]), &mut script, T1.0).0;
            assert_eq!(code, PamResultCode::PAM_PERM_DENIED, "{enrollment:?}");
            assert!(script.prompts.is_empty());
            assert!(
                script.errors[0].contains("100 seconds"),
                "{:?}",
                script.errors
            );
        }
    }

    #[test]
    fn an_unreadable_store_refuses_only_users_who_need_it() {
        for (enrollment, args, expected) in [
            (None, &["nullok"][..], PamResultCode::PAM_IGNORE),
            (None, &[][..], PamResultCode::PAM_AUTHINFO_UNAVAIL),
            (
                Some(totp8()),
                &["nullok"][..],
                PamResultCode::PAM_AUTHINFO_UNAVAIL,
            ),
        ] {
            let host = ScriptedHost::new(enrollment.as_deref());
            *host.stored.borrow_mut() = Stored::Corrupt;
            let mut script = answering(&[]);
            let code = attempt(&host, &policy(args), &mut script, T1.0).0;
            assert_eq!(code, expected, "{enrollment:?} {args:?}");
            assert!(script.prompts.is_empty());
        }
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
    fn split_pass_checks_nothing_and_keeps_the_code() {
        let host = ScriptedHost::new(Some(&totp8()));
        let ending = split(&host, "tester", &[], "correct horse07081804\n");
        assert_eq!(ending.code, PamResultCode::PAM_IGNORE);
        assert_eq!(
            ending.password_to_hand_on.unwrap().as_str(),
            "correct horse"
        );
        let kept = ending.split_code.unwrap();
        assert_eq!((kept.user.as_str(), kept.code.as_str()), ("tester", T1.1));
        // Nothing was checked, so nothing was written: no code spent, no failure counted.
        assert_eq!(*host.stored.borrow(), Stored::Nothing);

        // An answer without a code: all of it is the password, and an empty code is
        // kept, which fails like a wrong code once the password has passed.
        let ending = split(&host, "tester", &[], "correct horse");
        assert_eq!(
            ending.password_to_hand_on.unwrap().as_str(),
            "correct horse"
        );
        assert_eq!(ending.split_code.unwrap().code.as_str(), "");
    }

    #[test]
    fn split_pass_asks_a_locked_user_the_same_and_changes_nothing() {
        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["max_failures=1", "lockout=100"]);
        attempt(&host, &p, &mut answering(&["00000000"]), T1.0);
        let locked = host.stored.borrow().clone();
        let ending = split(&host, "tester", &["max_failures=1"], "pw07081804");
        assert_eq!(ending.code, PamResultCode::PAM_IGNORE);
        assert!(ending.split_code.is_some());
        assert_eq!(*host.stored.borrow(), locked);
    }

    #[test]
    fn split_pass_tells_no_one_who_is_enrolled() {
        // Not enrolled (with or without nullok), broken file, unknown user: the same
        // question, the same PAM_IGNORE, the whole answer handed on as the password,
        // nothing kept (use_split_code decides them after the password).
        let unenrolled = ScriptedHost::new(None);
        let broken = ScriptedHost::new(Some("secret = \"JBSWY3DPEHPK3PXP\"\nwindow = 9\n"));
        for (host, user, args) in [
            (&unenrolled, "tester", &[][..]),
            (&unenrolled, "tester", &["nullok"][..]),
            (&broken, "tester", &["nullok"][..]),
            (&unenrolled, "nobody-here", &[][..]),
        ] {
            let ending = split(host, user, args, "hunter2-07081804");
            assert_eq!(ending.code, PamResultCode::PAM_IGNORE, "{user} {args:?}");
            assert_eq!(
                ending.password_to_hand_on.unwrap().as_str(),
                "hunter2-07081804"
            );
            assert!(ending.split_code.is_none());
            assert_eq!(*host.stored.borrow(), Stored::Nothing);
        }
    }

    #[test]
    fn use_split_code_checks_the_kept_code_once() {
        let host = ScriptedHost::new(Some(&totp8()));
        let (code, _) = use_kept(&host, Some(("tester", T1.1)), T1.0);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        let (code, _) = use_kept(&host, Some(("tester", T1.1)), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR, "replayed");
        // An answer that held no code counts like a wrong code: the password was right.
        let saves = *host.saves.borrow();
        let (code, log) = use_kept(&host, Some(("tester", "")), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
        assert!(log.lines()[0].1.contains("wrong code"), "{:?}", log.lines());
        assert_eq!(
            *host.saves.borrow(),
            saves + 1,
            "the failure was not counted"
        );
    }

    #[test]
    fn use_split_code_without_a_kept_code_fails_closed_and_counts_nothing() {
        let host = ScriptedHost::new(Some(&totp8()));
        for (kept, logged) in [
            (None, "no code kept by an earlier"),
            (Some(("someone-else", T1.1)), "typed for another user"),
        ] {
            let (code, log) = use_kept(&host, kept, T1.0);
            assert_eq!(code, PamResultCode::PAM_AUTH_ERR, "{kept:?}");
            assert!(log.lines()[0].1.contains(logged), "{:?}", log.lines());
            assert_eq!(*host.stored.borrow(), Stored::Nothing);
        }
    }

    #[test]
    fn use_split_code_decides_the_unenrolled_and_the_locked() {
        let unenrolled = ScriptedHost::new(None);
        let (code, _) = use_kept(&unenrolled, None, T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        let p = policy(&["use_split_code", "nullok"]);
        let request = Request {
            user: "tester",
            policy: &p,
            authtok: None,
            split_code: None,
            source: Source::from_rhost(""),
            earlier_factor_passed: true,
        };
        let (ending, _) = run(&request, &unenrolled, &mut answering(&[]), T1.0);
        assert_eq!(ending.code, PamResultCode::PAM_IGNORE);

        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["max_failures=1", "lockout=100"]);
        attempt(&host, &p, &mut answering(&["00000000"]), T1.0);
        let (code, _) = use_kept(&host, Some(("tester", T2.1)), T1.0 + 1);
        assert_eq!(code, PamResultCode::PAM_PERM_DENIED);
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
        let hash = pam_otp_core::recovery::RecoveryHash::new("abcd-efgh", [9; 16]).to_stored();
        for host in ScriptedHost::both(Some(&format!("{}recovery_codes = [\"{hash}\"]\n", totp8())))
        {
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
        for host in ScriptedHost::both(Some(&totp8())) {
            *host.stored.borrow_mut() = Stored::Corrupt;
            let mut script = answering(&[]);
            let (code, log) = attempt(&host, &policy(&[]), &mut script, T2.0);
            assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
            assert!(script.prompts.is_empty());
            assert_eq!(*host.stored.borrow(), Stored::Corrupt);
            assert!(log.lines()[0].1.contains("otp-admin reset"));
        }
    }

    #[test]
    fn a_code_that_cannot_be_saved_is_not_accepted() {
        for mut host in ScriptedHost::both(Some(&totp8())) {
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

    #[test]
    fn a_replay_is_named_to_the_user_and_not_counted() {
        for host in ScriptedHost::both(Some(&totp8())) {
            let p = policy(&["max_failures=1"]);
            let code = attempt(&host, &p, &mut answering(&[T1.1]), T1.0).0;
            assert_eq!(code, PamResultCode::PAM_SUCCESS);
            for _ in 0..3 {
                let mut script = answering(&[T1.1]);
                let (code, log) = attempt(&host, &p, &mut script, T1.0);
                assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
                assert_eq!(script.errors, [REPLAY_MESSAGE]);
                assert!(log.lines()[0].1.contains("replay"), "{:?}", log.lines());
            }
            let Stored::State(state) = &*host.stored.borrow() else {
                panic!("no state")
            };
            assert_eq!(state.all.user.failures, 0);
            assert!(state.all.sources.is_empty());
        }
    }

    #[test]
    fn try_first_pass_counts_a_code_shaped_miss_once_then_asks() {
        for host in ScriptedHost::both(Some(&totp8())) {
            let p = policy(&["try_first_pass"]);
            // The earlier password looks like an 8-digit code but is not this one.
            let mut script = answering(&[T1.1]);
            let (ending, log) = attempt_with(&host, &p, &mut script, T1.0, Some("48291300"));
            assert_eq!(ending.code, PamResultCode::PAM_SUCCESS);
            assert_eq!(script.prompts.len(), 1, "the code was not asked for");
            assert!(
                log.lines()[0].1.contains("try_first_pass"),
                "{:?}",
                log.lines()
            );
            let Stored::State(state) = host.stored.borrow().clone() else {
                panic!("no state")
            };
            assert_eq!(state.all.user.failures, 0, "the success clears the miss");
            // A miss and then a wrong code: both were checked, both count.
            let mut script = answering(&["00000000"]);
            let (ending, _) = attempt_with(&host, &p, &mut script, T2.0, Some("48291300"));
            assert_eq!(ending.code, PamResultCode::PAM_AUTH_ERR);
            let Stored::State(state) = host.stored.borrow().clone() else {
                panic!("no state")
            };
            assert_eq!(state.all.user.failures, 2);
        }
    }

    #[test]
    fn a_locked_source_is_refused_before_the_prompt_and_others_are_asked() {
        let host = ScriptedHost::new(Some(&totp8()));
        let p = policy(&["max_failures=1"]);
        let log = Logger::memory("test");
        let from = |rhost: &str| Request {
            user: "tester",
            policy: &p,
            authtok: None,
            source: Source::from_rhost(rhost),
            earlier_factor_passed: true,
            split_code: None,
        };
        let mut script = answering(&["00000000"]);
        let ending = login(&from("192.0.2.9"), &host, &mut script, &|| T1.0, &log);
        assert_eq!(ending.code, PamResultCode::PAM_AUTH_ERR);
        let mut script = answering(&[]);
        let ending = login(&from("192.0.2.9"), &host, &mut script, &|| T1.0, &log);
        assert_eq!(ending.code, PamResultCode::PAM_PERM_DENIED);
        assert!(script.prompts.is_empty());
        let mut script = answering(&[T1.1]);
        let ending = login(&from("198.51.100.1"), &host, &mut script, &|| T1.0, &log);
        assert_eq!(ending.code, PamResultCode::PAM_SUCCESS);
    }

    /// A failure counted by another host.
    fn another_hosts_failure(state: &mut State) {
        state.all.user.failures += 1;
    }

    /// Another host accepting T1's code (the RFC enrollment, step of T1) first.
    fn another_host_accepts_t1(state: &mut State) {
        let enrollment = Enrollment::parse(&totp8()).unwrap();
        let enrolled = EnrollmentRef::new(&enrollment, "/home/tester/.otp.toml", Custody::User);
        let record = pam_otp_core::state::EnrollmentRecord {
            last_totp_step: Some(T1.0 / 30),
            ..enrolled.fresh_record()
        };
        assert!(state.accept(&enrolled, record, T1.0));
    }

    #[test]
    fn a_fleet_login_decides_at_the_servers_clock() {
        // This host's clock is an hour behind the fleet's: the code of the server's time
        // is the one accepted, and lockouts end when the server says.
        let host = ScriptedHost::fleet(Some(&totp8()), 3600);
        let local = T1.0 - 3600;
        let p = policy(&["max_failures=1", "lockout=100"]);
        let (code, _) = attempt(&host, &p, &mut answering(&[T1.1]), local);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
        let mut script = answering(&["00000000"]);
        assert_eq!(
            attempt(&host, &p, &mut script, local + 1).0,
            PamResultCode::PAM_AUTH_ERR
        );
        let until = host.state().all.sources["local"].locked_until;
        assert_eq!(
            until,
            T1.0 + 1 + 100,
            "the deadline is in the server's clock"
        );
        let mut script = answering(&[]);
        assert_eq!(
            attempt(&host, &p, &mut script, local + 11).0,
            PamResultCode::PAM_PERM_DENIED
        );
        assert!(
            script.errors[0].contains("90 seconds"),
            "{:?}",
            script.errors
        );
    }

    #[test]
    fn a_write_back_that_finds_the_record_changed_decides_again() {
        let host = ScriptedHost::fleet(Some(&totp8()), 0);
        let p = policy(&[]);
        host.other_hosts
            .borrow_mut()
            .extend([another_hosts_failure as OtherHost]);
        let (code, _) = attempt(&host, &p, &mut answering(&["00000000"]), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
        assert_eq!(*host.reads.borrow(), 2, "read again after the change");
        assert_eq!(host.state().all.user.failures, 2, "both failures count");
        // Another host accepted the same code in between: here it is a replay.
        let host = ScriptedHost::fleet(Some(&totp8()), 0);
        host.other_hosts
            .borrow_mut()
            .extend([another_host_accepts_t1 as OtherHost]);
        let mut script = answering(&[T1.1]);
        let (code, _) = attempt(&host, &p, &mut script, T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTH_ERR);
        assert_eq!(script.errors, [REPLAY_MESSAGE]);
        assert_eq!(*host.saves.borrow(), 0, "the replay wrote nothing");
    }

    #[test]
    fn a_record_that_keeps_changing_refuses_the_login_and_writes_nothing() {
        let host = ScriptedHost::fleet(Some(&totp8()), 0);
        host.other_hosts
            .borrow_mut()
            .extend([another_hosts_failure as OtherHost; MAX_ATTEMPTS as usize]);
        let (code, log) = attempt(&host, &policy(&[]), &mut answering(&[T1.1]), T1.0);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(*host.reads.borrow(), MAX_ATTEMPTS);
        assert_eq!(*host.saves.borrow(), 0);
        assert!(
            log.lines().iter().any(|(_, l)| l.contains("kept changing")),
            "{:?}",
            log.lines()
        );
        // Only the other hosts' failures are in the record; the code is still good.
        assert_eq!(host.state().all.user.failures, MAX_ATTEMPTS);
        let (code, _) = attempt(&host, &policy(&[]), &mut answering(&[T1.1]), T1.0);
        assert_eq!(code, PamResultCode::PAM_SUCCESS);
    }
}
