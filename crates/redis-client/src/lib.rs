//! `pam_otp_redis.so`: the Redis client (and TLS) of `pam_otp.so`'s fleet mode, in an
//! object of its own that the module loads only when a login has `store = "redis"`, so
//! file-store logins never pay for it. It serves the module's JSON requests with
//! `store` (the protocol and its reasons are in `pam_otp_sys::redis_client`).
//! No panic crosses these functions: one becomes a failed reply or a NULL. It does not
//! link the module, so it exports no PAM hook: named in a PAM file by mistake, libpam
//! finds no `pam_sm_authenticate` in it and the line fails.

use std::panic::{catch_unwind, AssertUnwindSafe};

pub mod sentinel;
pub mod store;
pub mod trust;

use pam_otp_sys::redis_protocol::CLIENT_PROTOCOL;
use pam_otp_sys::sigpipe::BlockedSigpipe;
use store::{serve, RedisStore};

/// One login's connection (`None` until connected).
pub struct Session(Option<RedisStore>);

/// The protocol this object speaks; the module refuses any other.
#[no_mangle]
pub extern "C" fn pam_otp_redis_protocol() -> u32 {
    CLIENT_PROTOCOL
}

/// A new, unconnected session, or NULL.
#[no_mangle]
pub extern "C" fn pam_otp_redis_new_session() -> *mut Session {
    catch_unwind(|| Box::into_raw(Box::new(Session(None)))).unwrap_or(std::ptr::null_mut())
}

/// Serves one request (`length` bytes of JSON at `request`) on `session`; returns the
/// reply, whose length goes to `*reply_length`, to be given back to
/// `pam_otp_redis_free`. NULL if it panicked.
///
/// # Safety
/// `session` comes from `pam_otp_redis_new_session` and is not used concurrently;
/// `request` is valid for `length` bytes; `reply_length` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn pam_otp_redis_serve(
    session: *mut Session,
    request: *const u8,
    length: usize,
    reply_length: *mut usize,
) -> *mut u8 {
    // A server gone mid-login fails the request; its SIGPIPE (TLS writes use writev, which
    // raises one) must not end the program running the login.
    let _blocked = BlockedSigpipe::block();
    let served = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller passes its own live session and a request valid for `length`.
        let (session, request) =
            unsafe { (&mut *session, std::slice::from_raw_parts(request, length)) };
        serve(&mut session.0, request).into_boxed_slice()
    }));
    match served {
        Ok(reply) => {
            // SAFETY: the caller passes a pointer valid for one write.
            unsafe { *reply_length = reply.len() };
            Box::into_raw(reply) as *mut u8
        }
        Err(_) => std::ptr::null_mut(),
    }
}

/// Gives back a reply of `pam_otp_redis_serve`.
///
/// # Safety
/// `reply` and `length` are exactly what one `pam_otp_redis_serve` returned, given once.
#[no_mangle]
pub unsafe extern "C" fn pam_otp_redis_free(reply: *mut u8, length: usize) {
    if !reply.is_null() {
        // SAFETY: the boxed slice `pam_otp_redis_serve` leaked, rebuilt with its length.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(reply, length)) });
    }
}

/// Closes the session's connection and frees it.
///
/// # Safety
/// `session` comes from `pam_otp_redis_new_session` and is dropped once.
#[no_mangle]
pub unsafe extern "C" fn pam_otp_redis_drop_session(session: *mut Session) {
    if !session.is_null() {
        let _blocked = BlockedSigpipe::block();
        // SAFETY: the session `pam_otp_redis_new_session` leaked, dropped once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(session) })));
    }
}
