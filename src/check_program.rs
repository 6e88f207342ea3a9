//! The setuid-root checker `pam_otp_check`: decides one login for a PAM caller that is
//! not root (a screen locker), with the module's own login code, for the caller's own
//! account only, under the policy of root's files only.
//!
//! Whoever runs it is the user, or code running as the user, with any arguments,
//! environment, descriptors and limits. So: the environment is dropped before anything
//! reads it; the account must be the caller's (real UID); the policy is the policy file
//! and the built-in defaults (the only policy taken from the module, `nullok` or
//! `enforce_after`, decides only for a user with no enrollment, who has nothing to
//! guess); the service and remote host go to the
//! log only, and lockout counts every attempt as local; the lockout and replay guard
//! are the state's, shared with every other login. It gives no more than a login
//! gives: the verdict on the caller's own code, at the rate the lockout allows.
//!
//! Usage (by the module): `pam_otp_check USER SERVICE RHOST [nullok | enforce_after=DATE]
//! [earlier_factor_passed]`, the answer on
//! standard input (a pipe), NUL-terminated; lines for the user on standard output; the
//! exit status is the PAM return code.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ::pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::checker::wire;
use crate::conversation::{Conversation, ConversationError};
use crate::login::{login, Request};
use crate::records::SystemHost;
use pam_otp_core::source::Source;
use pam_otp_sys::account::Account;
use pam_otp_sys::clock::unix_now;
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::{self, Deadline, PassMode};

/// The checker's whole run; its result is the exit status (a PAM return code).
pub fn main() -> i32 {
    harden_process();
    let code = catch_unwind(AssertUnwindSafe(|| {
        run(std::env::args_os().skip(1).collect())
    }))
    .unwrap_or(PamResultCode::PAM_SERVICE_ERR);
    code as i32
}

/// What the process inherited from its caller that could steer it: the environment
/// (time zone, locale, anything a library might read), the file-creation mask, the
/// file size limit (a state record cut short) and the caller's groups. The standard descriptors are open:
/// Rust's runtime opens /dev/null on any that were closed, so no file this program
/// opens can become its standard output.
fn harden_process() {
    // SAFETY: called first thing in main, before any other thread exists or anything has
    // read the environment; the other calls only change this process's own settings.
    unsafe {
        libc::clearenv();
        libc::umask(0o077);
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        libc::setrlimit(libc::RLIMIT_FSIZE, &unlimited);
        // No core dump and no ptrace by the caller while an answer is in memory.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // Root's group and no supplementary ones: what it creates (the state directory,
        // lock and record files) is root:root, as when sshd's module creates them.
        libc::setgroups(0, std::ptr::null());
        libc::setresgid(u32::MAX, 0, u32::MAX);
    }
}

/// The arguments: `USER SERVICE RHOST [nullok | enforce_after=DATE]
/// [earlier_factor_passed]`.
struct Arguments {
    user: String,
    service: String,
    rhost: String,
    /// The module's rule for a user with no enrollment (nothing else of its policy).
    unenrolled: Unenrolled,
    earlier_factor_passed: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Unenrolled {
    Refused,
    Nullok,
    Until(Deadline),
}

fn parse_arguments(args: Vec<OsString>) -> Option<Arguments> {
    let args: Vec<String> = args
        .into_iter()
        .map(OsString::into_string)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, service, rhost, flags @ ..] = args.as_slice() else {
        return None;
    };
    let mut parsed = Arguments {
        user: user.clone(),
        service: service.clone(),
        rhost: rhost.clone(),
        unenrolled: Unenrolled::Refused,
        earlier_factor_passed: false,
    };
    for flag in flags {
        match flag.as_str() {
            wire::NULLOK if parsed.unenrolled == Unenrolled::Refused => {
                parsed.unenrolled = Unenrolled::Nullok;
            }
            wire::EARLIER_FACTOR_PASSED if !parsed.earlier_factor_passed => {
                parsed.earlier_factor_passed = true;
            }
            other => match other.strip_prefix(wire::ENFORCE_AFTER) {
                Some(date) if parsed.unenrolled == Unenrolled::Refused => {
                    parsed.unenrolled = Unenrolled::Until(Deadline::parse(date).ok()?);
                }
                _ => return None,
            },
        }
    }
    Some(parsed)
}

fn run(args: Vec<OsString>) -> PamResultCode {
    let Some(args) = parse_arguments(args) else {
        let log = Logger::syslog("pam_otp_check");
        log.error("called with wrong arguments (it is run by pam_otp.so, as: pam_otp_check USER SERVICE RHOST [nullok | enforce_after=DATE] [earlier_factor_passed]); refused");
        return PamResultCode::PAM_SYSTEM_ERR;
    };
    let mut log = Logger::syslog(&args.service);
    log.set_user(&args.user);
    log.set_rhost(&args.rhost);
    // SAFETY: isatty and getuid have no preconditions; fd 0 is open (see harden_process).
    let (on_terminal, caller) = unsafe { (libc::isatty(0) == 1, libc::getuid()) };
    if on_terminal {
        log.error(&format!(
            "pam_otp_check was run by uid {caller} from a terminal; it is run by pam_otp.so only; refused"
        ));
        eprintln!("pam_otp_check: run by pam_otp.so only, never from a terminal");
        return PamResultCode::PAM_SYSTEM_ERR;
    }
    let account = match Account::lookup(&args.user) {
        Ok(Some(account)) => account,
        Ok(None) | Err(_) => {
            log.warning(&format!(
                "pam_otp_check: uid {caller} asked for an unknown or unusable user; refused"
            ));
            return PamResultCode::PAM_USER_UNKNOWN;
        }
    };
    if account.uid != caller {
        log.warning(&format!(
            "pam_otp_check: uid {caller} asked to check the code of uid {}; it checks only \
             the caller's own account; refused, nothing read or changed",
            account.uid
        ));
        return PamResultCode::PAM_AUTH_ERR;
    }
    let mut policy = match policy::load(&[]) {
        Ok(policy) => policy,
        Err(e) => {
            log.error(&format!(
                "{e}; refusing all logins until the policy file is fixed"
            ));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    log.set_debug(policy.debug);
    // The module gives the answer however its own line says; here it is always asked for.
    policy.pass_mode = PassMode::Prompt;
    (policy.nullok, policy.enforce_after) = match args.unenrolled {
        Unenrolled::Refused => (false, None),
        Unenrolled::Nullok => (true, None),
        Unenrolled::Until(deadline) => (false, Some(deadline)),
    };
    let request = Request {
        user: &args.user,
        policy: &policy,
        authtok: None,
        split_code: None,
        source: Source::from_rhost(""),
        earlier_factor_passed: args.earlier_factor_passed,
    };
    let host = SystemHost::new(&policy);
    login(&request, &host, &mut PipeConversation, &unix_now, &log).code
}

/// The conversation with the module, over the checker's standard input and output.
struct PipeConversation;

impl PipeConversation {
    fn write_line(&self, line: &str) -> Result<(), ConversationError> {
        let line: String = line.chars().filter(|c| !c.is_control()).collect();
        let mut out = std::io::stdout().lock();
        out.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| ConversationError(format!("cannot write to pam_otp.so: {e}")))
    }
}

impl Conversation for PipeConversation {
    fn prompt(&mut self, _text: &str) -> Result<Zeroizing<String>, ConversationError> {
        self.write_line(wire::ASK)?;
        // SAFETY: fd 0 is open (see harden_process) and stays open for the whole run;
        // ManuallyDrop keeps it from being closed here.
        let stdin = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(0) });
        let mut answer = Zeroizing::new(Vec::with_capacity(wire::MAX_ANSWER + 1));
        let mut chunk = Zeroizing::new([0u8; 64]);
        loop {
            let read = (&*stdin)
                .read(&mut chunk[..])
                .map_err(|e| ConversationError(format!("cannot read the answer: {e}")))?;
            if read == 0 {
                return Err(ConversationError("no answer".into()));
            }
            answer.extend_from_slice(&chunk[..read]);
            if let Some(end) = answer.iter().position(|&b| b == 0) {
                if end > wire::MAX_ANSWER {
                    break;
                }
                answer.truncate(end);
                return Ok(Zeroizing::new(
                    String::from_utf8_lossy(&answer).into_owned(),
                ));
            }
            if answer.len() > wire::MAX_ANSWER {
                break;
            }
        }
        Err(ConversationError(format!(
            "an answer longer than {} bytes",
            wire::MAX_ANSWER
        )))
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.write_line(&format!("{}{text}", wire::INFO))
    }

    fn error(&mut self, text: &str) -> Result<(), ConversationError> {
        self.write_line(&format!("{}{text}", wire::ERROR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Option<Arguments> {
        parse_arguments(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn only_user_service_rhost_and_the_unenrolled_rule_are_taken() {
        let plain = parsed(&["alice", "swaylock", ""]).unwrap();
        assert_eq!(
            (
                plain.user.as_str(),
                plain.service.as_str(),
                plain.rhost.as_str()
            ),
            ("alice", "swaylock", "")
        );
        assert_eq!(plain.unenrolled, Unenrolled::Refused);
        assert!(!plain.earlier_factor_passed);
        let nullok = parsed(&[
            "alice",
            "kde",
            "192.0.2.1",
            "nullok",
            "earlier_factor_passed",
        ]);
        let nullok = nullok.unwrap();
        assert_eq!(nullok.unenrolled, Unenrolled::Nullok);
        assert!(nullok.earlier_factor_passed);
        let until = parsed(&["alice", "kde", "", "enforce_after=2026-12-13 08:30"]).unwrap();
        assert_eq!(
            until.unenrolled,
            Unenrolled::Until(Deadline::parse("2026-12-13T08:30").unwrap())
        );
        for refused in [
            &["alice", "swaylock"][..],
            &["alice", "swaylock", "", "max_failures=0"],
            &["alice", "swaylock", "", "nullok", "window=100"],
            &[
                "alice",
                "swaylock",
                "",
                "secret=/var/lib/pam-otp/secrets/root.toml",
            ],
            &["alice", "swaylock", "", "nullok=true"],
            &["alice", "swaylock", "", "nullok", "nullok"],
            &[
                "alice",
                "swaylock",
                "",
                "nullok",
                "enforce_after=2026-12-13",
            ],
            &["alice", "swaylock", "", "enforce_after=someday"],
        ] {
            assert!(parsed(refused).is_none(), "{refused:?}");
        }
    }
}
