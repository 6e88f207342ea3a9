//! System I/O, one kind per file: accounts, the user's file, the policy, the state store,
//! private files, syslog, the clock, the files installed with the module (the checker, the
//! Redis client object), and the module's side of the Redis client object.

pub mod account;
pub mod clock;
pub mod companion;
pub mod log;
pub mod policy;
pub mod private_file;
pub mod record_file;
pub mod redis_client;
pub mod redis_protocol;
pub mod safe_path;
pub mod sigpipe;
pub mod store;
pub mod user_file;
