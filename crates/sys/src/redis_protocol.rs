//! What crosses between `pam_otp.so` and its Redis client object `pam_otp_redis.so`: the
//! requests and replies (JSON across the C boundary), the protocol version, and why the
//! shared record could not be used.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::RedisSettings;
use pam_otp_core::fleet::RecordKeys;

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
    /// A reply made no sense, or the record does not decode.
    Reply(String),
    /// The person's record is still in the format before this one (keys named in it).
    OldFormat { key: String },
    /// Other hosts kept changing the record: no write-back succeeded in the attempts and
    /// time allowed.
    Contended { attempts: u32 },
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
            RedisStoreError::Reply(why) => write!(f, "redis: the fleet record: {why}; refused"),
            RedisStoreError::OldFormat { key } => write!(
                f,
                "redis: {key} holds a fleet record of the format before this version's (kept \
                 by the old module's script); refused until `otp-admin reset USER` replaces \
                 it (README, Fleets: upgrading)"
            ),
            RedisStoreError::Contended { attempts } => write!(
                f,
                "redis: the fleet record changed under each of {attempts} attempts to write \
                 it back (other hosts logging the same person in); refused"
            ),
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

impl std::error::Error for RedisStoreError {}

/// The version of the protocol between `pam_otp.so` and `pam_otp_redis.so` (see
/// `sys::redis_client`); both come from one build, this only catches a mismatched install.
pub const CLIENT_PROTOCOL: u32 = 2;

/// What `pam_otp.so` asks of the Redis client object, as JSON across the C boundary.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    Connect(RedisSettings),
    /// The record and the server's clock (`RecordKeys::all`: the record, then the old keys).
    Read {
        keys: Vec<String>,
    },
    /// The record replaced by `state` if its version is still `expected`.
    Write {
        key: String,
        expected: u64,
        state: Vec<u8>,
    },
    WaitForReplicas,
}

/// One person's record as read, with the server's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRead {
    /// The server's `TIME`: Unix seconds, and the microseconds within.
    pub time: u64,
    pub micros: u32,
    /// Writes so far (0: no record yet).
    pub version: u64,
    /// The state's binary form; empty if there is no record.
    pub state: Vec<u8>,
    /// Fields found in keys of the older format (only looked for without a record).
    pub old_fields: u64,
}

impl SharedRead {
    /// Refuses a person whose only record (at `keys`) is in the format before this one.
    pub fn refuse_old_format(&self, keys: &RecordKeys) -> Result<(), RedisStoreError> {
        if self.version == 0 && self.old_fields > 0 {
            return Err(RedisStoreError::OldFormat {
                key: keys.old.join(", "),
            });
        }
        Ok(())
    }
}

/// How a write-back went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// Written; the record's version is now this.
    Written(u64),
    /// The version was no longer the one read: nothing was written.
    Changed,
}

/// The client object's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientReply {
    Done,
    Read(SharedRead),
    Write(WriteOutcome),
    /// The error's text, as `RedisStoreError` displays it.
    Failed(String),
}
