//! The PAM glue: libpam's hooks, arguments and items in, return codes out; never a panic.

// A rule that cannot be decided fails closed with an error, never by a panic (tests may).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod authtok;
pub mod check_program;
mod checker;
mod conversation;
mod login;
mod records;
mod split_code;
mod unenrolled;

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ::pam::constants::{PamFlag, PamResultCode, PAM_SILENT};
use ::pam::conv::Conv;
use ::pam::items::{RHost, Service, Tty};
use ::pam::module::{PamHandle, PamHooks};

use self::conversation::PamConversation;
use self::login::{login, Request};
use self::records::SystemHost;
use pam_otp_core::source::Source;
use pam_otp_sys::clock::unix_now;
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::{self, PassMode};

pub struct PamOtp;

impl PamHooks for PamOtp {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        // A panic must never unwind into sshd or sudo: it fails closed as a service error.
        catch_unwind(AssertUnwindSafe(|| authenticate(pamh, &args, flags)))
            .unwrap_or(PamResultCode::PAM_SERVICE_ERR)
    }

    fn sm_setcred(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}

fn item_text<'a, T>(pamh: &'a PamHandle) -> String
where
    T: ::pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>,
{
    match pamh.get_item::<T>() {
        Ok(Some(item)) => item.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

fn authenticate(pamh: &mut PamHandle, args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let service = item_text::<Service>(pamh);
    let mut log = Logger::syslog(&service);
    let rhost = item_text::<RHost>(pamh);
    log.set_rhost(&rhost);
    log.set_tty(&item_text::<Tty>(pamh));

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

    let kept = match policy.pass_mode {
        PassMode::UseSplitCode => match split_code::take(pamh) {
            Ok(kept) => kept,
            Err(code) => {
                log.error(&format!(
                    "use_split_code: cannot read the kept code: {code:?}"
                ));
                return code;
            }
        },
        _ => None,
    };
    let authtok = authtok::get(pamh);
    // An earlier factor has passed when sshd says a method already succeeded (its
    // SSH_AUTH_INFO_0, e.g. the key under AuthenticationMethods publickey,
    // keyboard-interactive), or when an earlier module took a password: in the shipped
    // stacks pam_otp follows `@include common-auth`, which stops on a wrong password
    // (requisite pam_deny.so), so a password present here is a password that passed.
    let earlier_factor_passed =
        authtok.as_ref().is_some_and(|t| !t.is_empty()) || authtok::ssh_methods_passed(pamh);
    let request = Request {
        user: &user,
        policy: &policy,
        authtok,
        earlier_factor_passed,
        split_code: kept,
        source: Source::from_rhost(&rhost),
    };
    let host = SystemHost::new(&policy);
    let ending = {
        let Ok(Some(conv)) = pamh.get_item::<Conv>() else {
            log.error("the application gave no conversation function");
            return PamResultCode::PAM_CONV_ERR;
        };
        let mut conversation = PamConversation::new(conv, flags & PAM_SILENT != 0);
        // A caller that is not root (a screen locker) cannot reach the state: the setuid
        // checker decides. split_pass reads only the user's own file and changes nothing.
        if checker::runs_without_root() && policy.pass_mode != PassMode::SplitPass {
            return checker::login(&request, &service, &rhost, &mut conversation, &log);
        }
        login(&request, &host, &mut conversation, &unix_now, &log)
    };
    if policy.pass_mode == PassMode::SplitPass {
        // Always written, so a code kept by an earlier attempt on this handle is gone.
        if let Err(code) = split_code::keep(pamh, ending.split_code) {
            log.error(&format!("split_pass: cannot keep the code: {code:?}"));
            return code;
        }
    }
    if let Some(password) = &ending.password_to_hand_on {
        if let Err(code) = authtok::set(pamh, password) {
            log.error("cannot set PAM_AUTHTOK to hand the password on");
            return code;
        }
    }
    ending.code
}

::pam::pam_hooks!(PamOtp);
