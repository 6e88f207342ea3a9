//! Where an enrollment file goes and with whose rights it is written: the user's own
//! file (`otp-setup`), or a root-owned file in the administrator's store (`otp-admin
//! enroll`), which the module reads as root only where every directory from `/` down is
//! root's and writable by no one else.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{bad, check_writable, in_home, Context, SetupError};
use pam_otp_sys::account::Account;
use pam_otp_sys::policy::{expand_secret_path, STORE_SECRET};
use pam_otp_sys::private_file::{parent_dir, write_private_file, Existing};
use pam_otp_sys::safe_path::check_root_owned_dir;
use pam_otp_sys::user_file::read_enrollment_as;

/// Who types at the terminal during an enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// The user, for themselves (`otp-setup`): `~/.otp.toml`, written with their rights.
    User,
    /// Root, for this account (`otp-admin enroll`): a root-owned file in the store, which
    /// the user's own processes cannot read.
    Administrator(Account),
}

impl Operator {
    /// Whose app shows the code: "your", or "alice's".
    pub(super) fn whose(&self) -> String {
        match self {
            Operator::User => "your".into(),
            Operator::Administrator(account) => format!("{}'s", account.name),
        }
    }

    /// The issuer shown in the app without `--issuer`. A user may hold both enrollments
    /// on one phone, each with its own secret: were the store's named as otp-setup's
    /// (`HOST`, `USER@HOST`), the user could type the wrong one's code at sudo, and each
    /// such code counts towards a lockout.
    pub(super) fn default_issuer(&self, host_name: &str) -> String {
        match self {
            Operator::User => host_name.into(),
            Operator::Administrator(_) => format!("{host_name} sudo"),
        }
    }

    /// The line naming the entry to use in the app, for the store's enrollment only (the
    /// user's own is the one entry otp-setup ever makes).
    pub(super) fn entry_note(&self, issuer: &str, label: &str) -> Option<String> {
        match self {
            Operator::User => None,
            Operator::Administrator(account) => Some(format!(
                "In {}'s app this is the entry \"{issuer}\" ({label}): sudo asks for its \
                 codes, not for those of an entry made with otp-setup.",
                account.name
            )),
        }
    }

    /// The command that makes this enrollment (again).
    pub(super) fn command(&self, user: &str) -> String {
        match self {
            Operator::User => "otp-setup".into(),
            Operator::Administrator(_) => format!("otp-admin enroll {user}"),
        }
    }

    /// What to do with the recovery codes, said to whoever reads the screen.
    pub(super) fn keep_codes_safe(&self, user: &str) -> String {
        match self {
            Operator::User => "Keep them somewhere safe;".into(),
            Operator::Administrator(_) => format!("Hand them to {user} to keep somewhere safe;"),
        }
    }

    /// The file written without `--file`.
    pub(super) fn default_file(&self, context: &Context) -> Result<PathBuf, SetupError> {
        match self {
            Operator::User => Ok(in_home(context, ".otp.toml")),
            Operator::Administrator(account) => {
                expand_secret_path(STORE_SECRET, &account.name, &account.home)
                    .map_err(|e| bad(e.to_string()))
            }
        }
    }

    /// Refuses, before anything is shown, a target that cannot be written, or (for root)
    /// one the module would not read as root.
    pub(super) fn check_target(&self, path: &Path, existing: Existing) -> Result<(), SetupError> {
        match self {
            Operator::User => check_writable(path, existing),
            Operator::Administrator(_) => check_store_target(path, existing),
        }
    }

    /// Writes the enrollment file (owner-only, atomically).
    pub(super) fn write(
        &self,
        path: &Path,
        contents: &[u8],
        existing: Existing,
    ) -> Result<(), SetupError> {
        match self {
            Operator::User => {
                write_private_file(path, contents, existing).map_err(|e| bad(e.to_string()))
            }
            Operator::Administrator(account) => write_to_store(path, contents, existing, account),
        }
    }
}

/// An existing file only with `--force`, never a directory; the directory (or the part
/// of it that exists: the rest is made at the end) root's from `/` down.
fn check_store_target(path: &Path, existing: Existing) -> Result<(), SetupError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(bad(format!("{} is a directory", path.display()))),
        Ok(_) if existing == Existing::Keep => {
            return Err(bad(format!(
                "{} already exists; use --force to replace it",
                path.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(format!("cannot inspect {}: {e}", path.display()))),
    }
    match check_root_owned_dir(parent_dir(path)) {
        // The walk stops at the first missing directory: every one above it passed, and the
        // missing ones are made (0700, root) only once the enrollment is confirmed.
        Err(e) if e.is_not_found() => Ok(()),
        result => result.map_err(|e| not_a_store(path, &e)),
    }
}

fn not_a_store(path: &Path, error: &pam_otp_sys::safe_path::UnsafePath) -> SetupError {
    bad(format!(
        "cannot keep a secret in {}: {error}; the module reads a root-owned secret only where \
         every directory from / down is root's and writable by no one else",
        parent_dir(path).display()
    ))
}

/// Makes the missing directories (0700, root), writes the file, and reads it back the way
/// a login will: a file the module would not read as root is removed again.
fn write_to_store(
    path: &Path,
    contents: &[u8],
    existing: Existing,
    account: &Account,
) -> Result<(), SetupError> {
    let dir = parent_dir(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
    check_root_owned_dir(dir).map_err(|e| not_a_store(path, &e))?;
    write_private_file(path, contents, existing).map_err(|e| bad(e.to_string()))?;
    match read_enrollment_as(path, account) {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(bad(format!(
                "wrote {} but a login would refuse it ({e}); removed it",
                path.display()
            )))
        }
    }
}
