//! Whether what answers at a Redis address is the real server, decided before a single
//! byte (not even `AUTH`) goes to it. A unix socket: every directory above it only root
//! can change (its own directory may also be the server account's), the socket file and
//! the process listening on it (`SO_PEERCRED` on a connection of our own, closed again
//! unused) root's or `redis_server_user`'s. Plain TCP: loopback only (the policy refuses
//! anything else); TLS: the server's certificate, verified by rustls against the CA.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use pam_otp_sys::account::Account;
use pam_otp_sys::policy::is_loopback_literal;
use pam_otp_sys::safe_path::check_root_owned_parents;

/// The accounts a server may run as: root, and `redis_server_user` if it exists.
struct ServerAccounts {
    user: String,
    uid: Option<u32>,
}

impl ServerAccounts {
    fn new(user: &str) -> Result<ServerAccounts, String> {
        let uid = if user.is_empty() {
            None
        } else {
            Account::lookup(user)
                .map_err(|e| format!("cannot look up redis_server_user {user:?}: {e}"))?
                .map(|account| account.uid)
        };
        Ok(ServerAccounts {
            user: user.into(),
            uid,
        })
    }

    fn allows(&self, uid: u32) -> bool {
        uid == 0 || Some(uid) == self.uid
    }

    fn named(&self) -> String {
        match self.uid {
            Some(uid) => format!("root or {} (uid {uid}, redis_server_user)", self.user),
            None => format!(
                "root (redis_server_user {:?} is no account here)",
                self.user
            ),
        }
    }
}

/// Checks the socket at `path` and the process that listens on it; sends nothing.
/// The path checks make sure that only root or the server's account could put another
/// socket there between this check and the client's own connection.
pub fn check_unix_socket(path: &Path, server_user: &str) -> Result<(), String> {
    let accounts = ServerAccounts::new(server_user)?;
    let directory = path
        .parent()
        .ok_or_else(|| format!("{} names no socket", path.display()))?;
    check_root_owned_parents(directory).map_err(|e| format!("socket {}: {e}", path.display()))?;
    let meta = fs::symlink_metadata(directory)
        .map_err(|e| format!("directory {}: {e}", directory.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", directory.display()));
    }
    if !accounts.allows(meta.uid()) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "directory {} (uid {}, mode {:04o}) must be owned by {} and writable by its owner \
             only: others could put their own socket there",
            directory.display(),
            meta.uid(),
            meta.mode() & 0o7777,
            accounts.named()
        ));
    }
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_socket() {
        return Err(format!("{} is not a socket", path.display()));
    }
    if !accounts.allows(meta.uid()) {
        return Err(format!(
            "socket {} is owned by uid {}, not {}",
            path.display(),
            meta.uid(),
            accounts.named()
        ));
    }
    let probe = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let uid = peer_uid(&probe).map_err(|e| format!("{}: SO_PEERCRED: {e}", path.display()))?;
    if !accounts.allows(uid) {
        return Err(format!(
            "the process listening on {} runs as uid {uid}, not {}",
            path.display(),
            accounts.named()
        ));
    }
    Ok(())
}

/// The uid of the process that created the listening end of a connected unix socket.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor, and an out-parameter of exactly the size given.
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut length,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(credentials.uid)
}

/// Plain TCP goes only to this machine (the policy checks `redis_url` and the sentinels;
/// this checks an address a sentinel answered).
pub fn check_plain_tcp(host: &str) -> Result<(), String> {
    if is_loopback_literal(host) {
        Ok(())
    } else {
        Err(format!(
            "{host} is not a loopback address, and without TLS anyone on the way could \
             answer and read the password (configure TLS: redis_ca_file)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tcp_only_to_loopback_literals() {
        assert!(check_plain_tcp("127.0.0.1").is_ok());
        assert!(check_plain_tcp("127.3.2.1").is_ok());
        assert!(check_plain_tcp("[::1]").is_ok());
        for host in ["10.0.0.1", "localhost", "redis.example", "[fe80::1]", ""] {
            assert!(check_plain_tcp(host).is_err(), "{host}");
        }
    }

    #[test]
    fn a_socket_in_a_directory_others_can_write_is_refused_before_connecting() {
        let error = check_unix_socket(Path::new("/tmp/pam-otp-absent/redis.sock"), "redis")
            .expect_err("/tmp is world-writable");
        assert!(error.contains("/tmp"), "{error}");
    }
}
