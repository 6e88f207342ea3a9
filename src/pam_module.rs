//! The PAM glue: arguments in, conversation, account lookup, return codes out.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{SystemTime, UNIX_EPOCH};

use pam::constants::{PamFlag, PamResultCode, PAM_SILENT};
use pam::conv::Conv;
use pam::items::{RHost, Service};
use pam::module::{PamHandle, PamHooks};

use crate::authtok;
use crate::conversation::PamConversation;
use crate::log::Logger;
use crate::login::{login, Outcome, Request};
use crate::policy;
use crate::user_file::{Account, AccountError};

pub struct PamOtp;

impl PamHooks for PamOtp {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        // A panic must never unwind into sshd or sudo; SPEC asks for PAM_SERVICE_ERR.
        catch_unwind(AssertUnwindSafe(|| authenticate(pamh, &args, flags)))
            .unwrap_or(PamResultCode::PAM_SERVICE_ERR)
    }

    fn sm_setcred(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}

fn item_text<'a, T>(pamh: &'a PamHandle) -> String
where
    T: pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>,
{
    match pamh.get_item::<T>() {
        Ok(Some(item)) => item.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

fn unix_time() -> u64 {
    // Before 1970 means a broken clock; step 0 then accepts nothing recent.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn authenticate(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let mut log = Logger::syslog(&item_text::<Service>(pamh));
    log.set_rhost(&item_text::<RHost>(pamh));

    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let policy = match policy::load(&args) {
        Ok(policy) => policy,
        Err(e) => {
            log.error(&format!(
                "{e}; refusing all logins until the PAM configuration is fixed"
            ));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    log.set_debug(policy.debug);

    let user = match pamh.get_user(None) {
        Ok(user) => user,
        Err(code) => {
            log.error(&format!("cannot get the user name: {code:?}"));
            return code;
        }
    };
    log.set_user(&user);
    let account = match lookup_account(&user) {
        Ok(account) => account,
        Err(code) => {
            log.warning("unknown or unusable user name");
            return code;
        }
    };

    let request = Request {
        account: &account,
        policy: &policy,
        authtok: authtok::get(pamh),
    };
    let result = {
        let Ok(Some(conv)) = pamh.get_item::<Conv>() else {
            log.error("the application gave no conversation function");
            return PamResultCode::PAM_CONV_ERR;
        };
        let mut conversation = PamConversation::new(conv, flags & PAM_SILENT != 0);
        login(&request, &mut conversation, &unix_time, &log)
    };
    if let Some(password) = &result.forward_password {
        if let Err(code) = authtok::set(pamh, password) {
            log.error("forward_pass: cannot set PAM_AUTHTOK");
            return code;
        }
    }
    match result.outcome {
        Outcome::Success => PamResultCode::PAM_SUCCESS,
        Outcome::WrongCode => PamResultCode::PAM_AUTH_ERR,
        // Not PAM_MAXTRIES: on that sshd turns keyboard-interactive off for the connection
        // and offers no method at all, and the OpenSSH client then asks for a password that
        // cannot work. PAM_PERM_DENIED keeps sshd showing the lockout message and ending
        // with "Permission denied (keyboard-interactive)".
        Outcome::Locked => PamResultCode::PAM_PERM_DENIED,
        Outcome::NotEnrolledPassThrough => PamResultCode::PAM_IGNORE,
        Outcome::Unavailable => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Outcome::ConversationFailed => PamResultCode::PAM_CONV_ERR,
    }
}

fn lookup_account(name: &str) -> Result<Account, PamResultCode> {
    match Account::lookup(name) {
        Ok(Some(account)) => Ok(account),
        Ok(None) | Err(AccountError::UnsafeName(_)) => Err(PamResultCode::PAM_USER_UNKNOWN),
        Err(AccountError::Database(_)) => Err(PamResultCode::PAM_AUTHINFO_UNAVAIL),
    }
}

pam::pam_hooks!(PamOtp);
