//! What crosses between `pam_otp.so` and its Redis client object `pam_otp_redis.so`: the
//! requests and replies (JSON across the C boundary), the protocol version, and why the
//! shared record could not be used.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use pam_otp_core::fleet::{FleetError, Value};

use crate::policy::RedisSettings;

/// Why the shared record could not be used. Every one refuses the login
/// (`PAM_AUTHINFO_UNAVAIL`): an unreachable Redis never lets a code in.
#[derive(Debug)]
pub enum RedisStoreError {
    /// A credential or certificate file is missing, unreadable or not safe to trust.
    File { path: PathBuf, why: String },
    /// Connecting, the TLS handshake or AUTH failed or took too long.
    Connect { url: String, why: String },
    /// A command failed or took too long once connected.
    Command { what: &'static str, why: String },
    /// The script's reply made no sense.
    Reply(FleetError),
    /// Fewer replicas than `redis_replicas` acknowledged an accepted code in time.
    Replicas { acknowledged: u32, wanted: u32 },
    /// The Redis client (`pam_otp_redis.so`) could not be loaded, or reported this.
    Client(String),
}

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisStoreError::File { path, why } => write!(f, "redis: {}: {why}", path.display()),
            RedisStoreError::Connect { url, why } => {
                write!(f, "redis: cannot connect to {url}: {why}; refused")
            }
            RedisStoreError::Command { what, why } => write!(f, "redis: {what} failed: {why}; refused"),
            RedisStoreError::Reply(e) => write!(f, "redis: {e}; refused"),
            RedisStoreError::Replicas {
                acknowledged,
                wanted,
            } => write!(
                f,
                "redis: {acknowledged} of {wanted} replicas acknowledged the accepted code in time (redis_replicas); refused"
            ),
            RedisStoreError::Client(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisStoreError::Reply(e) => Some(e),
            RedisStoreError::File { .. }
            | RedisStoreError::Connect { .. }
            | RedisStoreError::Command { .. }
            | RedisStoreError::Replicas { .. }
            | RedisStoreError::Client(_) => None,
        }
    }
}

/// The version of the protocol between `pam_otp.so` and `pam_otp_redis.so` (see
/// `sys::redis_client`); both come from one build, this only catches a mismatched install.
pub const CLIENT_PROTOCOL: u32 = 1;

/// What `pam_otp.so` asks of the Redis client object, as JSON across the C boundary.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    Connect(RedisSettings),
    Script {
        keys: Vec<String>,
        arguments: Vec<String>,
    },
    WaitForReplicas,
}

/// The client object's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientReply {
    Done,
    Value(Value),
    /// The error's text, as `RedisStoreError` displays it.
    Failed(String),
}
