//! Helpers for the otp-admin tests: users and PAM services named `ta…`, the
//! otp-admin binary under test, state-directory snapshots.
//!
//! With `PAM_OTP_MODULE=pam_otp.so` (a bare name, as packaging/check-deb.sh sets it after
//! `dpkg -i`) the tests use the installed files: services name the module plainly, so
//! libpam itself finds it in the system's module directory, and `/usr/sbin/otp-admin` runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{installed, runnable_copy, unique, LocalUser, UserOptions};
pub use crate::support::{Service, StateDir};

/// The otp-admin under test.
pub fn otp_admin_path() -> PathBuf {
    let path = if installed() {
        PathBuf::from("/usr/sbin/otp-admin")
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_otp-admin"))
    };
    assert!(path.is_file(), "{} not found", path.display());
    path
}

/// A throw-away local user `ta<pid>n<k>` with a home; deleted with its home on drop.
pub type User = LocalUser<Admin>;
pub struct Admin;

impl User {
    pub fn new() -> User {
        User::create(&unique("ta"), UserOptions::default())
    }
}

/// What one otp-admin run did.
#[derive(Debug)]
pub struct AdminRun {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl AdminRun {
    #[track_caller]
    pub fn assert_ok(&self, what: &str) {
        assert_eq!(self.status, Some(0), "{what}: expected exit 0\n{self:#?}");
    }

    /// Exit 2 with exactly one line on stderr, naming the program, and nothing on stdout.
    #[track_caller]
    pub fn assert_refused(&self, what: &str) {
        assert_eq!(self.status, Some(2), "{what}: expected exit 2\n{self:#?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "{what}: expected one line on stderr\n{self:#?}"
        );
        assert!(
            self.stderr.starts_with("otp-admin: "),
            "{what}: stderr should start with the program's name\n{self:#?}"
        );
        assert!(
            self.stdout.is_empty(),
            "{what}: nothing on stdout\n{self:#?}"
        );
    }

    /// `status --json` output, parsed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", self.stdout))
    }
}

fn run(mut cmd: Command) -> AdminRun {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    AdminRun {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `otp-admin ARGS` as root.
pub fn otp_admin(args: &[&str]) -> AdminRun {
    let mut cmd = Command::new(otp_admin_path());
    cmd.args(args);
    run(cmd)
}

/// How long a bounded otp-admin run may take, and how much address space it may map
/// (512 MiB, in bytes: prlimit 2.38 reads no unit suffix).
const BOUNDED_SECS: &str = "20";
const BOUNDED_ADDRESS_SPACE: &str = "536870912";

/// `otp-admin ARGS` as root under `timeout` and `prlimit --as`: a run that hangs is killed
/// (status 124) and one that allocates without end aborts, so either fails the test
/// instead of blocking the suite or the machine.
pub fn otp_admin_bounded(args: &[&str]) -> AdminRun {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", BOUNDED_SECS])
        .arg("prlimit")
        .arg(format!("--as={BOUNDED_ADDRESS_SPACE}"))
        .arg("--")
        .arg(otp_admin_path())
        .args(args);
    run(cmd)
}

/// `otp-admin ARGS` as another user (uid and gid dropped with setpriv). The binary is
/// copied to a world-readable place first: the build tree may be under a private home.
pub fn otp_admin_as(user: &User, args: &[&str]) -> AdminRun {
    let copy = runnable_copy(&otp_admin_path(), "ta-bin");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg(&copy)
        .args(args);
    let result = run(cmd);
    let _ = fs::remove_dir_all(copy.parent().unwrap());
    result
}

/// The state files of a directory and their bytes. Lock files are left out: they are empty,
/// and every login attempt (and any look under the lock) creates them.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect()
}
