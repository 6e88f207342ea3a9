//! Helpers for the real-PAM integration tests.
//!
//! Every test drives the built module through real libpam with `pamtester`,
//! gets its codes from `oathtool` and never calls the crate's own code. Each
//! test has its own user, its own `/etc/pam.d` service file and its own state
//! directory, all removed again on drop, so the tests can run in parallel.
//! They must run as root.

pub mod rng;
pub use rng::Rng;
pub mod admin;
pub mod checker;
pub mod clients;
pub mod enrollment_tools;
pub mod hostile;
pub mod redis;
pub mod secret_store;
pub mod sentinel;
pub mod state_record;

use std::fs;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::TcpListener;
use std::os::unix::fs::{chown, lchown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// pam_strerror texts as pamtester prints them (`pamtester: TEXT` on stderr).
pub const AUTH_ERR: &str = "Authentication failure";
pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
pub const USER_UNKNOWN: &str = "User not known to the underlying authentication module";
pub const SERVICE_ERR: &str = "Error in service module";
/// What libpam returns when every module of the stack said PAM_IGNORE.
pub const PERM_DENIED: &str = "Permission denied";
/// A locked user's login (PAM_PERM_DENIED; PAM_MAXTRIES would make sshd offer no method).
pub const LOCKED: &str = PERM_DENIED;

/// The module's default prompt (echo off); pamtester writes prompts to stderr.
pub const DEFAULT_PROMPT: &str = "Verification code: ";
/// The message a user sees for a code used before.
pub const REPLAY_MESSAGE: &str = "This code was already used; wait for the next one.";
/// How the message a locked-out user sees starts (the wait follows in words).
pub const LOCKED_MESSAGE: &str = "Locked out after too many failed attempts; try again in ";

/// Seconds after which a hung pamtester is killed (e.g. a module blocking on a FIFO).
const TIMEOUT_SECS: &str = "20";

static UNIQUE: AtomicUsize = AtomicUsize::new(0);
/// useradd/userdel take /etc/passwd locks: never run two at once from this process.
static USER_DB: Mutex<()> = Mutex::new(());

/// A name no other test (in this or a concurrently running test binary) uses.
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}n{n}", std::process::id())
}

/// The root of the source tree (the workspace): `config/`, `packaging/`, the docs.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Seconds since the epoch (real time).
#[allow(clippy::disallowed_methods)] // the tests' own clock, independent of the module's
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// Fails unless the tests run as root (they add users and write /etc/pam.d).
pub fn assert_root() {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the PAM integration tests must run as root"
    );
}

/// Debian's multiarch library directory of this machine (`/usr/lib/x86_64-linux-gnu` on
/// x86_64, `/usr/lib/aarch64-linux-gnu` on arm64).
pub fn multiarch_lib_dir() -> PathBuf {
    PathBuf::from(format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH))
}

/// Where an installed module named without a directory (`PAM_OTP_MODULE=pam_otp.so`) is
/// looked for: the multiarch directory, then the other usual places.
fn pam_module_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![multiarch_lib_dir().join("security")];
    dirs.extend(
        ["/usr/lib64/security", "/usr/lib/security", "/lib/security"]
            .iter()
            .map(PathBuf::from),
    );
    dirs
}

/// The directory libpam finds modules named without a path in (`pam_permit.so`, and
/// `pam_otp.so` once installed).
pub fn system_pam_module_dir() -> PathBuf {
    pam_module_dirs()
        .into_iter()
        .find(|dir| dir.join("pam_permit.so").is_file())
        .expect("no PAM module directory with pam_permit.so (libpam-modules)")
}

/// Whether the tests run against the installed files: `PAM_OTP_MODULE` is a bare name.
pub fn installed() -> bool {
    std::env::var("PAM_OTP_MODULE").is_ok_and(|m| !m.is_empty() && !m.contains('/'))
}

/// How a service names the module: by the bare name when testing the installed files
/// (after checking that it is installed), else by path.
pub fn module_ref() -> String {
    if installed() {
        module_path(); // asserts that the name is found in a system module directory
        std::env::var("PAM_OTP_MODULE").unwrap()
    } else {
        module_path().display().to_string()
    }
}

/// The module under test: `$PAM_OTP_MODULE` (a path, or a bare name looked up in the
/// system's PAM module directories), else `<target>/debug/libpam_otp.so` next to this
/// test executable (`<target>/debug/deps/<test>`).
pub fn module_path() -> PathBuf {
    let path = match std::env::var_os("PAM_OTP_MODULE") {
        Some(p) if !p.to_string_lossy().contains('/') => pam_module_dirs()
            .iter()
            .map(|dir| dir.join(&p))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| PathBuf::from(p)),
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let debug = exe
                .parent()
                .and_then(Path::parent)
                .expect("test executable is in <target>/<profile>/deps/");
            debug.join("libpam_otp.so")
        }
    };
    assert!(
        path.is_file(),
        "PAM module {} not found: run `cargo build` first (or set PAM_OTP_MODULE)",
        path.display()
    );
    fs::canonicalize(&path).expect("canonicalize module path")
}

fn run_checked(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a user-database command (useradd, userdel, chpasswd), retrying while another
/// process holds the passwd/shadow lock.
pub fn user_db(args: &[&str]) -> Output {
    user_db_fed(args, None)
}

/// `user_db` with `input` written to the command's standard input (e.g. for chpasswd).
pub fn user_db_with_input(args: &[&str], input: &str) -> Output {
    user_db_fed(args, Some(input))
}

fn user_db_fed(args: &[&str], input: Option<&str>) -> Output {
    let _guard = USER_DB.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = None;
    for _ in 0..50 {
        let mut child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        if let Some(text) = input {
            stdin.write_all(text.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            return out;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        // useradd: 1 = can't update password file, 10 = can't update group file.
        let locked = err.contains("lock") || matches!(out.status.code(), Some(1) | Some(10));
        last = Some(out);
        if !locked {
            break;
        }
        sleep(Duration::from_millis(200));
    }
    last.unwrap()
}

/// The fields of a user's passwd entry the tests need.
pub struct PasswdEntry {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// `getent passwd <name>`, parsed; fails if there is no such user.
pub fn passwd_entry(name: &str) -> PasswdEntry {
    let entry = run_checked(Command::new("getent").args(["passwd", name]));
    let entry = String::from_utf8_lossy(&entry.stdout).trim().to_string();
    let fields: Vec<&str> = entry.split(':').collect();
    assert!(fields.len() >= 7, "odd passwd entry {entry:?} for {name:?}");
    PasswdEntry {
        uid: fields[2].parse().unwrap(),
        gid: fields[3].parse().unwrap(),
        home: PathBuf::from(fields[5]),
        shell: PathBuf::from(fields[6]),
    }
}

/// The login shell of users that never log in interactively.
pub const NOLOGIN: &str = "/usr/sbin/nologin";

/// How `LocalUser::create` makes a user. The default: no login shell, a home made by
/// `useradd -m`.
pub struct UserOptions<'a> {
    /// The login shell.
    pub shell: &'a str,
    /// `None`: useradd makes the home and `userdel -r` removes it. `Some(path)`: the home
    /// is `path`, made here (0755, owned by the user) and removed on drop.
    pub home_at: Option<PathBuf>,
    /// `useradd --badname`: accept a name useradd normally refuses (a `/`, a leading dot).
    pub bad_name: bool,
}

impl Default for UserOptions<'_> {
    fn default() -> Self {
        UserOptions {
            shell: NOLOGIN,
            home_at: None,
            bad_name: false,
        }
    }
}

/// A throw-away local user with a home directory; deleted (with its home) on drop.
/// `Kind` only tells the helpers' users apart (each helper file names its own kind and
/// its own constructor, e.g. `ShellUser::new()`); it holds nothing.
pub struct LocalUser<Kind = Plain> {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The home was made by `create`, not by useradd: drop removes it itself.
    home_made_here: bool,
    kind: PhantomData<Kind>,
}

/// The plain test user: `pot…`, no login shell.
pub struct Plain;
pub type TestUser = LocalUser<Plain>;

impl TestUser {
    pub fn new() -> TestUser {
        TestUser::create(&unique("pot"), UserOptions::default())
    }
}

impl<Kind> LocalUser<Kind> {
    /// Adds the user `name` (give it a test prefix, e.g. `unique("ta")`) as `options` say.
    pub fn create(name: &str, options: UserOptions) -> LocalUser<Kind> {
        assert_root();
        let home_text = options.home_at.as_ref().map(|h| h.display().to_string());
        let mut args = vec!["useradd"];
        if options.bad_name {
            args.push("--badname");
        }
        match &home_text {
            Some(home) => args.extend(["-M", "-d", home]),
            None => args.push("-m"),
        }
        args.extend(["-s", options.shell, name]);
        let out = user_db(&args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entry = passwd_entry(name);
        if let Some(home) = &options.home_at {
            fs::create_dir(home).unwrap();
            chown(home, Some(entry.uid), Some(entry.gid)).unwrap();
            fs::set_permissions(home, fs::Permissions::from_mode(0o755)).unwrap();
        }
        LocalUser {
            name: name.to_string(),
            home: entry.home,
            uid: entry.uid,
            gid: entry.gid,
            home_made_here: options.home_at.is_some(),
            kind: PhantomData,
        }
    }

    /// `~/.otp.toml`.
    pub fn otp_path(&self) -> PathBuf {
        self.home.join(".otp.toml")
    }

    /// Writes `~/<rel>` owned by the user with `mode`; a missing parent directory is made
    /// (0700, owned by the user).
    pub fn write_file(&self, rel: &str, content: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let path = self.home.join(rel);
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::create_dir_all(dir).unwrap();
                chown(dir, Some(self.uid), Some(self.gid)).unwrap();
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
            }
        }
        let _ = fs::remove_file(&path);
        fs::write(&path, content).unwrap();
        chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Writes `~/.otp.toml` the way otp-setup does: owned by the user, mode 0600.
    pub fn enroll(&self, toml: &str) -> PathBuf {
        self.write_file(".otp.toml", toml, 0o600)
    }

    /// Replaces `~/.otp.toml` with a symbolic link to `~/<target>` (the link owned by the user).
    pub fn symlink_enrollment(&self, target: &str) {
        let link = self.otp_path();
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(self.home.join(target), &link).unwrap();
        lchown(&link, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl<Kind> Drop for LocalUser<Kind> {
    fn drop(&mut self) {
        let out = if self.home_made_here {
            user_db(&["userdel", "-f", &self.name])
        } else {
            user_db(&["userdel", "-r", "-f", &self.name])
        };
        if !out.status.success() {
            eprintln!(
                "warning: userdel {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if self.home_made_here {
            let _ = fs::remove_dir_all(&self.home);
        }
    }
}

/// Root of every scratch directory the tests make (mode 0700, root).
fn scratch_root() -> PathBuf {
    let root = PathBuf::from("/run/pam-otp-tests");
    let _ = fs::create_dir(&root);
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    root
}

/// A unique path under the scratch root, for sockets and the like (nothing is created).
pub fn scratch_path(prefix: &str) -> PathBuf {
    scratch_root().join(unique(prefix))
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A file of this repository (`rel` from its top, e.g. `README.md`), as text.
pub fn repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Ports the tests' servers (sshd, the demo's sshd, Redis) listen on, on 127.0.0.1 only:
/// below the kernel's ephemeral range, so no client's outgoing connection takes one
/// between the check and the listen.
const PORTS: std::ops::Range<u16> = 22200..22300;

static NEXT_PORT: AtomicUsize = AtomicUsize::new(0);

/// A port in `PORTS` that nothing listens on right now; each call starts at the next one,
/// so a port just handed out (a server not yet listening, or restarting) is not handed
/// out again by this process before the range comes round.
pub fn free_port() -> u16 {
    let span = (PORTS.end - PORTS.start) as usize;
    let start = std::process::id() as usize;
    for _ in 0..span {
        let offset = (start + NEXT_PORT.fetch_add(1, Ordering::SeqCst)) % span;
        let port = PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?} on 127.0.0.1");
}

/// Copies `binary` into a fresh directory `<tmp>/<unique(prefix)>`, both mode 0755, so that
/// any user can run it (the build tree may be under a private home). Returns the copy's
/// path; the caller removes its directory.
pub fn runnable_copy(binary: &Path, prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(prefix));
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(binary.file_name().expect("a binary has a file name"));
    // Copied by a child process, not here: while this process holds the copy open for
    // writing, a child another test forks at that moment inherits the descriptor until
    // its exec, and executing the copy then fails with ETXTBSY ("Text file busy").
    let status = Command::new("install")
        .args(["-m", "0755"])
        .arg(binary)
        .arg(&copy)
        .status()
        .expect("run install");
    assert!(
        status.success(),
        "install {} {}",
        binary.display(),
        copy.display()
    );
    copy
}

/// A private `state_dir` (mode 0700, root), and an empty policy file (root, 0600) that the
/// services name so that a system-wide `/etc/security/pam_otp.toml` (as installed by the
/// package) cannot change what the tests check. Both removed on drop.
pub struct StateDir {
    pub path: PathBuf,
    pub policy: PathBuf,
}

impl StateDir {
    pub fn new() -> StateDir {
        let path = scratch_path("state");
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        let policy = path.with_extension("policy.toml");
        fs::write(&policy, "# empty: module arguments only\n").unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
        StateDir { path, policy }
    }

    /// The directory, as a module argument or an otp-admin `--state-dir` value.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }

    /// `<state_dir>/uid-<UID>.state`: the state of the person `user` is (one per UID).
    pub fn state_file(&self, user: &str) -> PathBuf {
        state_file_in(&self.path, user)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
        let _ = fs::remove_file(&self.policy);
    }
}

/// The state file of `user` in `dir`: named after the user's UID, never the name.
pub fn state_file_in(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("uid-{}.state", passwd_entry(user).uid))
}

/// A PAM service: a file `/etc/pam.d/<name>`; removed on drop.
pub struct Service {
    pub name: String,
    path: PathBuf,
}

impl Service {
    /// A service with exactly these `auth` lines.
    pub fn with_lines(lines: &[String]) -> Service {
        let name = unique("pam-otp-test-");
        let path = Path::new("/etc/pam.d").join(&name);
        let mut text = String::from("# written by the pam-otp integration tests\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        fs::write(&path, text).unwrap();
        Service { name, path }
    }

    /// The module alone, as [`Service::otp`]; the name otp-admin's tests use.
    pub fn new(state: &StateDir, args: &str) -> Service {
        Service::otp(state, args)
    }

    /// Starts `pamtester <service> <user> authenticate` (stdin not yet written).
    pub fn spawn_login<U>(&self, user: &LocalUser<U>) -> Child {
        spawn(&[
            "pamtester".into(),
            self.name.clone(),
            user.name.clone(),
            "authenticate".into(),
        ])
    }

    /// One login with `answer` typed at the prompt.
    pub fn login<U>(&self, user: &LocalUser<U>, answer: &str) -> Outcome {
        finish(self.spawn_login(user), answer)
    }

    /// The module alone: `auth required <module> state_dir=<dir> <args>`.
    pub fn otp(state: &StateDir, args: &str) -> Service {
        Service::with_lines(&[otp_line(state, args)])
    }

    /// The module followed by pam_permit, so that PAM_IGNORE from the module means success.
    pub fn otp_then_permit(state: &StateDir, args: &str) -> Service {
        Service::with_lines(&[
            otp_line(state, args),
            "auth required pam_permit.so".to_string(),
        ])
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `auth required <module> state_dir=<dir> policy=<empty file> <args>`.
pub fn otp_line(state: &StateDir, args: &str) -> String {
    format!(
        "auth required {} state_dir={} policy={} {args}",
        module_ref(),
        state.path.display(),
        state.policy.display()
    )
}

/// What one pamtester run did.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status == Some(0)
            && self
                .stdout
                .contains("pamtester: successfully authenticated")
    }

    /// Failed with this pam_strerror text.
    pub fn failed_with(&self, message: &str) -> bool {
        self.status == Some(1) && self.stderr.contains(&format!("pamtester: {message}"))
    }

    /// Whether the module asked for a code with this prompt.
    pub fn prompted(&self, prompt: &str) -> bool {
        self.stderr.contains(prompt) || self.stdout.contains(prompt)
    }

    fn describe(&self) -> String {
        format!(
            "exit status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status != Some(124),
            "{what}: pamtester hung (killed after {TIMEOUT_SECS} s)"
        );
        assert!(
            self.succeeded(),
            "{what}: expected success\n{}",
            self.describe()
        );
    }

    #[track_caller]
    pub fn assert_failure(&self, message: &str, what: &str) {
        assert!(
            self.status != Some(124),
            "{what}: pamtester hung (killed after {TIMEOUT_SECS} s)"
        );
        assert!(
            self.failed_with(message),
            "{what}: expected failure {message:?}\n{}",
            self.describe()
        );
    }
}

/// The argument vector of one pamtester run, optionally under libfaketime
/// (a `faketime -f` offset such as `+90s`) and with a remote host item.
pub fn pamtester_argv(
    service: &Service,
    user: &str,
    faketime: Option<&str>,
    rhost: Option<&str>,
) -> Vec<String> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(spec) = faketime {
        argv.extend(["faketime".into(), "-f".into(), spec.into()]);
    }
    argv.push("pamtester".into());
    if let Some(rhost) = rhost {
        argv.extend(["-I".into(), format!("rhost={rhost}")]);
    }
    argv.extend([service.name.clone(), user.into(), "authenticate".into()]);
    argv
}

/// Starts `argv` under `timeout`, with stdin piped but not yet written.
pub fn spawn(argv: &[String]) -> Child {
    Command::new("timeout")
        .arg(TIMEOUT_SECS)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"))
}

/// Sends `answer` (plus a newline) on the child's stdin, closes it and waits.
pub fn finish(mut child: Child, answer: &str) -> Outcome {
    if let Some(mut stdin) = child.stdin.take() {
        // The module may never ask (locked, bad argument): a closed pipe is fine.
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
    }
    let out = child.wait_with_output().expect("wait for pamtester");
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // A client that died of a signal has no status: say which signal, for the failure.
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&out.status) {
        stderr.push_str(&format!("[ended by signal {signal}]"));
    }
    Outcome {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Starts pamtester (without writing its stdin yet).
pub fn spawn_pamtester(service: &Service, user: &str, faketime: Option<&str>) -> Child {
    spawn(&pamtester_argv(service, user, faketime, None))
}

/// `pamtester <service> <user> authenticate` with `answer` on stdin.
pub fn run_pamtester(
    service: &Service,
    user: &str,
    answer: &str,
    faketime: Option<&str>,
) -> Outcome {
    finish(spawn_pamtester(service, user, faketime), answer)
}

// ---- codes, from oathtool only ----

/// Runs `oathtool ARGS` and returns its output line.
pub fn oathtool(args: &[&str]) -> String {
    let out = run_checked(Command::new("oathtool").args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The current TOTP code (SHA1, 6 digits, 30 s).
pub fn totp(secret: &str) -> String {
    oathtool(&["--totp", "-b", secret])
}

/// The TOTP code at the given Unix time, with extra oathtool options (e.g. `--totp=sha256`).
pub fn totp_at(secret: &str, unix: i64, extra: &[&str]) -> String {
    let now = format!("@{unix}");
    let mut args = vec!["--now", now.as_str()];
    if !extra.iter().any(|a| a.starts_with("--totp")) {
        args.push("--totp");
    }
    args.extend_from_slice(extra);
    args.extend(["-b", secret]);
    oathtool(&args)
}

/// The HOTP code for `counter` (SHA1, 6 digits).
pub fn hotp(secret: &str, counter: u64) -> String {
    oathtool(&["--hotp", "-b", "-c", &counter.to_string(), secret])
}

/// A well-formed 6-digit code that is not the TOTP code of any step within ±3 of now.
pub fn wrong_totp(secret: &str) -> String {
    let t = now();
    let near: Vec<String> = (-3..=3).map(|k| totp_at(secret, t + 30 * k, &[])).collect();
    [
        "000000", "111111", "222222", "333333", "444444", "555555", "666666", "777777",
    ]
    .iter()
    .find(|c| !near.iter().any(|n| n == *c))
    .expect("seven codes cannot cover eight candidates")
    .to_string()
}

/// Waits until at least `margin` seconds are left in the current 30 s step, so that
/// a code computed now still belongs to the same step when the module checks it.
pub fn wait_for_step_margin(margin: i64) {
    while 30 - now().rem_euclid(30) < margin {
        sleep(Duration::from_millis(200));
    }
}

/// The current code, with enough of the step left for one login.
pub fn right_code(secret: &str) -> String {
    wait_for_step_margin(5);
    totp(secret)
}

// ---- secrets and recovery codes ----

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random 160-bit secret in base32.
pub fn new_secret() -> String {
    base32(&random_bytes(20))
}

/// A minimal TOTP enrollment file for `secret`.
pub fn totp_enrollment(secret: &str) -> String {
    format!("version = 1\ntype = \"totp\"\nsecret = \"{secret}\"\n")
}

/// The stored form `sha256:SALTHEX:DIGESTHEX` of a recovery code, where
/// DIGEST = SHA-256(salt bytes || code lowercased without spaces and dashes),
/// computed by `sha256sum`.
pub fn recovery_hash(code: &str) -> String {
    let salt = random_bytes(16);
    let normalised: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut input = salt.clone();
    input.extend_from_slice(normalised.as_bytes());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sha256sum failed");
    let digest = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(digest.len(), 64, "odd sha256sum output");
    format!("sha256:{}:{digest}", hex(&salt))
}

/// One user enrolled for TOTP with a fresh secret, and a private state directory.
pub struct Fixture {
    pub user: TestUser,
    pub state: StateDir,
    pub secret: String,
}

impl Fixture {
    /// A user enrolled with the default TOTP settings (SHA1, 6 digits, 30 s).
    pub fn totp() -> Fixture {
        let secret = new_secret();
        Fixture::with_enrollment(&secret, &totp_enrollment(&secret))
    }

    /// A user whose `~/.otp.toml` is exactly `toml` (owned by the user, 0600).
    pub fn with_enrollment(secret: &str, toml: &str) -> Fixture {
        let user = TestUser::new();
        user.enroll(toml);
        Fixture {
            user,
            state: StateDir::new(),
            secret: secret.to_string(),
        }
    }

    /// A user without any `~/.otp.toml`.
    pub fn unenrolled() -> Fixture {
        let user = TestUser::new();
        assert!(!user.otp_path().exists());
        Fixture {
            user,
            state: StateDir::new(),
            secret: String::new(),
        }
    }

    /// `auth required <module> state_dir=<own dir> policy=<empty file> <args>`.
    pub fn service(&self, args: &str) -> Service {
        Service::otp(&self.state, args)
    }

    pub fn login(&self, service: &Service, answer: &str) -> Outcome {
        run_pamtester(service, &self.user.name, answer, None)
    }

    pub fn login_at(&self, service: &Service, answer: &str, faketime: &str) -> Outcome {
        run_pamtester(service, &self.user.name, answer, Some(faketime))
    }
}

/// `argv` for running `script` (a `sh -c` script that ends by running its remaining
/// arguments) in a private mount namespace, with `args` as its `$1`, `$2`, …: whatever
/// it mounts is seen by that process tree only.
pub fn in_private_mounts(script: &str, args: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(args.iter().cloned());
    argv
}

/// The UTC date `days` from today (negative: ago), as `date -u +%F` prints it.
pub fn utc_date(days: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("{days} days"), "+%F"])
        .output()
        .expect("run date");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
