//! pam-otp: a PAM module (and its tools) for RFC 4226 HOTP and RFC 6238 TOTP codes.
//!
//! Functional core: `otp`, `enrollment`, `state`, `answer`, `decision`, `policy` (parsing).
//! Imperative shell: `user_file` (the user's file), `store` (state on disk), `log`
//! (syslog), `conversation` (the user), `login` (one login's flow), `pam_module` and
//! `authtok` (libpam). Tools: `admin` (otp-admin).

pub mod admin;
pub mod answer;
pub mod authtok;
pub mod conversation;
pub mod decision;
pub mod enrollment;
pub mod log;
pub mod login;
pub mod otp;
pub mod pam_module;
pub mod policy;
pub mod recovery;
pub mod state;
pub mod store;
pub mod user_file;
