//! Reading a user's enrollment file safely: as root from the administrator's store (a
//! root-owned file in a directory chain only root can change), otherwise as the user;
//! no symlinks, no FIFOs, capped.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::unistd::{setfsgid, setfsuid, Gid, Uid};
use zeroize::Zeroizing;

use crate::account::Account;
use crate::safe_path::{open_root_owned_file, Problem, UnsafePath};
use pam_otp_core::enrollment::{Enrollment, EnrollmentError};

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

impl std::error::Error for UserFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UserFileError::NotEnrolled | UserFileError::Insecure(_) => None,
            UserFileError::Unreadable(e) => Some(e),
            UserFileError::Invalid(e) => Some(e),
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

/// Whose rights an enrollment file was read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAs {
    /// The administrator's store: a root-owned file (0600 or 0400, one link) in a
    /// directory chain only root can change, read as root. The user's own processes
    /// cannot read it.
    Root,
    /// The user's own file, read with the user's file-system identity.
    User,
}

/// Opens and checks the file (as root from the store, else as the user), then parses it.
pub fn read_enrollment(path: &Path, account: &Account) -> Result<Enrollment, UserFileError> {
    read_enrollment_as(path, account).map(|(enrollment, _)| enrollment)
}

/// [`read_enrollment`], saying whose rights the file was read with.
pub fn read_enrollment_as(
    path: &Path,
    account: &Account,
) -> Result<(Enrollment, ReadAs), UserFileError> {
    let (text, read_as) = read_secret_file(path, account)?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| UserFileError::Invalid(EnrollmentError::Syntax("not UTF-8 text".into())))?;
    let enrollment = Enrollment::parse(text).map_err(UserFileError::Invalid)?;
    Ok((enrollment, read_as))
}

// Why reading as root is safe here, and in this order (`open_root_owned_file`):
// 1. The directories from `/` down to the file's are checked first (lstat of each: owned
//    by root, writable by no one else, none a symbolic link). In such a chain no one but
//    root can rename, replace or add an entry, so what was checked stays true until the
//    file is opened: there is no window for anyone else to swap a component.
// 2. Only then is the file opened as root, with O_NOFOLLOW (a symbolic link as the last
//    component fails instead of being followed) and O_NONBLOCK (a FIFO cannot hang the
//    login). Opening first would let a user-controlled directory on the way steer a root
//    open at any file of the system.
// 3. The opened descriptor is checked with fstat: owner, type, mode and links are those of
//    the very file that is read, not of a name that might since point elsewhere.
// A file that is not root's is closed again and read under the existing rules, as the user.
fn read_secret_file(
    path: &Path,
    account: &Account,
) -> Result<(Zeroizing<Vec<u8>>, ReadAs), UserFileError> {
    // Root's own file is the user's own: the existing rules read it.
    if account.uid != 0 {
        if let Some(text) = read_from_store(path)? {
            return Ok((text, ReadAs::Root));
        }
    }
    read_as_user(path, account).map(|text| (text, ReadAs::User))
}

/// Reads the file as root if it is root's in a root-only directory chain; `None` if it is
/// for the user's rules to judge (someone else's file, or a directory on the way that is
/// not root's alone and no root-owned file behind it).
fn read_from_store(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, UserFileError> {
    let file = match open_root_owned_file(path) {
        Ok(file) => file,
        Err(refusal) => return not_from_the_store(path, &refusal).map(|()| None),
    };
    let meta = file.metadata().map_err(UserFileError::Unreadable)?;
    check_store_metadata(&meta)?;
    read_capped(file, &meta).map(Some)
}

/// Why the file is not read as root: an error if that settles the login, `Ok` if the
/// user's rules are to judge it.
fn not_from_the_store(path: &Path, refusal: &UnsafePath) -> Result<(), UserFileError> {
    // A missing file, or a missing directory below root-only ones: nothing can be there,
    // and no one but root could put it there.
    if refusal.is_not_found() {
        return Err(UserFileError::NotEnrolled);
    }
    if refusal.component != refusal.target {
        return refuse_root_owned_outside_store(path, refusal);
    }
    match refusal.problem {
        Problem::SymbolicLink => Err(UserFileError::Insecure("is a symbolic link".into())),
        Problem::NotRegularFile | Problem::WritableByOthers { .. } => {
            Err(UserFileError::Insecure(refusal.to_string()))
        }
        // Someone else's file (the user's, say), or one root cannot inspect.
        _ => Ok(()),
    }
}

/// A root-owned file outside a root-only directory chain is never read: anyone who can
/// write to a directory on the way could have put it there, or could swap it at any time.
/// (Other kinds of file, devices included, are judged by the user's rules.)
fn refuse_root_owned_outside_store(path: &Path, refusal: &UnsafePath) -> Result<(), UserFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.uid() == 0 => Err(UserFileError::Insecure(format!(
            "owned by root, but {refusal}"
        ))),
        _ => Ok(()),
    }
}

fn open_no_follow(path: &Path) -> Result<File, UserFileError> {
    File::options()
        .read(true)
        // No symlink as the last component; a FIFO or device must not block the login.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => UserFileError::NotEnrolled,
            Some(libc::ELOOP) => UserFileError::Insecure("is a symbolic link".into()),
            _ => UserFileError::Unreadable(e),
        })
}

fn read_capped(
    mut file: File,
    meta: &std::fs::Metadata,
) -> Result<Zeroizing<Vec<u8>>, UserFileError> {
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

fn read_as_user(path: &Path, account: &Account) -> Result<Zeroizing<Vec<u8>>, UserFileError> {
    let _identity = UserFsIdentity::assume(account);
    let file = open_no_follow(path)?;
    let meta = file.metadata().map_err(UserFileError::Unreadable)?;
    check_metadata(&meta, account)?;
    read_capped(file, &meta)
}

/// The store's own rules for a root-owned file: regular, 0600 or 0400, one link, capped.
fn check_store_metadata(meta: &std::fs::Metadata) -> Result<(), UserFileError> {
    let insecure = |why: String| Err(UserFileError::Insecure(why));
    if !meta.file_type().is_file() {
        return insecure("not a regular file".into());
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return insecure(format!(
            "owned by root with mode {mode:04o}; a root-owned secret must be mode 0600 or 0400 \
             (chmod 600)"
        ));
    }
    if meta.nlink() != 1 {
        // Another name for the file could sit outside the checked directories.
        return insecure(format!("has {} hard links", meta.nlink()));
    }
    if meta.len() > MAX_ENROLLMENT_BYTES {
        return insecure("larger than 64 KiB".into());
    }
    Ok(())
}

fn check_metadata(meta: &std::fs::Metadata, account: &Account) -> Result<(), UserFileError> {
    let insecure = |why: String| Err(UserFileError::Insecure(why));
    if !meta.file_type().is_file() {
        return insecure("not a regular file".into());
    }
    if meta.uid() != account.uid {
        // Root's files are read only from the store (see read_secret_file).
        return insecure(format!(
            "owned by uid {}, not by {} (nor a root-owned file in a root-only directory)",
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

    /// Root-owned scratch space (0700) under /run, so that every directory above is root's.
    fn root_scratch(name: &str) -> PathBuf {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run the unit tests as root"
        );
        let dir = PathBuf::from(format!("/run/pam-otp-uf-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// An account that is not root (no such user needs to exist).
    fn someone() -> Account {
        Account {
            name: "someone".into(),
            uid: 4242,
            gid: 4242,
            home: "/nonexistent".into(),
        }
    }

    fn insecure_because(result: Result<(Enrollment, ReadAs), UserFileError>, needle: &str) {
        match result {
            Err(UserFileError::Insecure(why)) => assert!(why.contains(needle), "{why}"),
            other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
        }
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn a_root_owned_secret_in_a_root_only_chain_is_read_as_root() {
        let dir = root_scratch("store");
        let path = dir.join("someone.toml");
        for mode in [0o600, 0o400] {
            write(&path, GOOD, mode);
            let (_, read_as) = read_enrollment_as(&path, &someone()).unwrap();
            assert_eq!(read_as, ReadAs::Root, "mode {mode:o}");
        }
        for mode in [0o640, 0o604, 0o700, 0o644, 0o200] {
            write(&path, GOOD, mode);
            insecure_because(read_enrollment_as(&path, &someone()), "mode 0600 or 0400");
        }
        write(&path, GOOD, 0o666);
        insecure_because(
            read_enrollment_as(&path, &someone()),
            "writable by group or others",
        );
        write(&path, GOOD, 0o600);
        let hard = dir.join("other.toml");
        std::fs::hard_link(&path, &hard).unwrap();
        insecure_because(read_enrollment_as(&path, &someone()), "2 hard links");
        std::fs::remove_file(&hard).unwrap();
        assert!(matches!(
            read_enrollment_as(&dir.join("nobody.toml"), &someone()),
            Err(UserFileError::NotEnrolled)
        ));
        assert!(matches!(
            read_enrollment_as(&dir.join("no/such.toml"), &someone()),
            Err(UserFileError::NotEnrolled)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn a_root_owned_secret_outside_a_root_only_chain_is_refused() {
        let top = root_scratch("outside");
        let dir = top.join("secrets");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("someone.toml");
        write(&path, GOOD, 0o600);
        for mode in [0o770, 0o1777, 0o757] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            insecure_because(
                read_enrollment_as(&path, &someone()),
                "writable by group or others",
            );
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
        insecure_because(
            read_enrollment_as(&path, &someone()),
            "owned by uid 4242, not root",
        );
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();

        let link = top.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        insecure_because(
            read_enrollment_as(&link.join("someone.toml"), &someone()),
            "is a symbolic link",
        );
        let file_link = dir.join("linked.toml");
        std::os::unix::fs::symlink(&path, &file_link).unwrap();
        insecure_because(
            read_enrollment_as(&file_link, &someone()),
            "is a symbolic link",
        );
        assert_eq!(
            read_enrollment_as(&path, &someone()).unwrap().1,
            ReadAs::Root,
            "control: the same file in the same, now safe, directory"
        );
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn a_users_file_in_a_root_only_chain_is_read_as_the_user() {
        let dir = root_scratch("users-file");
        let path = dir.join("someone.toml");
        write(&path, GOOD, 0o600);
        std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
        // Root could read it; the user cannot enter the 0700 directory.
        match read_enrollment_as(&path, &someone()) {
            Err(UserFileError::Unreadable(e)) => {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}")
            }
            other => panic!("expected Permission denied, got {other:?}"),
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(
            read_enrollment_as(&path, &someone()).unwrap().1,
            ReadAs::User
        );
        // Mode 0000: root could still read it, the owner cannot.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(matches!(
            read_enrollment_as(&path, &someone()),
            Err(UserFileError::Unreadable(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
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

    #[test]
    fn the_enrollment_error_and_the_io_error_are_the_sources() {
        use std::error::Error;
        let invalid = UserFileError::Invalid(EnrollmentError::SecretNotBase32);
        assert_eq!(
            invalid
                .source()
                .and_then(|e| e.downcast_ref::<EnrollmentError>()),
            Some(&EnrollmentError::SecretNotBase32)
        );
        let unreadable = UserFileError::Unreadable(io::Error::from(io::ErrorKind::InvalidData));
        assert_eq!(
            unreadable
                .source()
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::InvalidData)
        );
        assert!(UserFileError::NotEnrolled.source().is_none());
    }
}
