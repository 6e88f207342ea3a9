//! The tools around `pam_otp.so`: `otp-setup`, with which a user enrolls, and
//! `otp-admin`, with which the administrator enrolls, checks and repairs; `src/bin/` only
//! calls their `main`.

pub mod admin;
pub mod setup;
