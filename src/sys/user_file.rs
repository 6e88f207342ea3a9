//! Reading the user's enrollment file safely: as the user, no symlinks, no FIFOs, capped.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
use zeroize::Zeroizing;

use crate::core::enrollment::{Enrollment, EnrollmentError};
use crate::sys::account::Account;

/// Far above any real enrollment (100 recovery hashes are under 12 KiB).
pub const MAX_ENROLLMENT_BYTES: u64 = 64 * 1024;

/// Why the enrollment could not be had; the module fails closed on every one but `NotEnrolled`.
#[derive(Debug)]
pub enum UserFileError {
    NotEnrolled,
    Insecure(String),
    Unreadable(io::Error),
    Invalid(EnrollmentError),
}

impl fmt::Display for UserFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserFileError::NotEnrolled => write!(f, "does not exist (user not enrolled)"),
            UserFileError::Insecure(why) => write!(f, "refused: {why}"),
            UserFileError::Unreadable(e) => write!(f, "cannot be read: {e}"),
            UserFileError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// Switches the file-system identity of this thread to the user; restores it when dropped.
/// setfsuid is per thread on Linux, so other threads of sshd or sudo are unaffected.
struct UserFsIdentity {
    old_uid: Uid,
    old_gid: Gid,
}

impl UserFsIdentity {
    fn assume(account: &Account) -> UserFsIdentity {
        // Group first: once the fsuid is the user's, changing the fsgid may be refused.
        let old_gid = setfsgid(Gid::from_raw(account.gid));
        let old_uid = setfsuid(Uid::from_raw(account.uid));
        UserFsIdentity { old_uid, old_gid }
    }
}

impl Drop for UserFsIdentity {
    fn drop(&mut self) {
        setfsuid(self.old_uid);
        setfsgid(self.old_gid);
    }
}

/// Opens and checks the file as the user, then parses it.
pub fn read_enrollment(path: &Path, account: &Account) -> Result<Enrollment, UserFileError> {
    let text = read_as_user(path, account)?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| UserFileError::Invalid(EnrollmentError::Syntax("not UTF-8 text".into())))?;
    Enrollment::parse(text).map_err(UserFileError::Invalid)
}

fn read_as_user(path: &Path, account: &Account) -> Result<Zeroizing<Vec<u8>>, UserFileError> {
    let _identity = UserFsIdentity::assume(account);
    let mut file = File::options()
        .read(true)
        // No symlink as the last component; a FIFO or device must not block the login.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => UserFileError::NotEnrolled,
            Some(libc::ELOOP) => UserFileError::Insecure("is a symbolic link".into()),
            _ => UserFileError::Unreadable(e),
        })?;
    let meta = file.metadata().map_err(UserFileError::Unreadable)?;
    check_metadata(&meta, account)?;
    let mut buffer = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.by_ref()
        .take(MAX_ENROLLMENT_BYTES + 1)
        .read_to_end(&mut buffer)
        .map_err(UserFileError::Unreadable)?;
    if buffer.len() as u64 > MAX_ENROLLMENT_BYTES {
        return Err(UserFileError::Insecure("larger than 64 KiB".into()));
    }
    Ok(buffer)
}

fn check_metadata(meta: &std::fs::Metadata, account: &Account) -> Result<(), UserFileError> {
    let insecure = |why: String| Err(UserFileError::Insecure(why));
    if !meta.file_type().is_file() {
        return insecure("not a regular file".into());
    }
    if meta.uid() != account.uid && meta.uid() != 0 {
        return insecure(format!(
            "owned by uid {}, not by {} or root",
            meta.uid(),
            account.name
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return insecure(format!(
            "group or others have access (mode {:04o}; use chmod 600)",
            meta.mode() & 0o7777
        ));
    }
    if meta.nlink() != 1 {
        // A hard link could make someone else's file look like this user's.
        return insecure(format!("has {} hard links", meta.nlink()));
    }
    if meta.len() > MAX_ENROLLMENT_BYTES {
        return insecure("larger than 64 KiB".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn me() -> Account {
        Account {
            name: "me".into(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            home: std::env::temp_dir(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pam-otp-uf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const GOOD: &str = "secret = \"JBSWY3DPEHPK3PXP\"\n";

    #[test]
    fn a_private_file_is_read() {
        let dir = scratch("good");
        let path = dir.join("otp.toml");
        write(&path, GOOD, 0o600);
        assert!(read_enrollment(&path, &me()).is_ok());
    }

    #[test]
    fn missing_means_not_enrolled() {
        let dir = scratch("missing");
        assert!(matches!(
            read_enrollment(&dir.join("nope"), &me()),
            Err(UserFileError::NotEnrolled)
        ));
    }

    #[test]
    fn unsafe_files_are_refused() {
        let dir = scratch("unsafe");
        let open = dir.join("open.toml");
        write(&open, GOOD, 0o644);
        assert!(matches!(
            read_enrollment(&open, &me()),
            Err(UserFileError::Insecure(_))
        ));

        let target = dir.join("target.toml");
        write(&target, GOOD, 0o600);
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(
            matches!(read_enrollment(&link, &me()), Err(UserFileError::Insecure(m)) if m.contains("symbolic"))
        );

        let hard = dir.join("hard.toml");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(
            matches!(read_enrollment(&hard, &me()), Err(UserFileError::Insecure(m)) if m.contains("hard links"))
        );

        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(
            matches!(read_enrollment(&fifo, &me()), Err(UserFileError::Insecure(m)) if m.contains("regular"))
        );

        let sub = dir.join("dir.toml");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            read_enrollment(&sub, &me()),
            Err(UserFileError::Insecure(_))
        ));

        let big = dir.join("big.toml");
        write(&big, &"#".repeat(70 * 1024), 0o600);
        assert!(
            matches!(read_enrollment(&big, &me()), Err(UserFileError::Insecure(m)) if m.contains("64 KiB"))
        );
    }

    #[test]
    fn broken_content_is_invalid() {
        let dir = scratch("broken");
        let path = dir.join("otp.toml");
        write(&path, "secret = 1", 0o600);
        assert!(matches!(
            read_enrollment(&path, &me()),
            Err(UserFileError::Invalid(_))
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_enrollment(&path, &me()),
            Err(UserFileError::Invalid(_))
        ));
    }
}
