//! The pure rules of the product: codes, enrollments, the state, the login decision; no I/O.

#![warn(missing_docs)]
// A rule that cannot be decided fails closed with an error, never by a panic (tests may).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod answer;
pub mod decision;
pub mod enrollment;
pub mod fleet;
pub mod otp;
pub mod otpauth;
pub mod printable;
pub mod recovery;
pub mod source;
pub mod state;
pub mod window;
