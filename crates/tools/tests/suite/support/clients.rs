//! Helpers for the real-client tests: throw-away users with a shell and a
//! password, the shipped `config/` files installed as PAM services, a real OpenSSH
//! `sshd` on 127.0.0.1 driven by the real `ssh` client, and sudoers rules for real
//! `sudo`.
//!
//! The PAM files under `config/pam.d` are installed verbatim except for one textual
//! substitution: every `pam_otp.so` becomes `<built module> policy=<file>`, where
//! `<file>` is the shipped `config/pam_otp.toml` with the scenario's keys (always
//! `state_dir`, for isolation) uncommented and set. The sshd drop-in is included
//! unchanged with sshd's own `Include`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::secret_store::StoreSecret;
use crate::support::{
    assert_root, free_port, hex, module_path, new_secret, passwd_entry, random_bytes, repo_file,
    scratch_path, totp_enrollment, unique, user_db_with_input, LocalUser, StateDir, UserOptions,
};

/// The prefix of the names this helper makes: users, services, files.
pub const PREFIX: &str = "tx";
/// Seconds after which a hung ssh or sudo client is killed.
const CLIENT_TIMEOUT_SECS: &str = "60";

pub const SSHD: &str = "/usr/sbin/sshd";

/// A file shipped in `config/`, e.g. `pam.d/sshd-otp`.
pub fn shipped(rel: &str) -> PathBuf {
    crate::support::repo_root().join("config").join(rel)
}

pub fn read_shipped(rel: &str) -> String {
    repo_file(&format!("config/{rel}"))
}

/// Fails with a clear message when a program the tests need is missing.
pub fn require_program(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (.ci/run does)"
    );
}

pub fn checked(what: &str, out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A local user `tx…` with a login shell, a home directory and optionally a password;
/// deleted (with its home) on drop.
pub type ShellUser = LocalUser<Shell>;
pub struct Shell;

impl ShellUser {
    pub fn new() -> ShellUser {
        ShellUser::create(
            &unique(PREFIX),
            UserOptions {
                shell: "/bin/bash",
                ..UserOptions::default()
            },
        )
    }

    /// Sets a fresh random password with chpasswd and returns it.
    pub fn set_password(&self) -> String {
        let password = format!("tx-{}", hex(&random_bytes(8)));
        let line = format!("{}:{password}\n", self.name);
        checked("chpasswd", user_db_with_input(&["chpasswd"], &line));
        password
    }

    /// Lets `public_key` log in: `~/.ssh/authorized_keys`.
    pub fn authorize_key(&self, public_key: &str) {
        self.write_file(".ssh/authorized_keys", public_key, 0o600);
    }
}

/// The shipped `config/pam_otp.toml` with `settings` uncommented and set: each key's
/// line `# key = default` becomes `key = value`. A key the file does not document
/// is an error, so the file cannot lose a key the tests rely on.
pub fn policy_text(settings: &[(&str, &str)]) -> String {
    let mut text = read_shipped("pam_otp.toml");
    for (key, value) in settings {
        let marker = format!("# {key} = ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&marker))
            .unwrap_or_else(|| panic!("config/pam_otp.toml has no line {marker:?}…"))
            .to_string();
        text = text.replacen(&line, &format!("{key} = {value}"), 1);
    }
    text
}

/// A PAM service `/etc/pam.d/<name>` made from a shipped `config/pam.d` file, with
/// its own policy file and state directory; all removed on drop.
pub struct InstalledService {
    pub name: String,
    pub pam_file: PathBuf,
    pub policy_file: PathBuf,
    /// The state directory its policy file names; removed on drop.
    pub state: StateDir,
}

impl InstalledService {
    /// Installs `config/pam.d/<shipped>` as `/etc/pam.d/<prefix><unique>`; the policy
    /// file is the shipped one with `state_dir` and `settings` set (values in TOML).
    pub fn install(shipped_pam: &str, prefix: &str, settings: &[(&str, &str)]) -> InstalledService {
        assert_root();
        let state = StateDir::new();
        let policy_file = scratch_path("txpolicy");
        let state_dir = format!("\"{}\"", state.path.display());
        let mut all = vec![("state_dir", state_dir.as_str())];
        all.extend_from_slice(settings);
        fs::write(&policy_file, policy_text(&all)).unwrap();
        fs::set_permissions(&policy_file, fs::Permissions::from_mode(0o600)).unwrap();

        let original = read_shipped(&format!("pam.d/{shipped_pam}"));
        assert!(
            original.contains("pam_otp.so"),
            "config/pam.d/{shipped_pam} does not name pam_otp.so"
        );
        let text = original.replace(
            "pam_otp.so",
            &format!(
                "{} policy={}",
                module_path().display(),
                policy_file.display()
            ),
        );
        let name = unique(prefix);
        let pam_file = Path::new("/etc/pam.d").join(&name);
        fs::write(&pam_file, text).unwrap();
        InstalledService {
            name,
            pam_file,
            policy_file,
            state,
        }
    }
}

impl Drop for InstalledService {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.pam_file);
        let _ = fs::remove_file(&self.policy_file);
    }
}

// ---- sshd ----

/// A real OpenSSH sshd on 127.0.0.1 with its own configuration, host key, pid file
/// and port, whose PAM service is `service` (chosen through its program name: a
/// symbolic link to /usr/sbin/sshd called like the service). Stopped on drop.
pub struct Sshd {
    pub port: u16,
    dir: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Sshd {
    /// Starts sshd. `settings_first` go before everything else (sshd takes the first
    /// value of a keyword, so they override the shipped drop-in that is included last).
    pub fn start(service: &InstalledService, settings_first: &[&str]) -> Sshd {
        Sshd::start_including(
            service,
            settings_first,
            &shipped("sshd_config.d/pam-otp.conf"),
        )
    }

    /// Like `start`, but the configuration includes `drop_ins` (a file or a glob such as
    /// `DIR/*.conf`, as Debian's `Include /etc/ssh/sshd_config.d/*.conf`) instead of the
    /// shipped drop-in.
    pub fn start_including(
        service: &InstalledService,
        settings_first: &[&str],
        drop_ins: &Path,
    ) -> Sshd {
        assert_root();
        require_program(SSHD, "openssh-server");
        ensure_privsep_dir();
        let dir = scratch_path("txsshd");
        fs::create_dir(&dir).unwrap();
        let host_key = new_host_key(&dir);
        // OpenSSH names its PAM service after argv[0]; it must be started by absolute path.
        let program = dir.join(&service.name);
        symlink(SSHD, &program).unwrap();

        let mut last_error = String::new();
        for _ in 0..10 {
            let port = free_port();
            let config = dir.join("sshd_config");
            let mut text = String::from("# written by the pam-otp sshd tests\n");
            for line in settings_first {
                text.push_str(line);
                text.push('\n');
            }
            text.push_str(&format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {}\n\
                 PidFile {}\n\
                 AuthorizedKeysFile .ssh/authorized_keys\n\
                 MaxAuthTries 6\n\
                 PermitRootLogin no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 LogLevel VERBOSE\n\
                 # the drop-in(s), unchanged:\n\
                 Include {}\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                drop_ins.display(),
            ));
            fs::write(&config, text).unwrap();

            let mut args: Vec<String> = vec!["-f".into(), config.display().to_string()];
            // Newer OpenSSH may name the service itself; say it explicitly if it can.
            if sshd_test(
                &program,
                &args,
                &[&format!("PAMServiceName={}", service.name)],
            )
            .is_ok()
            {
                args.extend(["-o".into(), format!("PAMServiceName={}", service.name)]);
            }
            if let Err(e) = sshd_test(&program, &args, &[]) {
                panic!("sshd -t refuses the test configuration:\n{e}");
            }
            let log = dir.join("sshd.log");
            let log_file = fs::File::create(&log).unwrap();
            let child = Command::new(&program)
                .args(["-D", "-e"])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut sshd = Sshd {
                port,
                dir: dir.clone(),
                child,
                log,
            };
            match sshd.wait_until_listening() {
                Ok(()) => return sshd,
                Err(e) => {
                    last_error = e;
                    // Another process took the port between the probe and the bind: retry.
                    if !last_error.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("sshd did not start:\n{last_error}");
    }

    /// Reloads the configuration as `systemctl reload ssh` does (SIGHUP: sshd re-executes
    /// itself and reads its files again); returns once it listens again.
    pub fn reload(&mut self) {
        let before = self.times_listening();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP sshd failed");
        if let Err(e) = self.wait_until_listening_more_than(before) {
            panic!("sshd did not come back after SIGHUP:\n{e}");
        }
    }

    fn times_listening(&self) -> usize {
        let ready = format!("Server listening on 127.0.0.1 port {}", self.port);
        self.log_text().matches(&ready).count()
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        self.wait_until_listening_more_than(0)
    }

    fn wait_until_listening_more_than(&mut self, times: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log_text();
            if self.times_listening() > times {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("sshd exited with {status}:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!("sshd not listening after 20 s:\n{log}"));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// What sshd logged so far (it runs with -e: its log goes to this file).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A fresh ed25519 host key for a test sshd, `DIR/ssh_host_ed25519_key`.
pub fn new_host_key(dir: &Path) -> PathBuf {
    let host_key = dir.join("ssh_host_ed25519_key");
    checked(
        "ssh-keygen (host key)",
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .expect("run ssh-keygen"),
    );
    host_key
}

/// Makes /run/sshd, which sshd (even `sshd -t`) needs for privilege separation and
/// which the packaged service makes only when it starts.
pub fn ensure_privsep_dir() {
    if !Path::new("/run/sshd").exists() {
        let _ = fs::create_dir("/run/sshd");
        fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `PROGRAM -t ARGS [-o OPTION]...`: Ok, or sshd's complaint.
pub fn sshd_test(program: &Path, args: &[String], options: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.arg("-t").args(args);
    for option in options {
        cmd.args(["-o", option]);
    }
    let out = cmd.output().expect("run sshd -t");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the listener is left: each connection's sshd ended with its ssh client.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What the keyboard-interactive questions are answered with.
#[derive(Clone, Default)]
pub struct Answers {
    /// The answer to "Verification code: ".
    pub code: Option<String>,
    /// The answer to "Password: ".
    pub password: Option<String>,
}

/// One run of the ssh client.
#[derive(Debug)]
pub struct SshRun {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Every question ssh asked (through SSH_ASKPASS), in order.
    pub prompts: Vec<String>,
    /// What sshd logged during the test so far.
    pub sshd_log: String,
}

impl SshRun {
    pub fn code_prompts(&self) -> usize {
        self.prompts
            .iter()
            .filter(|p| p.contains("Verification code: "))
            .count()
    }

    pub fn describe(&self) -> String {
        format!(
            "ssh exit status {:?}\n--- prompts ---\n{:#?}\n--- stdout ---\n{}--- stderr ---\n{}--- sshd log ---\n{}",
            self.status, self.prompts, self.stdout, self.stderr, self.sshd_log
        )
    }

    /// The remote command ran: exit 0 and its output came back.
    #[track_caller]
    pub fn assert_ran(&self, expected_output: &str, what: &str) {
        assert!(
            self.status != Some(124),
            "{what}: ssh hung\n{}",
            self.describe()
        );
        assert!(
            self.status == Some(0) && self.stdout.contains(expected_output),
            "{what}: expected the command to run and print {expected_output:?}\n{}",
            self.describe()
        );
    }

    /// sshd refused the login: ssh exits 255 saying so, and the command never ran.
    #[track_caller]
    pub fn assert_refused(&self, marker: &str, what: &str) {
        assert!(
            self.status != Some(124),
            "{what}: ssh hung\n{}",
            self.describe()
        );
        assert!(
            self.status == Some(255)
                && self.stderr.contains("Permission denied")
                && !self.stdout.contains(marker),
            "{what}: expected sshd to refuse the login\n{}",
            self.describe()
        );
    }
}

/// A real OpenSSH client with its own key pair. Questions are answered by an
/// SSH_ASKPASS script (SSH_ASKPASS_REQUIRE=force, OpenSSH >= 8.4) that logs each
/// prompt it is shown.
pub struct SshClient {
    dir: PathBuf,
    key: PathBuf,
    runs: AtomicUsize,
}

impl SshClient {
    pub fn new() -> SshClient {
        require_program("/usr/bin/ssh", "openssh-client");
        let dir = scratch_path("txssh");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let key = dir.join("id_ed25519");
        checked(
            "ssh-keygen (client key)",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "pam-otp-test", "-f"])
                .arg(&key)
                .output()
                .expect("run ssh-keygen"),
        );
        SshClient {
            dir,
            key,
            runs: AtomicUsize::new(0),
        }
    }

    pub fn public_key(&self) -> String {
        fs::read_to_string(self.key.with_extension("pub")).unwrap()
    }

    /// `ssh user@127.0.0.1 -- command` against `sshd`; at most `code_tries`
    /// keyboard-interactive rounds (NumberOfPasswordPrompts).
    pub fn run(
        &self,
        sshd: &Sshd,
        user: &str,
        answers: &Answers,
        code_tries: u32,
        command: &str,
    ) -> SshRun {
        self.run_with(&[], sshd, user, answers, code_tries, command)
    }

    /// `run` with more ssh arguments first (ssh keeps the first value of an option):
    /// e.g. `-b 127.0.0.2` to connect from that address (any 127/8 address is local),
    /// which sshd then gives PAM as PAM_RHOST, or `-o LogLevel=INFO` to see what a user
    /// sees by default (the server's messages; the tests otherwise run with ERROR).
    pub fn run_with(
        &self,
        extra_args: &[&str],
        sshd: &Sshd,
        user: &str,
        answers: &Answers,
        code_tries: u32,
        command: &str,
    ) -> SshRun {
        let mut run = self.run_at_with(extra_args, sshd.port, user, answers, code_tries, command);
        run.sshd_log = sshd.log_text();
        run
    }

    /// `run` against any sshd on 127.0.0.1:`port` (its log is not collected).
    pub fn run_at(
        &self,
        port: u16,
        user: &str,
        answers: &Answers,
        code_tries: u32,
        command: &str,
    ) -> SshRun {
        self.run_at_with(&[], port, user, answers, code_tries, command)
    }

    /// An interactive login (a terminal and the login shell, no command), typing
    /// `typed` into the shell: what a person sees, with what sshd prints at login (the
    /// PAM messages of a successful authentication come there, before the motd).
    pub fn login_shell(&self, sshd: &Sshd, user: &str, answers: &Answers, typed: &str) -> SshRun {
        let mut run = self.run_session(&["-tt"], sshd.port, user, answers, 1, None, typed);
        run.sshd_log = sshd.log_text();
        run
    }

    /// `run_at` with more ssh arguments first (see `run_with`).
    pub fn run_at_with(
        &self,
        extra_args: &[&str],
        port: u16,
        user: &str,
        answers: &Answers,
        code_tries: u32,
        command: &str,
    ) -> SshRun {
        self.run_session(
            extra_args,
            port,
            user,
            answers,
            code_tries,
            Some(command),
            "",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn run_session(
        &self,
        extra_args: &[&str],
        port: u16,
        user: &str,
        answers: &Answers,
        code_tries: u32,
        command: Option<&str>,
        typed: &str,
    ) -> SshRun {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let askpass = self.dir.join(format!("askpass-{n}"));
        let prompt_log = self.dir.join(format!("askpass-{n}.log"));
        let quote = |s: &Option<String>| match s {
            Some(s) => format!("printf '%s\\n' '{}'", s.replace('\'', "'\\''")),
            None => "exit 1".to_string(),
        };
        let script = format!(
            "#!/bin/sh\n\
             # ssh runs this for every question; $1 is the prompt.\n\
             printf '%s\\n' \"$1\" >> '{}'\n\
             case \"$1\" in\n\
             *'Verification code: '*) {} ;;\n\
             *'assword'*) {} ;;\n\
             *) exit 1 ;;\n\
             esac\n",
            prompt_log.display(),
            quote(&answers.code),
            quote(&answers.password),
        );
        fs::write(&askpass, script).unwrap();
        fs::set_permissions(&askpass, fs::Permissions::from_mode(0o700)).unwrap();

        let port = port.to_string();
        let tries = format!("NumberOfPasswordPrompts={code_tries}");
        let mut out = Command::new("timeout")
            .arg(CLIENT_TIMEOUT_SECS)
            .args(["ssh", "-F", "/dev/null", "-T", "-p", &port])
            .args(extra_args)
            .arg("-i")
            .arg(&self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=no",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "PreferredAuthentications=publickey,keyboard-interactive",
                "-o",
                &tries,
                "-o",
                "ConnectTimeout=10",
                // The client's default: what the server says during keyboard-interactive
                // (the module's messages) is shown at this level, as a user sees it.
                "-o",
                "LogLevel=INFO",
                "-l",
                user,
                "127.0.0.1",
            ])
            .args(command.map(|command| ["--", command]).into_iter().flatten())
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh");
        let mut stdin = out.stdin.take().expect("ssh's standard input");
        // A refused login closes the pipe before reading: that is the test's to judge.
        let _ = stdin.write_all(typed.as_bytes());
        drop(stdin);
        let out = out.wait_with_output().expect("wait for ssh");
        let prompts = fs::read_to_string(&prompt_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        SshRun {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            prompts,
            sshd_log: String::new(),
        }
    }
}

impl Drop for SshClient {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---- sudo ----

/// A file in /etc/sudoers.d that lets `user` run `/usr/bin/id` as root, with its
/// PAM service switched to `service` (`Defaults:USER pam_service=...`), no cached
/// credentials and one try. Checked with `visudo -cf` before it is installed;
/// removed on drop. /etc/pam.d/sudo is never touched.
pub struct SudoRule {
    path: PathBuf,
}

impl SudoRule {
    pub fn install(user: &str, service: &InstalledService) -> SudoRule {
        SudoRule::install_with(user, service, &[])
    }

    /// Lets `user` run `/usr/bin/id` as root through Debian's own sudo service: only the
    /// rights, for checks that ask sudo who may use it (`sudo -l -U`).
    pub fn allow(user: &str) -> SudoRule {
        SudoRule::install_text(user, "pam_service=sudo", "/usr/bin/id", &[])
    }

    /// `install` with more `Defaults:USER` settings (e.g. `passwd_tries=3`).
    pub fn install_with(user: &str, service: &InstalledService, defaults: &[&str]) -> SudoRule {
        SudoRule::install_text(
            user,
            &format!("pam_service={}", service.name),
            "/usr/bin/id",
            defaults,
        )
    }

    /// For `sudo -i /usr/bin/id -un` (see `run_sudo_login`): the login service (Debian's
    /// `pam_login_service`, normally `sudo-i`) is `login_service`; plain sudo keeps
    /// Debian's `/etc/pam.d/sudo`. sudo checks root's login shell running the command.
    pub fn install_login_shell(user: &str, login_service: &InstalledService) -> SudoRule {
        let root_shell = passwd_entry("root").shell;
        SudoRule::install_text(
            user,
            &format!("pam_login_service={}, pam_service=sudo", login_service.name),
            &format!("{} -c /usr/bin/id -un", root_shell.display()),
            &[],
        )
    }

    fn install_text(user: &str, pam_defaults: &str, command: &str, defaults: &[&str]) -> SudoRule {
        assert_root();
        require_program("/usr/bin/sudo", "sudo");
        require_program("/usr/sbin/visudo", "sudo");
        let text = format!(
            "# written by the pam-otp sudo tests; removed when the test ends\n\
             Defaults:{user} {pam_defaults}\n\
             Defaults:{user} timestamp_timeout=0\n\
             Defaults:{user} passwd_tries=1\n\
             Defaults:{user} !mail_badpass\n\
             {user} ALL=(root) {command}\n",
        ) + &defaults
            .iter()
            .map(|d| format!("Defaults:{user} {d}\n"))
            .collect::<String>();
        // Check it before sudo can see it: a broken sudoers file breaks sudo for everyone.
        let draft = scratch_path("txsudoers");
        fs::write(&draft, &text).unwrap();
        fs::set_permissions(&draft, fs::Permissions::from_mode(0o440)).unwrap();
        let check = Command::new("visudo")
            .arg("-cf")
            .arg(&draft)
            .output()
            .expect("run visudo");
        if !check.status.success() {
            let _ = fs::remove_file(&draft);
            panic!(
                "visudo -cf refuses the test rule:\n{text}\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        // sudo skips /etc/sudoers.d files whose names contain a dot.
        let path = Path::new("/etc/sudoers.d").join(unique("tx_sudo_"));
        fs::copy(&draft, &path).unwrap();
        let _ = fs::remove_file(&draft);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440)).unwrap();
        SudoRule { path }
    }
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A test user with a password and a TOTP enrollment in the administrator's store (where
/// the shipped sudo files read it), a shipped sudo PAM file installed as a service, and a
/// sudoers rule (made by `rule`) pointing the user at it. Fields drop in order: the rule
/// goes first, then the service, the secret, then the user.
pub struct SudoSetup {
    _rule: SudoRule,
    _service: InstalledService,
    _secret: StoreSecret,
    pub user: ShellUser,
    pub password: String,
    pub secret: String,
}

impl SudoSetup {
    pub fn new(
        shipped_pam: &str,
        prefix: &str,
        rule: fn(&str, &InstalledService) -> SudoRule,
    ) -> SudoSetup {
        let user = ShellUser::new();
        let password = user.set_password();
        let secret = new_secret();
        let stored = StoreSecret::write(&user.name, &totp_enrollment(&secret));
        let service = InstalledService::install(shipped_pam, prefix, &[]);
        SudoSetup {
            _rule: rule(&user.name, &service),
            _service: service,
            _secret: stored,
            user,
            password,
            secret,
        }
    }
}

/// One run of sudo.
#[derive(Debug)]
pub struct SudoRun {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl SudoRun {
    pub fn describe(&self) -> String {
        format!(
            "sudo exit status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// sudo's own password prompt (Debian's build), which replaces pam_unix's "Password: ".
pub const SUDO_PASSWORD_PROMPT: &str = "[sudo] password for ";

/// As `user`: `sudo -S -k /usr/bin/id -un`, with `lines` on standard input (sudo -S
/// reads every question's answer from there, one line each). No `-p`: a prompt given
/// with -p replaces every PAM prompt, the code's too (passprompt_override).
pub fn run_sudo(user: &str, lines: &[&str]) -> SudoRun {
    run_sudo_with(user, &["-S", "-k", "/usr/bin/id", "-un"], lines)
}

/// As `user`: `sudo -S -k -i /usr/bin/id -un` (root's login shell runs the command; sudo
/// authenticates through its login service), with `lines` on standard input.
pub fn run_sudo_login(user: &str, lines: &[&str]) -> SudoRun {
    run_sudo_with(user, &["-S", "-k", "-i", "/usr/bin/id", "-un"], lines)
}

fn run_sudo_with(user: &str, sudo_args: &[&str], lines: &[&str]) -> SudoRun {
    let mut child = Command::new("timeout")
        .arg(CLIENT_TIMEOUT_SECS)
        .args(["runuser", "-u", user, "--", "sudo"])
        .args(sudo_args)
        .current_dir("/")
        // The tests look for sudo's English prompts.
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run runuser sudo");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        // sudo may stop reading early (a refused password): a closed pipe is fine.
        let _ = stdin.write_all(format!("{line}\n").as_bytes());
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    SudoRun {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
