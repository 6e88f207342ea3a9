//! Logins whose PAM caller is not root (a screen locker runs as the user): the module
//! cannot open the root-only state, so the setuid checker `pam_otp_check` decides. This
//! side runs it with an empty environment, answers its one question over a pipe, relays
//! what it tells the user, and turns its exit status into the return code.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};

use ::pam::constants::PamResultCode;
use pam_otp_sys::sigpipe::BlockedSigpipe;
use zeroize::Zeroizing;

use crate::conversation::Conversation;
use crate::login::{obtain_answer, Request};
use pam_otp_sys::companion::{module_directory, usable_checker};
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::PassMode;

/// What the user sees when there is no usable checker (the log says what to fix).
const NO_CHECKER_MESSAGE: &str =
    "One-time codes cannot be checked for this program; ask an administrator (see syslog).";

/// The pipe between the module and the checker, both sides.
pub(crate) mod wire {
    /// A line from the checker: it wants the answer (the module asks the user, or gives
    /// the token it has), sent back NUL-terminated on the checker's standard input.
    pub const ASK: &str = "?";
    /// A line from the checker: `i TEXT`, information for the user (PAM_TEXT_INFO).
    pub const INFO: &str = "i ";
    /// A line from the checker: `e TEXT`, an error for the user (PAM_ERROR_MSG).
    pub const ERROR: &str = "e ";
    /// The longest answer the checker reads (libpam's PAM_MAX_RESP_SIZE).
    pub const MAX_ANSWER: usize = 512;
    /// Bounds on what the module reads from the checker, which writes a few short lines.
    pub const MAX_LINE: usize = 1024;
    pub const MAX_LINES: usize = 16;
    /// The checker's flags, the module's rule for a user with no enrollment (the only
    /// policy it passes on: it decides nothing for an enrolled user): `nullok`, or
    /// `enforce_after=DATE`, and whether an earlier factor passed (the user is then told
    /// why an unenrolled login is refused or let through).
    pub const NULLOK: &str = "nullok";
    pub const ENFORCE_AFTER: &str = "enforce_after=";
    pub const EARLIER_FACTOR_PASSED: &str = "earlier_factor_passed";
}

/// Whether this login runs without root, so that only the checker can decide it.
pub(crate) fn runs_without_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() != 0 }
}

/// One login through the checker, for a caller that is not root.
pub(crate) fn login(
    request: &Request,
    service: &str,
    rhost: &str,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    let checker = match module_directory().and_then(|dir| usable_checker(&dir)) {
        Ok(checker) => checker,
        Err(why) => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            log.error(&format!(
                "this program runs as uid {uid}, not root, so only the setuid checker \
                 pam_otp_check can read the state; {why}; refused"
            ));
            let _ = conversation.error(NO_CHECKER_MESSAGE);
            return PamResultCode::PAM_AUTHINFO_UNAVAIL;
        }
    };
    let mut command = Command::new(&checker);
    command
        .args([request.user, service, rhost])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if request.policy.nullok {
        command.arg(wire::NULLOK);
    }
    if let Some(deadline) = &request.policy.enforce_after {
        // The exact moment (to the second), which the checker parses back to this deadline.
        command.arg(format!("{}{}", wire::ENFORCE_AFTER, deadline.argument()));
    }
    if request.earlier_factor_passed {
        command.arg(wire::EARLIER_FACTOR_PASSED);
    }
    // SAFETY: the closure runs in the child between fork and exec and only makes the
    // close_range system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // The application's other descriptors are none of the checker's business.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let _default_sigchld = DefaultSigchld::set();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            log.error(&format!("cannot run {}: {e}; refused", checker.display()));
            let _ = conversation.error(NO_CHECKER_MESSAGE);
            return PamResultCode::PAM_AUTHINFO_UNAVAIL;
        }
    };
    converse(child, request, conversation, log)
}

/// Relays the checker's lines until it exits; its exit status is the login's code.
fn converse(
    mut child: Child,
    request: &Request,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    let mut stdin = child.stdin.take();
    let Some(stdout) = child.stdout.take() else {
        return ended(child, log, PamResultCode::PAM_SYSTEM_ERR);
    };
    let mut lines = BufReader::new(stdout).take((wire::MAX_LINE * wire::MAX_LINES) as u64);
    let mut asked = false;
    let mut unanswered = false;
    for _ in 0..wire::MAX_LINES {
        let mut line = Vec::new();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if line.len() <= wire::MAX_LINE && line.ends_with(b"\n") => {}
            _ => {
                log.error("the checker wrote something other than its short lines; refused");
                return ended(child, log, PamResultCode::PAM_SYSTEM_ERR);
            }
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if text == wire::ASK && !asked {
            asked = true;
            // By the module's own pass mode, as without the checker; try_first_pass
            // prompts, as the checker asks once (the token is not tried).
            let given = obtain_answer(request, conversation, log).ok();
            unanswered = given.is_none();
            // No answer: the checker reads end-of-file, decides nothing and says so.
            if let (Some(given), Some(pipe)) = (given, stdin.as_mut()) {
                send_answer(pipe, &given);
            }
            stdin = None;
        } else if let Some(info) = text.strip_prefix(wire::INFO) {
            let _ = conversation.info(info);
        } else if let Some(error) = text.strip_prefix(wire::ERROR) {
            let _ = conversation.error(error);
        } else {
            log.error("the checker wrote a line this module does not know; refused");
            return ended(child, log, PamResultCode::PAM_SYSTEM_ERR);
        }
    }
    drop(stdin);
    let code = match child.wait() {
        Ok(status) => match status.code().map(PamResultCode::try_from) {
            Some(Ok(code)) if is_checker_code(&code) => code,
            _ => {
                log.error(&format!("the checker ended with {status}; refused"));
                PamResultCode::PAM_SYSTEM_ERR
            }
        },
        Err(e) => {
            log.error(&format!("cannot wait for the checker: {e}; refused"));
            PamResultCode::PAM_SYSTEM_ERR
        }
    };
    // As without the checker: a first-pass mode with nothing to give fails as a wrong
    // answer, after the checker had its say (lockout, enrollment, nullok).
    let first_pass = matches!(
        request.policy.pass_mode,
        PassMode::UseFirstPass | PassMode::UseSplitCode
    );
    if unanswered && first_pass && code == PamResultCode::PAM_CONV_ERR {
        return PamResultCode::PAM_AUTH_ERR;
    }
    code
}

/// Writes the answer, NUL-terminated, with SIGPIPE blocked: a checker that has gone
/// must not kill the application (a screen locker) with it.
fn send_answer(pipe: &mut ChildStdin, given: &str) {
    let mut bytes = Zeroizing::new(Vec::with_capacity(given.len() + 1));
    bytes.extend_from_slice(given.as_bytes());
    bytes.push(0);
    let _blocked = BlockedSigpipe::block();
    // A failed write shows in the checker's exit status (no answer).
    let _ = pipe.write_all(&bytes);
}

/// The codes the checker exits with; anything else is not its decision.
fn is_checker_code(code: &PamResultCode) -> bool {
    use PamResultCode::*;
    matches!(
        code,
        PAM_SUCCESS
            | PAM_AUTH_ERR
            | PAM_PERM_DENIED
            | PAM_AUTHINFO_UNAVAIL
            | PAM_USER_UNKNOWN
            | PAM_CONV_ERR
            | PAM_IGNORE
            | PAM_SERVICE_ERR
            | PAM_SYSTEM_ERR
    )
}

/// Ends a checker that broke the protocol, and gives `code`.
fn ended(mut child: Child, log: &Logger, code: PamResultCode) -> PamResultCode {
    // Its real UID is the caller's, so the caller may end it.
    let _ = child.kill();
    if let Err(e) = child.wait() {
        log.error(&format!("cannot wait for the checker: {e}"));
    }
    code
}

/// SIGCHLD at its default while the checker runs, as pam_unix does for unix_chkpwd: an
/// application that ignores it would have the checker reaped before its status is read.
struct DefaultSigchld(libc::sigaction);

impl DefaultSigchld {
    fn set() -> Option<DefaultSigchld> {
        // SAFETY: sigaction with a zeroed (SIG_DFL) new action and a valid out-pointer for
        // the old one; nothing else is touched.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let default: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGCHLD, &default, &mut old) != 0 {
                return None;
            }
            Some(DefaultSigchld(old))
        }
    }
}

impl Drop for DefaultSigchld {
    fn drop(&mut self) {
        // SAFETY: restores the action saved by `set`.
        unsafe {
            libc::sigaction(libc::SIGCHLD, &self.0, std::ptr::null_mut());
        }
    }
}
