//! The fleet's Redis: one connection per login (TLS, ACL user, password from a root-only
//! file) to `redis_url` or to the master the sentinels name, made only after [`trust`]
//! vouched for the server; the record read and written back by its compare-and-set
//! script (`EVALSHA`), and `WAIT` for replicas; every step bounded by
//! `redis_timeout_ms`, every failure an error that refuses the login.
//!
//! `otp-admin` uses this directly; the PAM module reaches it through the client object
//! `pam_otp_redis.so` (`sys::redis_client`), which serves [`ClientRequest`]s with it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use redis::{Client, ClientTlsConfig, IntoConnectionInfo, TlsCertificates};
use zeroize::Zeroizing;

use pam_otp_core::fleet::{RecordKeys, SCRIPT};
use pam_otp_sys::policy::{url_host, RedisSettings};
use pam_otp_sys::redis_protocol::{
    ClientReply, ClientRequest, RedisStoreError, SharedRead, WriteOutcome,
};
use pam_otp_sys::safe_path::open_root_owned_file;

use crate::{sentinel, trust};

const MAX_CREDENTIAL_FILE_BYTES: u64 = 64 * 1024;

/// Reads a file only root may have written and no one else may read: a regular file, not
/// a link, owned by root, mode 0600 or stricter, in directories only root can change.
fn read_root_only_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, RedisStoreError> {
    let fail = |why: String| RedisStoreError::File {
        path: path.into(),
        why,
    };
    let file = open_root_owned_file(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "mode {:04o}: must be 0600 or stricter (readable by root only)",
            meta.mode() & 0o7777
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIAL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE_BYTES {
        return Err(fail("larger than 64 KiB".into()));
    }
    Ok(bytes)
}

/// Reads a public file (a certificate), refusing anything but a regular file.
fn read_public_file(path: &Path) -> Result<Vec<u8>, RedisStoreError> {
    let fail = |why: String| RedisStoreError::File {
        path: path.into(),
        why,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    if !file.metadata().map_err(|e| fail(e.to_string()))?.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// The password: the file's first line, without its line ending.
fn read_password(path: &Path) -> Result<Zeroizing<String>, RedisStoreError> {
    let bytes = read_root_only_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| RedisStoreError::File {
        path: path.into(),
        why: "not UTF-8".into(),
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(RedisStoreError::File {
            path: path.into(),
            why: "holds no password".into(),
        });
    }
    Ok(Zeroizing::new(line.to_string()))
}

/// A client for one server or sentinel at `url`, with the settings' credentials and TLS.
fn client(settings: &RedisSettings, url: &str) -> Result<Client, RedisStoreError> {
    let connect_error = |why: String| RedisStoreError::Connect {
        url: url.into(),
        why,
    };
    let info = url
        .into_connection_info()
        .map_err(|e| connect_error(e.to_string()))?;
    // CLIENT SETINFO would be two more replies, each waited for with the whole timeout.
    let mut redis = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(user) = &settings.user {
        redis = redis.set_username(user);
    }
    if let Some(path) = &settings.password_file {
        redis = redis.set_password(read_password(path)?.as_str());
    }
    let info = info.set_redis_settings(redis);
    if !url.starts_with("rediss://") {
        return Client::open(info).map_err(|e| connect_error(e.to_string()));
    }
    let client_tls = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_public_file(cert)?,
            client_key: read_root_only_file(key)?.to_vec(),
        }),
        _ => None,
    };
    let root_cert = settings
        .ca_file
        .as_deref()
        .map(read_public_file)
        .transpose()?;
    install_crypto_provider();
    Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| connect_error(format!("{e}{}", certificate_hint(settings, &e))))
}

/// Names the certificate files when TLS failed over them, so the log says which to fix.
fn certificate_hint(settings: &RedisSettings, error: &redis::RedisError) -> String {
    let text = error.to_string();
    let about_certificates = ["alert", "certificate", "Certificate", "PEM", "private key"]
        .iter()
        .any(|word| text.contains(word));
    if !about_certificates || text.contains("invalid peer certificate") {
        return String::new();
    }
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => format!(
            " (the client certificate redis_cert_file={} with redis_key_file={} was refused \
             or is unusable: it must be signed by a CA the server trusts, be current and \
             allow clientAuth)",
            cert.display(),
            key.display()
        ),
        _ => " (the server may want a client certificate: redis_cert_file and \
               redis_key_file)"
            .into(),
    }
}

/// Why connecting failed, in words an administrator can act on.
fn connect_failure(
    settings: &RedisSettings,
    url: &str,
    timeout: Duration,
    error: &redis::RedisError,
) -> String {
    if !error.is_timeout() {
        return format!("{error}{}", certificate_hint(settings, error));
    }
    let steps = if url.starts_with("rediss://") {
        "connect, TLS handshake and AUTH"
    } else {
        "connect and AUTH"
    };
    format!(
        "no answer within {} ms ({steps}; redis_timeout_ms): the server is slow or down, \
         or what listens there is not the server",
        timeout.as_millis()
    )
}

/// Checks what answers at `url` is the real server, before anything is sent to it.
fn check_server(settings: &RedisSettings, url: &str) -> Result<(), RedisStoreError> {
    let untrusted = |why: String| RedisStoreError::Connect {
        url: url.into(),
        why: format!("not trusted, nothing sent: {why}"),
    };
    if let Some(path) = url.strip_prefix("unix://") {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        trust::check_unix_socket(Path::new(path), &settings.server_user).map_err(untrusted)?;
    } else if let Some(rest) = url.strip_prefix("redis://") {
        trust::check_plain_tcp(url_host(rest)).map_err(untrusted)?;
    }
    // rediss://: rustls verifies the server's certificate before AUTH is sent.
    Ok(())
}

/// Opens a checked connection to `url` within `timeout` (connect, TLS and AUTH), and
/// bounds every later read and write by `timeout` too.
pub(crate) fn open(
    settings: &RedisSettings,
    url: &str,
    timeout: Duration,
) -> Result<redis::Connection, RedisStoreError> {
    check_server(settings, url)?;
    let connection = client(settings, url)?
        .get_connection_with_timeout(timeout)
        .map_err(|e| RedisStoreError::Connect {
            url: url.into(),
            why: connect_failure(settings, url, timeout, &e),
        })?;
    let bounded = connection
        .set_read_timeout(Some(timeout))
        .and_then(|()| connection.set_write_timeout(Some(timeout)));
    bounded.map_err(command_error("setting the timeout"))?;
    Ok(connection)
}

/// rustls needs a process-wide crypto provider; the module brings ring. Another copy of
/// rustls in the same process (the host program's) is a different crate instance and
/// keeps its own.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How `RedisStore::update` changes a record: given the server's clock and the stored
/// bytes, the bytes to write, or `None` to leave it.
pub type RecordChange<'a> = dyn FnMut(u64, &[u8]) -> Result<Option<Vec<u8>>, RedisStoreError> + 'a;

/// One connection to the fleet's Redis, for the length of one login.
pub struct RedisStore {
    connection: redis::Connection,
    timeout: Duration,
    replicas: u32,
    /// With sentinels: how to find the master again after a `READONLY` or `NOREPLICAS`
    /// reply, and until when that may be tried (the connect's own budget).
    rediscovery: Option<(RedisSettings, Instant)>,
}

fn command_error(what: &'static str) -> impl Fn(redis::RedisError) -> RedisStoreError {
    move |e| RedisStoreError::Command {
        what,
        why: e.to_string(),
    }
}

fn bad_reply(what: &str, value: &redis::Value) -> RedisStoreError {
    RedisStoreError::Reply(format!("unexpected reply to {what}: {value:?}"))
}

/// A reply's bytes (a bulk or status string, or an integer as text).
fn bytes(value: &redis::Value) -> Option<Vec<u8>> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes.clone()),
        redis::Value::SimpleString(text) => Some(text.clone().into_bytes()),
        redis::Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// A reply's number, sent as text or as an integer.
fn number(value: &redis::Value) -> Option<u64> {
    match value {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(&bytes(other)?).ok()?.parse().ok(),
    }
}

impl RedisStore {
    /// Connects, with TLS and AUTH as configured, to `redis_url` or to the master the
    /// sentinels name (asked again at every login, never remembered). Connect, handshake
    /// and AUTH are bounded by the timeout (with sentinels: the whole discovery), as is
    /// every command afterwards. Nothing is sent to a server that fails [`trust`]'s checks.
    pub fn connect(settings: &RedisSettings) -> Result<RedisStore, RedisStoreError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let deadline = Instant::now() + timeout;
        let (connection, rediscovery) = match &settings.url {
            Some(url) => (open(settings, url, timeout)?, None),
            None => (
                sentinel::open_master(settings, deadline)?,
                Some((settings.clone(), deadline)),
            ),
        };
        Ok(RedisStore {
            connection,
            timeout,
            replicas: settings.replicas,
            rediscovery,
        })
    }

    /// Runs `query`; when a server that stopped being the master (`READONLY`) or lost its
    /// replicas (`NOREPLICAS`) refused it, nothing was written: asks the sentinels again
    /// and retries, until the connect's budget is spent.
    fn with_rediscovery<T>(
        &mut self,
        what: &'static str,
        mut query: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisStoreError> {
        loop {
            let error = match query(&mut self.connection) {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let demoted = matches!(error.code(), Some("READONLY" | "NOREPLICAS"));
            match &self.rediscovery {
                Some((settings, deadline))
                    if demoted && sentinel::worth_another_round(settings, *deadline) =>
                {
                    // The sentinels may need a moment to name another master.
                    std::thread::sleep(sentinel::RETRY_PAUSE);
                    self.connection =
                        sentinel::open_master(settings, *deadline).map_err(|again| {
                            RedisStoreError::Command {
                                what,
                                why: format!("{error}; then, asking the sentinels again: {again}"),
                            }
                        })?;
                }
                _ => return Err(command_error(what)(error)),
            }
        }
    }

    /// Runs the record's script (`EVALSHA`; loaded again on `NOSCRIPT`).
    fn run_script(
        &mut self,
        keys: &[String],
        arguments: &[&[u8]],
    ) -> Result<redis::Value, RedisStoreError> {
        let script = redis::Script::new(SCRIPT);
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for argument in arguments {
            invocation.arg(*argument);
        }
        self.with_rediscovery("the fleet record's script", |c| invocation.invoke(c))
    }

    /// The record of `keys` (`RecordKeys::all`) and the server's clock.
    pub fn read(&mut self, keys: &[String]) -> Result<SharedRead, RedisStoreError> {
        let value = self.run_script(keys, &[b"read"])?;
        let redis::Value::Array(items) = &value else {
            return Err(bad_reply("read", &value));
        };
        let read = |items: &[redis::Value]| -> Option<SharedRead> {
            let [time, micros, version, state, old] = items else {
                return None;
            };
            Some(SharedRead {
                time: number(time)?,
                micros: u32::try_from(number(micros)?).ok()?,
                version: number(version)?,
                state: bytes(state)?,
                old_fields: number(old)?,
            })
        };
        let read = read(items);
        read.ok_or_else(|| bad_reply("read", &value))
    }

    /// Replaces the record at `key` by `state` if its version is still `expected`.
    pub fn write(
        &mut self,
        key: &str,
        expected: u64,
        state: &[u8],
    ) -> Result<WriteOutcome, RedisStoreError> {
        let expected = expected.to_string();
        let value = self.run_script(&[key.to_string()], &[b"write", expected.as_bytes(), state])?;
        let outcome = match &value {
            redis::Value::Array(items) => match (items.first().and_then(bytes), items.get(1)) {
                (Some(word), Some(version)) if word == b"written" => {
                    number(version).map(WriteOutcome::Written)
                }
                (Some(word), Some(_)) if word == b"changed" => Some(WriteOutcome::Changed),
                _ => None,
            },
            _ => None,
        };
        outcome.ok_or_else(|| bad_reply("write", &value))
    }

    /// Deletes the keys of the older record format; how many there were.
    pub fn forget_old(&mut self, keys: &[String]) -> Result<u64, RedisStoreError> {
        let value = self.run_script(keys, &[b"forget-old"])?;
        number(&value).ok_or_else(|| bad_reply("forget-old", &value))
    }

    /// The record of the person `keys` name, read and written back through `change`
    /// (otp-admin's unlock and reset), retried while other hosts change it in between.
    /// `change` gets the server's clock and the stored bytes, returns the new bytes, or
    /// `None` to leave the record as it is. The bytes written, if any.
    pub fn update(
        &mut self,
        keys: &RecordKeys,
        change: &mut RecordChange,
    ) -> Result<Option<Vec<u8>>, RedisStoreError> {
        for _ in 0..pam_otp_core::fleet::MAX_ATTEMPTS {
            let read = self.read(&keys.all())?;
            let Some(next) = change(read.time, &read.state)? else {
                return Ok(None);
            };
            match self.write(&keys.record, read.version, &next)? {
                WriteOutcome::Written(_) => return Ok(Some(next)),
                WriteOutcome::Changed => continue,
            }
        }
        Err(RedisStoreError::Contended {
            attempts: pam_otp_core::fleet::MAX_ATTEMPTS,
        })
    }

    /// After an accepted code: waits until `redis_replicas` replicas have it, at most the
    /// timeout; fewer is an error. Sent on its own, as `WAIT` inside a script does not block.
    pub fn wait_for_replicas(&mut self) -> Result<(), RedisStoreError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let wait_ms = self.timeout.as_millis() as u64;
        // The reply comes after up to wait_ms; give the read that much more time.
        self.connection
            .set_read_timeout(Some(self.timeout * 2))
            .map_err(command_error("setting the timeout"))?;
        let acknowledged: i64 = redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(wait_ms)
            .query(&mut self.connection)
            .map_err(command_error("WAIT"))?;
        let acknowledged = u32::try_from(acknowledged).unwrap_or(0);
        if acknowledged < self.replicas {
            return Err(RedisStoreError::Replicas {
                acknowledged,
                wanted: self.replicas,
            });
        }
        Ok(())
    }
}

/// The client object's side: serves one request on a session (`None` until connected).
pub fn serve(session: &mut Option<RedisStore>, request: &[u8]) -> Vec<u8> {
    let reply = match serde_json::from_slice::<ClientRequest>(request) {
        Err(e) => ClientReply::Failed(format!("redis: bad request to the client object: {e}")),
        Ok(ClientRequest::Connect(settings)) => match RedisStore::connect(&settings) {
            Ok(store) => {
                *session = Some(store);
                ClientReply::Done
            }
            Err(e) => ClientReply::Failed(e.to_string()),
        },
        Ok(request) => match (session.as_mut(), request) {
            (None, _) => ClientReply::Failed("redis: not connected".into()),
            (Some(store), ClientRequest::Read { keys }) => match store.read(&keys) {
                Ok(read) => ClientReply::Read(read),
                Err(e) => ClientReply::Failed(e.to_string()),
            },
            (
                Some(store),
                ClientRequest::Write {
                    key,
                    expected,
                    state,
                },
            ) => match store.write(&key, expected, &state) {
                Ok(outcome) => ClientReply::Write(outcome),
                Err(e) => ClientReply::Failed(e.to_string()),
            },
            (Some(store), ClientRequest::WaitForReplicas) => match store.wait_for_replicas() {
                Ok(()) => ClientReply::Done,
                Err(e) => ClientReply::Failed(e.to_string()),
            },
            (Some(_), ClientRequest::Connect(_)) => {
                ClientReply::Failed("redis: the session is connected already".into())
            }
        },
    };
    serde_json::to_vec(&reply)
        .unwrap_or_else(|_| br#"{"Failed":"redis: the reply cannot be encoded"}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_bytes_and_numbers() {
        let bulk = |b: &[u8]| redis::Value::BulkString(b.to_vec());
        assert_eq!(bytes(&bulk(&[0, 255, 7])), Some(vec![0, 255, 7]));
        assert_eq!(number(&bulk(b"42")), Some(42));
        assert_eq!(number(&redis::Value::Int(7)), Some(7));
        assert_eq!(number(&redis::Value::Int(-1)), None);
        assert_eq!(number(&bulk(b"x")), None);
        assert_eq!(bytes(&redis::Value::Nil), None);
    }
}
