//! Helpers for the hostile-input, fault and load tests: syslog capture through a
//! private `/dev/log`, users with names `useradd` normally refuses, mounts that undo
//! themselves, state file inspection and a small seeded random source.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    finish, pamtester_argv, scratch_path, spawn, LocalUser, Outcome, Service, UserOptions,
};

/// Prepares a private `/dev` whose `log` is the capture socket ($1), then runs the rest.
/// Runs inside `unshare --mount`, so nothing of it is seen outside that one process tree.
pub const PRIVATE_DEV_LOG: &str = r#"set -e
sock=$1; dev=$2; shift 2
mkdir "$dev"
mount -t tmpfs -o mode=0755 tmpfs "$dev"
for n in null zero full random urandom tty; do touch "$dev/$n"; mount --bind "/dev/$n" "$dev/$n"; done
ln -s /proc/self/fd "$dev/fd"
mkdir "$dev/shm"; mount --bind /dev/shm "$dev/shm"
mkdir "$dev/pts"; mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$dev/pts"; ln -s pts/ptmx "$dev/ptmx"
touch "$dev/log"; mount --bind "$sock" "$dev/log"
mount --move "$dev" /dev
rmdir "$dev"
exec "$@""#;

/// A syslog socket the module logs to when pamtester runs through `run_logged`.
pub struct SyslogCapture {
    socket: UnixDatagram,
    path: PathBuf,
}

impl SyslogCapture {
    pub fn new() -> SyslogCapture {
        let path = scratch_path("th-log");
        let socket = UnixDatagram::bind(&path).expect("bind the syslog capture socket");
        socket.set_nonblocking(true).unwrap();
        SyslogCapture { socket, path }
    }

    /// The socket's path, to bind over `/dev/log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message received so far (the sender has exited, so all are queued).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buffer = vec![0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buffer) {
            lines.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        lines
    }
}

impl Drop for SyslogCapture {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What one logged pamtester run did, what the module logged and how long it took.
pub struct Logged {
    pub outcome: Outcome,
    pub log: Vec<String>,
    pub elapsed: Duration,
}

impl Logged {
    /// The module's lines (`pam_otp(...)`), for messages.
    pub fn module_lines(&self) -> Vec<&String> {
        self.log.iter().filter(|l| l.contains("pam_otp(")).collect()
    }

    /// Asserts a module line contains every one of `needles`.
    #[track_caller]
    pub fn assert_logged(&self, needles: &[&str], what: &str) {
        assert!(
            self.module_lines()
                .iter()
                .any(|line| needles.iter().all(|n| line.contains(n))),
            "{what}: no pam_otp log line contains {needles:?}; lines: {:#?}\npamtester: {:?}",
            self.log,
            self.outcome
        );
    }

    /// Refused with this pam_strerror text, logged with `needles`, without asking for a
    /// code, and quickly (nothing hangs).
    #[track_caller]
    pub fn assert_refused(&self, message: &str, needles: &[&str], what: &str) {
        self.outcome.assert_failure(message, what);
        self.assert_logged(needles, what);
        assert!(
            !self.outcome.prompted("Verification code"),
            "{what}: the module asked for a code instead of refusing first: {:?}",
            self.outcome
        );
        assert!(
            self.elapsed < Duration::from_secs(10),
            "{what}: took {:?}",
            self.elapsed
        );
    }
}

/// pamtester in a private mount namespace whose `/dev/log` is a fresh capture socket.
pub fn run_logged(service: &Service, user: &str, answer: &str, faketime: Option<&str>) -> Logged {
    run_argv_logged(pamtester_argv(service, user, faketime, None), answer)
}

/// Any PAM client `argv` (e.g. pamtester run under another name) in a private mount
/// namespace whose `/dev/log` is a fresh capture socket.
pub fn run_argv_logged(client: Vec<String>, answer: &str) -> Logged {
    let capture = SyslogCapture::new();
    let dev = scratch_path("th-dev");
    let mut argv = crate::support::in_private_mounts(
        PRIVATE_DEV_LOG,
        &[
            capture.path.display().to_string(),
            dev.display().to_string(),
        ],
    );
    argv.extend(client);
    let started = Instant::now();
    let outcome = finish(spawn(&argv), answer);
    let elapsed = started.elapsed();
    let _ = fs::remove_dir(&dev);
    Logged {
        outcome,
        log: capture.lines(),
        elapsed,
    }
}

/// A PAM service whose only line is `auth required <module> <args>` (no state_dir added).
pub fn service_with_args(args: &str) -> Service {
    Service::with_lines(&[format!(
        "auth required {} {args}",
        crate::support::module_path().display()
    )])
}

/// A user whose name `useradd` accepts only with `--badname` (e.g. with `/` or a leading
/// dot), with a normal home directory; deleted with its home on drop.
pub type BadNameUser = LocalUser<BadName>;
pub struct BadName;

impl BadNameUser {
    pub fn new(name: &str) -> BadNameUser {
        BadNameUser::create(
            name,
            UserOptions {
                home_at: Some(scratch_path("th-badhome")),
                bad_name: true,
                ..UserOptions::default()
            },
        )
    }
}

/// A mount made for one test, undone (lazily) on drop.
pub struct Mount {
    pub path: PathBuf,
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mount {
    /// A tmpfs of `size` (e.g. `64k`) on `path`, root-owned, mode 0700.
    pub fn tmpfs(path: &Path, size: &str) -> Mount {
        let options = format!("size={size},mode=0700,uid=0,gid=0");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &options,
            "tmpfs",
            &path.display().to_string(),
        ]);
        Mount { path: path.into() }
    }

    /// `path` bound onto itself read-only.
    pub fn read_only(path: &Path) -> Mount {
        let p = path.display().to_string();
        mount(&["--bind", &p, &p]);
        let guard = Mount { path: path.into() };
        mount(&["-o", "remount,bind,ro", &p]);
        guard
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub use crate::support::Rng;
