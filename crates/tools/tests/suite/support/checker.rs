//! Helpers for the tests of PAM callers that are not root (screen lockers) and of the
//! setuid checker `pam_otp_check` they go through.
//!
//! The checker must be setuid root, and the module finds it beside itself. With the
//! built files, both are copied into a fresh root-owned directory (module 0644, checker
//! 4755) and the services name that copy of the module; `PAM_OTP_CHECKER` names another
//! checker binary to copy (e.g. an older build). With the installed files
//! (`PAM_OTP_MODULE=pam_otp.so`) the services name the installed module, which runs the
//! installed checker.
//!
//! The checker takes its policy only from `/etc/security/pam_otp.toml`: each client run
//! gets its own policy there, bind-mounted in a private mount namespace of that run
//! only, and runs as the user with setpriv.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::clients::policy_text;
use crate::support::hostile::{Logged, SyslogCapture, PRIVATE_DEV_LOG};
use crate::support::{
    in_private_mounts, installed, module_path, module_ref, multiarch_lib_dir, scratch_path,
    set_mode, unique, LocalUser, Outcome, StateDir,
};

/// The checker's file name.
pub const CHECKER: &str = "pam_otp_check";

/// What the user sees when the checker is missing or not setuid.
pub const NO_CHECKER_MESSAGE: &str = "One-time codes cannot be checked for this program";

/// Exit statuses of the checker (PAM return codes).
pub const EXIT_SUCCESS: i32 = 0;
pub const EXIT_SYSTEM_ERR: i32 = 4;
pub const EXIT_PERM_DENIED: i32 = 6;
pub const EXIT_AUTH_ERR: i32 = 7;
pub const EXIT_CONV_ERR: i32 = 19;

/// The installed checker, as the package and `make install` place it.
fn installed_checker() -> PathBuf {
    multiarch_lib_dir().join("pam-otp").join(CHECKER)
}

/// The checker under test: `$PAM_OTP_CHECKER`, else the installed one when testing the
/// installed files, else `pam_otp_check` beside the built module.
pub fn built_checker() -> PathBuf {
    let path = match std::env::var_os("PAM_OTP_CHECKER") {
        Some(path) => PathBuf::from(path),
        None if installed() => installed_checker(),
        None => module_path().with_file_name(CHECKER),
    };
    assert!(
        path.is_file(),
        "{} not found: run `cargo build` first (or set PAM_OTP_CHECKER)",
        path.display()
    );
    path
}

/// The module and checker the tests use, set up as installed: root's, the checker 4755.
pub struct CheckerInstall {
    /// How a PAM file names the module.
    pub module: String,
    /// The checker the module runs.
    pub checker: PathBuf,
    /// The directory made for the copies (none for the installed files).
    dir: Option<PathBuf>,
}

/// How the copied checker is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CheckerMode {
    Setuid,
    NotSetuid,
    Missing,
}

impl CheckerInstall {
    pub fn new() -> CheckerInstall {
        if installed() {
            let checker = installed_checker();
            assert!(checker.is_file(), "{} is not installed", checker.display());
            return CheckerInstall {
                module: module_ref(),
                checker,
                dir: None,
            };
        }
        CheckerInstall::copied(CheckerMode::Setuid)
    }

    /// Copies of the built module and checker in a fresh root-owned directory.
    pub fn copied(mode: CheckerMode) -> CheckerInstall {
        let dir = Path::new("/usr/local/lib").join(unique("pam-otp-checker-"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let module = dir.join("libpam_otp.so");
        let checker = dir.join(CHECKER);
        install(&module_path(), &module, "0644");
        // Fleet mode: the Redis client object beside the module, as cargo builds it.
        let redis_client = module_path().with_file_name("libpam_otp_redis.so");
        if redis_client.is_file() {
            install(&redis_client, &dir.join("libpam_otp_redis.so"), "0644");
        }
        match mode {
            CheckerMode::Setuid => install(&built_checker(), &checker, "4755"),
            CheckerMode::NotSetuid => install(&built_checker(), &checker, "0755"),
            CheckerMode::Missing => {}
        }
        CheckerInstall {
            module: module.display().to_string(),
            checker,
            dir: Some(dir),
        }
    }
}

impl Drop for CheckerInstall {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Copies with `install` in a child process (see `runnable_copy` on ETXTBSY).
fn install(from: &Path, to: &Path, mode: &str) {
    let status = Command::new("install")
        .args(["-o", "root", "-g", "root", "-m", mode])
        .arg(from)
        .arg(to)
        .status()
        .expect("run install");
    assert!(
        status.success(),
        "install {} {}",
        from.display(),
        to.display()
    );
}

/// A policy for `/etc/security/pam_otp.toml`: the shipped file with `state_dir` set to
/// the test's own directory and `settings`; kept in a directory that is bind-mounted over
/// `/etc/security` for one client run. Removed on drop.
pub struct SystemPolicy {
    pub state: StateDir,
    dir: PathBuf,
}

impl SystemPolicy {
    pub fn new(settings: &[(&str, &str)]) -> SystemPolicy {
        let state = StateDir::new();
        let dir = scratch_path("tsl-security");
        fs::create_dir(&dir).unwrap();
        if Path::new("/etc/security").is_dir() {
            let status = Command::new("cp")
                .args(["-a", "/etc/security/.", &dir.display().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "cp -a /etc/security");
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let state_dir = format!("\"{}\"", state.path.display());
        let mut all = vec![("state_dir", state_dir.as_str())];
        all.extend_from_slice(settings);
        let file = dir.join("pam_otp.toml");
        fs::write(&file, policy_text(&all)).unwrap();
        // Readable by all, as installed: the module, running as the user, reads it too.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        SystemPolicy { state, dir }
    }

    /// The policy file (root's, 0644), as a root login's `policy=` names it.
    pub fn file(&self) -> PathBuf {
        self.dir.join("pam_otp.toml")
    }

    /// `argv` run in a private mount namespace where this is `/etc/security`, as the
    /// user `uid`/`gid` (setpriv; no supplementary groups), with an empty environment
    /// but for `env`.
    pub fn as_user(
        &self,
        uid: u32,
        gid: u32,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Vec<String> {
        let mut inner = vec![
            "setpriv".to_string(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "env".into(),
            "-i".into(),
        ];
        inner.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        inner.extend(argv.iter().cloned());
        let mut outer = in_private_mounts(
            "set -e\nmount --bind \"$1\" /etc/security\nshift\nexec \"$@\"",
            &[self.dir.display().to_string()],
        );
        outer.extend(inner);
        outer
    }

    /// The state file of `user`.
    pub fn state_file<K>(&self, user: &LocalUser<K>) -> PathBuf {
        self.state.path.join(format!("uid-{}.state", user.uid))
    }

    /// What the state directory holds: each entry's name and mode and owner.
    pub fn listing(&self) -> Vec<String> {
        let out = Command::new("ls")
            .args(["-ln", "--time-style=+"])
            .arg(&self.state.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }
}

impl Drop for SystemPolicy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `argv` (from `SystemPolicy::as_user`) with `input` on its standard input (closed
/// after), with a private `/dev/log` whose lines are kept.
pub fn run_logged(argv: Vec<String>, input: &[u8]) -> Logged {
    let capture = SyslogCapture::new();
    // The module logs as the user: the socket must take the user's lines too.
    set_mode(capture.path(), 0o666);
    let dev = scratch_path("tsl-dev");
    let mut full = in_private_mounts(
        PRIVATE_DEV_LOG,
        &[
            capture.path().display().to_string(),
            dev.display().to_string(),
        ],
    );
    full.extend(argv);
    let started = Instant::now();
    let mut child = Command::new("timeout")
        .arg("60")
        .args(&full)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {full:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Written by a thread: the reader may stop early (a closed pipe is fine).
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for the client");
    let _ = writer.join();
    let elapsed = started.elapsed();
    let _ = fs::remove_dir(&dev);
    Logged {
        outcome: Outcome {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        log: capture.lines(),
        elapsed,
    }
}

/// `pamtester SERVICE USER authenticate` as `runner` (uid and gid), with `answers`
/// (lines) typed.
pub fn pamtester_as<K, R>(
    policy: &SystemPolicy,
    runner: &LocalUser<R>,
    service: &str,
    user: &LocalUser<K>,
    answers: &str,
) -> Logged {
    pamtester_as_name(policy, runner, service, &user.name, answers)
}

pub fn pamtester_as_name<R>(
    policy: &SystemPolicy,
    runner: &LocalUser<R>,
    service: &str,
    user: &str,
    answers: &str,
) -> Logged {
    let argv = policy.as_user(
        runner.uid,
        runner.gid,
        &[],
        &[
            "pamtester".into(),
            service.into(),
            user.into(),
            "authenticate".into(),
        ],
    );
    run_logged(argv, format!("{answers}\n").as_bytes())
}

/// The checker run directly by `runner` with `args`, `env` and `input` on a pipe.
pub fn checker_as<R>(
    policy: &SystemPolicy,
    install: &CheckerInstall,
    runner: &LocalUser<R>,
    args: &[&str],
    env: &[(&str, &str)],
    input: &[u8],
) -> Logged {
    let mut argv = vec![install.checker.display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    run_logged(policy.as_user(runner.uid, runner.gid, env, &argv), input)
}

/// `answer` as the module sends it: NUL-terminated.
pub fn wire_answer(answer: &str) -> Vec<u8> {
    let mut bytes = answer.as_bytes().to_vec();
    bytes.push(0);
    bytes
}
