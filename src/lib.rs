//! pam-otp: a PAM module, and the two tools around it, for RFC 4226 HOTP and RFC 6238 TOTP
//! codes.
//!
//! The folders are the layers, and each depends only on those above it in this list:
//! - [`core`]: the pure rules (codes, enrollments, state, the login decision); no I/O.
//! - [`sys`]: one kind of system I/O per file (accounts, the user's file, the policy,
//!   the state store, private files, syslog, the clock).
//! - `pam`: the module itself: libpam's hooks, the conversation, one login's flow.
//! - [`setup`] and [`admin`]: the `otp-setup` and `otp-admin` tools; `src/bin/` only
//!   calls their `main`.

pub mod admin;
pub mod core;
pub(crate) mod pam;
pub mod setup;
pub mod sys;
