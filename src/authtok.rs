//! The one audited place that calls libpam directly: PAM_AUTHTOK, which pam-bindings
//! can read but not set, and the PAM environment, which it cannot read.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};

use ::pam::constants::PamResultCode;
use ::pam::items::{AuthTok, ItemType};
use ::pam::module::PamHandle;
use zeroize::Zeroizing;

#[link(name = "pam")]
extern "C" {
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_getenv(pamh: *const PamHandle, name: *const c_char) -> *const c_char;
}

/// Whether sshd recorded an authentication method that already passed for this
/// connection: OpenSSH (7.8 and later) puts them in the PAM environment (not the process
/// environment, which a client cannot reach before it has logged in) as
/// SSH_AUTH_INFO_0, one line each ("publickey ssh-ed25519 AAAA…"), before it runs the
/// keyboard-interactive stack; empty while none has.
pub fn ssh_methods_passed(pamh: &PamHandle) -> bool {
    const NAME: &CStr = c"SSH_AUTH_INFO_0";
    // SAFETY: `pamh` is the live handle libpam passed to this hook and NAME is
    // NUL-terminated; the result is NULL or a NUL-terminated string libpam owns, read here
    // before any other PAM call could change it.
    let value = unsafe { pam_getenv(pamh, NAME.as_ptr()) };
    if value.is_null() {
        return false;
    }
    // SAFETY: non-NULL, NUL-terminated, owned by libpam for the duration of this call.
    let value = unsafe { CStr::from_ptr(value) };
    value.to_bytes().iter().any(|b| !b.is_ascii_whitespace())
}

/// PAM_AUTHTOK as an earlier module left it, if any (non-UTF-8 is passed on lossily:
/// it is only ever compared against codes).
pub fn get(pamh: &PamHandle) -> Option<Zeroizing<String>> {
    let token = pamh.get_item::<AuthTok>().ok()??;
    Some(Zeroizing::new(
        String::from_utf8_lossy(token.as_bytes()).into_owned(),
    ))
}

/// Sets PAM_AUTHTOK (split_pass hands the password on to the next module).
pub fn set(pamh: &mut PamHandle, password: &str) -> Result<(), PamResultCode> {
    if password.contains('\0') {
        return Err(PamResultCode::PAM_BUF_ERR);
    }
    let mut value = Zeroizing::new(Vec::with_capacity(password.len() + 1));
    value.extend_from_slice(password.as_bytes());
    value.push(0);
    // SAFETY: `pamh` is the live handle libpam passed to this hook; libpam copies the
    // NUL-terminated string before returning, so `value` may be wiped afterwards.
    let rc = unsafe { pam_set_item(pamh, ItemType::AuthTok as c_int, value.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PamResultCode::PAM_SYSTEM_ERR)
    }
}
