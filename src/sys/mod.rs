//! System I/O, one kind per file: the user's file, the policy, the state store, private
//! files, syslog.

pub(crate) mod clock;
pub(crate) mod log;
pub mod policy;
pub(crate) mod private_file;
pub(crate) mod redis_client;
pub mod redis_store;
pub(crate) mod store;
pub(crate) mod user_file;
