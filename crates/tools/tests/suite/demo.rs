//! `make demo`'s script (packaging/demo.sh), run without a terminal: it comes up, the
//! real ssh client logs in with the password and an oathtool code, and after Ctrl-C
//! (SIGINT) nothing it made is left. While it runs the host does not know its user, so
//! the machine's own sshd refuses the printed password; a demo killed with SIGKILL
//! leaves nothing; a second run keeps the host key the first run's ssh remembered;
//! Ctrl-C at a terminal ends `make demo` with exit 0. Must run as root.

use crate::support;
use crate::support::clients;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use clients::{checked, ensure_privsep_dir, new_host_key, Answers, SshClient, SSHD};
use support::{assert_root, free_port, scratch_path, totp, unique, user_db, wrong_totp};

/// How long a demo killed with SIGKILL may take to be gone entirely.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// One run of packaging/demo.sh in the background.
struct Demo {
    child: Option<Child>,
    name: String,
    port: u16,
    info_file: PathBuf,
    log: PathBuf,
}

/// A scratch path removed on drop (file or directory). As --key-dir it keeps the tests
/// away from the real demo's /var/lib/pam-otp-demo; two demos given the same one share
/// the host key, as two runs of `make demo` do.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new() -> KeyDir {
        KeyDir(scratch_path("tdm-key"))
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

impl Demo {
    fn start(name: &str, port: u16, key_dir: &KeyDir) -> Demo {
        assert_root();
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_otp-setup")).parent().unwrap();
        let info_file = scratch_path("tdm-info");
        let log = scratch_path("tdm-log");
        let child = Command::new("bash")
            .arg(crate::support::repo_root().join("packaging/demo.sh"))
            .args(["--name", name, "--port", &port.to_string(), "--bin-dir"])
            .arg(bin_dir)
            .arg("--info")
            .arg(&info_file)
            .arg("--key-dir")
            .arg(&key_dir.0)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("run packaging/demo.sh");
        let mut demo = Demo {
            child: Some(child),
            name: name.into(),
            port,
            info_file,
            log,
        };
        demo.wait_until_up();
        demo
    }

    fn output(&self) -> String {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- demo stdout ---\n{}--- demo stderr ---\n{}",
            read(&self.log),
            read(&self.log.with_extension("err"))
        )
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.info_file.exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the demo exited with {status}:\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "the demo is not up after 60 s:\n{}",
                self.output()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// What the demo wrote with --info: user, password, secret, port, service, run.
    fn info(&self) -> BTreeMap<String, String> {
        fs::read_to_string(&self.info_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the demo runs");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
        child.wait().unwrap()
    }

    /// Ctrl-C, as the user would stop it: a normal end, exit 0.
    fn stop(&mut self) {
        let status = self.signal("-INT");
        assert_eq!(status.code(), Some(0), "{}", self.output());
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal("-INT");
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(self.log.with_extension("err"));
        // A demo killed with SIGKILL cannot remove its --info file itself.
        let _ = fs::remove_file(&self.info_file);
    }
}

/// The ssh command the demo printed for the administrator to copy.
fn printed_ssh_command(demo: &Demo) -> String {
    let output = demo.output();
    let line = output
        .lines()
        .find(|l| l.contains("In another terminal:"))
        .unwrap_or_else(|| panic!("the demo printed no ssh command:\n{output}"));
    line.split_once(':').unwrap().1.trim().to_string()
}

/// Wrong code refused, then password and the right oathtool code: the command runs.
/// `ssh_options` go first (e.g. the administrator's known_hosts file).
fn log_in(demo: &Demo, ssh_options: &[&str]) {
    let info = demo.info();
    assert_eq!(info["user"], demo.name);
    assert_eq!(info["port"], demo.port.to_string());
    let output = demo.output();
    assert!(
        printed_ssh_command(demo) == format!("ssh -p {} {}@127.0.0.1", demo.port, demo.name)
            && output.contains(&format!("oathtool --totp -b {}", info["secret"]))
            && output.contains(&info["password"]),
        "the demo must say what to type:\n{output}"
    );
    // otp-setup drew the QR code for the phone (half blocks or ANSI, as the locale allows).
    assert!(
        output.contains("scan this QR code") && output.contains("otpauth://totp/"),
        "{output}"
    );

    let client = SshClient::new();
    let ssh = |answers: &Answers, command: &str| {
        if ssh_options.is_empty() {
            client.run_at(demo.port, &demo.name, answers, 1, command)
        } else {
            client.run_at_with(ssh_options, demo.port, &demo.name, answers, 1, command)
        }
    };
    let marker = unique("tdm-ran-");
    let command = format!("echo {marker}");
    let password = Some(info["password"].clone());
    let wrong = Answers {
        password: password.clone(),
        code: Some(wrong_totp(&info["secret"])),
    };
    let run = ssh(&wrong, &command);
    run.assert_refused(&marker, "password and a wrong code");
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
    let right = Answers {
        password,
        code: Some(totp(&info["secret"])),
    };
    let run = ssh(&right, &command);
    run.assert_ran(&marker, "password and the code from oathtool");
    assert!(
        run.prompts.iter().any(|p| p.contains("assword")) && run.code_prompts() == 1,
        "{}",
        run.describe()
    );
}

/// What the host (outside the demo's namespaces) still has of demo `name` on `port`:
/// the user, its home, its PAM file, its run directory, its sshd, a listener.
fn leftovers(name: &str, port: u16) -> Vec<String> {
    let mut found = Vec::new();
    let passwd = Command::new("getent")
        .args(["passwd", name])
        .output()
        .unwrap();
    if passwd.status.success() {
        found.push(format!("user {name}"));
    }
    for path in [
        format!("/home/{name}"),
        format!("/etc/pam.d/{name}-sshd"),
        format!("/run/pam-otp-demo/{name}"),
    ] {
        if Path::new(&path).exists() {
            found.push(path);
        }
    }
    let sshd = Command::new("pgrep")
        .args(["-af", &format!("/run/pam-otp-demo/{name}/")])
        .output()
        .unwrap();
    let sshd = String::from_utf8_lossy(&sshd.stdout);
    if !sshd.trim().is_empty() {
        found.push(format!("the demo's sshd: {}", sshd.trim()));
    }
    if TcpListener::bind(("127.0.0.1", port)).is_err() {
        found.push(format!("a listener on port {port}"));
    }
    found
}

#[track_caller]
fn assert_nothing_left(name: &str, port: u16) {
    let found = leftovers(name, port);
    assert!(found.is_empty(), "left behind: {found:?}");
}

/// Debian's stock sshd: a copy of /etc/ssh/sshd_config (PasswordAuthentication at its
/// default, yes; the stock /etc/pam.d/sshd, as /usr/sbin/sshd names it) with only its
/// own port on 127.0.0.1, host key and pid file put first. Stopped on drop.
struct StockSshd {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl StockSshd {
    fn start() -> StockSshd {
        clients::require_program(SSHD, "openssh-server");
        ensure_privsep_dir();
        let dir = scratch_path("tdm-stock");
        fs::create_dir(&dir).unwrap();
        let host_key = new_host_key(&dir);
        let stock = fs::read_to_string("/etc/ssh/sshd_config").unwrap();
        let port = free_port();
        // sshd keeps the first value of a keyword: these win over the stock file's.
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n{stock}",
                host_key.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let log = dir.join("sshd.log");
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut sshd = StockSshd { port, dir, child };
        let ready = format!("Server listening on 127.0.0.1 port {port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sshd.log().contains(&ready) {
            if let Some(status) = sshd.child.try_wait().unwrap() {
                panic!("the stock sshd exited with {status}:\n{}", sshd.log());
            }
            assert!(Instant::now() < deadline, "sshd not up:\n{}", sshd.log());
            sleep(Duration::from_millis(50));
        }
        sshd
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for StockSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_demo_logs_in_with_password_and_code_and_leaves_nothing() {
    let name = unique("tdm");
    let port = free_port();
    let key_dir = KeyDir::new();
    let mut demo = Demo::start(&name, port, &key_dir);
    log_in(&demo, &[]);
    demo.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn while_the_demo_runs_the_host_has_no_such_user_and_its_own_sshd_refuses_the_password() {
    let name = unique("tdm");
    let port = free_port();
    let key_dir = KeyDir::new();
    let mut demo = Demo::start(&name, port, &key_dir);
    // The machine's own sshd as Debian ships it, asked for the printed password.
    let stock = StockSshd::start();
    let info = demo.info();
    let client = SshClient::new();
    let marker = unique("tdm-door-");
    let password_only = Answers {
        password: Some(info["password"].clone()),
        code: None,
    };
    let mut run = client.run_at_with(
        &[
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ],
        stock.port,
        &name,
        &password_only,
        1,
        &format!("echo {marker}"),
    );
    run.sshd_log = stock.log();
    run.assert_refused(&marker, "the printed password on the stock sshd");
    assert!(!run.sshd_log.contains("Accepted"), "{}", run.describe());
    // The password was asked for (and is the right one: log_in below shows it).
    assert!(
        run.prompts.iter().any(|p| p.contains("assword")),
        "{}",
        run.describe()
    );
    drop(stock);
    // Outside the demo: no user, no home, no PAM file (its sshd and port are the demo's).
    let found: Vec<String> = leftovers(&name, port)
        .into_iter()
        .filter(|l| !l.starts_with("the demo's sshd") && !l.starts_with("a listener"))
        .collect();
    assert!(
        found.is_empty(),
        "the host sees {found:?} while the demo runs"
    );

    log_in(&demo, &[]);
    demo.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn a_demo_killed_with_sigkill_leaves_nothing_within_seconds() {
    let name = unique("tdm");
    let port = free_port();
    let key_dir = KeyDir::new();
    let mut demo = Demo::start(&name, port, &key_dir);
    // SIGKILL of the script itself: no trap runs.
    demo.signal("-KILL");
    let deadline = Instant::now() + GONE_WITHIN;
    loop {
        let found = leftovers(&name, port);
        if found.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{GONE_WITHIN:?} after SIGKILL of the demo, still there: {found:?}\n{}",
            demo.output()
        );
        sleep(Duration::from_millis(100));
    }
    // Nothing left to clean up: the next run says so by saying nothing about it.
    let mut next = Demo::start(&name, port, &key_dir);
    assert!(!next.output().contains("left behind"), "{}", next.output());
    next.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn a_second_run_logs_in_with_the_printed_command_and_the_known_hosts_of_the_first() {
    let name = unique("tdm");
    let port = free_port();
    let key_dir = KeyDir::new();
    // The administrator's known_hosts: ssh adds the demo's key at the first login
    // (accept-new: as answering "yes" to the question) and refuses a different one later.
    let known_hosts = KeyDir(scratch_path("tdm-known-hosts"));
    let known = format!("UserKnownHostsFile={}", known_hosts.0.display());
    let options = [
        "-o",
        known.as_str(),
        "-o",
        "StrictHostKeyChecking=accept-new",
    ];

    let mut first = Demo::start(&name, port, &key_dir);
    let command = printed_ssh_command(&first);
    log_in(&first, &options);
    first.stop();
    let remembered = fs::read_to_string(&known_hosts.0).unwrap_or_default();
    assert!(
        remembered.contains(&format!("[127.0.0.1]:{port}")),
        "ssh remembered no host key: {remembered:?}"
    );

    let mut second = Demo::start(&name, port, &key_dir);
    assert_eq!(printed_ssh_command(&second), command);
    log_in(&second, &options);
    second.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn older_demos_leftovers_on_the_host_are_removed_first() {
    let name = unique("tdm");
    let port = free_port();
    // What a demo before the namespaces left when killed: its user (with a password
    // anyone who saw the demo knows) and its PAM file, on the host itself.
    checked(
        "useradd",
        user_db(&[
            "useradd",
            "-m",
            "-s",
            "/bin/bash",
            "-c",
            "pam-otp demo (throw-away)",
            &name,
        ]),
    );
    let pam_file = format!("/etc/pam.d/{name}-sshd");
    fs::write(&pam_file, "auth required pam_deny.so\n").unwrap();

    let key_dir = KeyDir::new();
    let mut demo = Demo::start(&name, port, &key_dir);
    assert!(
        demo.output()
            .contains("removing what an earlier demo left behind"),
        "{}",
        demo.output()
    );
    let passwd = Command::new("getent")
        .args(["passwd", &name])
        .output()
        .unwrap();
    assert!(
        !passwd.status.success(),
        "the old user {name} is still there"
    );
    assert!(!Path::new(&pam_file).exists(), "{pam_file} is still there");
    log_in(&demo, &[]);
    demo.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn ctrl_c_at_a_terminal_ends_make_demo_with_exit_0() {
    assert_root();
    let name = unique("tdm");
    let port = free_port();
    // A terminal (script's pseudo-terminal) whose Ctrl-C goes to its foreground process
    // group, as when an administrator types it; script -e exits as make did.
    let key_dir = KeyDir::new();
    let make = format!(
        "make -s demo DEMO_PORT={port} DEMO_NAME={name} DEMO_KEY_DIR={}",
        key_dir.0.display()
    );
    let log = scratch_path("tdm-tty");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &make, "/dev/null"])
        .current_dir(crate::support::repo_root())
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script (bsdutils)");
    let read = || fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !read().contains("pam-otp demo is up") {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("make demo ended with {status}:\n{}", read());
        }
        assert!(Instant::now() < deadline, "make demo not up:\n{}", read());
        sleep(Duration::from_millis(200));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("make demo still runs 30 s after Ctrl-C:\n{}", read());
        }
        sleep(Duration::from_millis(100));
    };
    drop(stdin);
    let output = read();
    let _ = fs::remove_file(&log);
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(!output.contains("make: ***"), "{output}");
    assert_nothing_left(&name, port);
}
