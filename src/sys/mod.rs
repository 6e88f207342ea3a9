//! System I/O, one kind per file: accounts, the user's file, the policy, the state store,
//! private files, syslog, the clock.

pub mod account;
pub(crate) mod clock;
pub(crate) mod log;
pub mod policy;
pub(crate) mod private_file;
pub(crate) mod record_file;
pub(crate) mod redis_client;
pub mod redis_store;
pub(crate) mod safe_path;
pub(crate) mod store;
pub(crate) mod user_file;
