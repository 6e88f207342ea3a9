//! The benchmark's FFI edge: one login through libpam in-process (pam_start,
//! pam_authenticate, pam_end) with a conversation that answers every prompt with
//! a given code, and the process's peak RSS (getrusage).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::time::{Duration, Instant};

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_PERM_DENIED: c_int = 6;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
}

/// Answers every prompt (echo on or off) with the code `appdata` points to; ignores
/// informational messages. Responses are malloc'd because libpam frees them.
extern "C" fn answer_with_code(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    // SAFETY: `appdata` is the `&CStr` that `login` put in the pam_conv, alive for
    // the whole pam_start..pam_end span in which libpam can call us.
    let code: &CStr = unsafe { *(appdata as *const &CStr) };
    // SAFETY: calloc with a non-zero count and element size; checked for NULL below.
    let replies =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `num_msg` pointers to messages.
        let message = unsafe { *msg.add(i) };
        if message.is_null() {
            continue;
        }
        // SAFETY: a non-NULL message pointer from libpam points to a valid pam_message.
        let style = unsafe { (*message).msg_style };
        if style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON {
            // SAFETY: `code` is NUL-terminated; `replies` has `count` zeroed elements.
            unsafe { (*replies.add(i)).resp = libc::strdup(code.as_ptr()) };
        }
    }
    // SAFETY: `resp` is libpam's out-pointer (checked non-NULL); it takes ownership.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// What one login returned and how long it took.
pub struct Login {
    /// pam_authenticate's return code.
    pub rc: c_int,
    /// pam_start through pam_end: what a client such as sshd pays per login.
    pub total: Duration,
    /// pam_authenticate alone (the module's own work).
    pub authenticate: Duration,
}

/// One login of `user` against `/etc/pam.d/<service>`, answering prompts with `code`.
pub fn login(service: &CStr, user: &CStr, code: &CStr) -> Login {
    let mut appdata: &CStr = code;
    let conv = PamConv {
        conv: Some(answer_with_code),
        appdata_ptr: &mut appdata as *mut &CStr as *mut c_void,
    };
    let mut pamh: *mut PamHandle = ptr::null_mut();
    let start = Instant::now();
    // SAFETY: NUL-terminated strings and a conversation that outlive the handle;
    // libpam copies service and user, and keeps only the pointer to `conv`.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS || pamh.is_null() {
        return Login {
            rc,
            total: start.elapsed(),
            authenticate: Duration::ZERO,
        };
    }
    let auth_start = Instant::now();
    // SAFETY: `pamh` is the live handle pam_start just returned.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    let authenticate = auth_start.elapsed();
    // SAFETY: `pamh` is live and is not used again after pam_end.
    unsafe { pam_end(pamh, rc) };
    Login {
        rc,
        total: start.elapsed(),
        authenticate,
    }
}

/// This process's peak resident set size in KiB (getrusage ru_maxrss).
pub fn peak_rss_kib() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage owned by this frame.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc == 0 {
        usage.ru_maxrss.max(0) as u64
    } else {
        0
    }
}

/// `dlopen` (RTLD_NOW, as libpam loads a module) then `dlclose` of `module`: the time of
/// the pair, or the loader's error.
pub fn dlopen_dlclose(module: &CStr) -> Result<Duration, String> {
    let start = Instant::now();
    // SAFETY: a NUL-terminated path; the handle is closed below and nothing from the
    // object is called.
    let handle = unsafe { libc::dlopen(module.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        // SAFETY: dlerror returns a NUL-terminated message owned by the loader (or null).
        let why = unsafe { libc::dlerror() };
        return Err(if why.is_null() {
            "dlopen failed".into()
        } else {
            // SAFETY: non-null, NUL-terminated, read before any other dl* call.
            unsafe { CStr::from_ptr(why) }
                .to_string_lossy()
                .into_owned()
        });
    }
    // SAFETY: a handle dlopen returned, closed once.
    unsafe { libc::dlclose(handle) };
    Ok(start.elapsed())
}
