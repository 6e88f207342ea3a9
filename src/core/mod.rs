//! The pure rules of the product: codes, enrollments, the state, the login decision; no I/O.

#![warn(missing_docs)]

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
