//! pam-otp: a PAM module (and its tools) for RFC 4226 HOTP and RFC 6238 TOTP codes.
//!
//! Functional core: `otp`, `enrollment`, `state`, `answer`, `decision`, `policy` (parsing).
//! Imperative shell: `user_file` (the user's file), `store` (state on disk), `safe_path`
//! (paths trusted as root: root-owned from `/` down), `log` (syslog; `printable` escapes
//! what callers control), `conversation` (the user), `login` (one login's flow),
//! `pam_module` and `authtok` (libpam).
//!
//! `otp-setup` (a user enrolls): `setup` (the flow), `otpauth` (the key URI), `qr`
//! (QR drawings), `google_import` (`~/.google_authenticator`), `enrollment_file`
//! (writing files atomically).
//!
//! `otp-admin` (root repairs state): `admin`.

pub mod admin;
pub mod answer;
pub mod authtok;
pub mod conversation;
pub mod decision;
pub mod enrollment;
pub mod enrollment_file;
pub mod google_import;
pub mod log;
pub mod login;
pub mod otp;
pub mod otpauth;
pub mod pam_module;
pub mod policy;
pub mod printable;
pub mod qr;
pub mod recovery;
pub mod safe_path;
pub mod setup;
pub mod state;
pub mod store;
pub mod user_file;
