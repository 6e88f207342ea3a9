//! `make demo`'s script (packaging/demo.sh), run without a terminal: it comes up, the
//! real ssh client logs in with the password and an oathtool code, and after Ctrl-C
//! (SIGINT) nothing it made is left. A crashed demo's leftovers are cleaned up by the
//! next run. Must run as root.

use crate::support;
use crate::support::clients;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use clients::{Answers, SshClient};
use support::{assert_root, scratch_path, totp, unique, wrong_totp};

/// One run of packaging/demo.sh in the background.
struct Demo {
    child: Option<Child>,
    name: String,
    port: u16,
    info_file: PathBuf,
    log: PathBuf,
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Demo {
    fn start(name: &str, port: u16) -> Demo {
        assert_root();
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_otp-setup")).parent().unwrap();
        let info_file = scratch_path("tdm-info");
        let log = scratch_path("tdm-log");
        let child = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/demo.sh"))
            .args(["--name", name, "--port", &port.to_string(), "--bin-dir"])
            .arg(bin_dir)
            .arg("--info")
            .arg(&info_file)
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
    }
}

/// Wrong code refused, then password and the right oathtool code: the command runs.
fn log_in(demo: &Demo) {
    let info = demo.info();
    assert_eq!(info["user"], demo.name);
    assert_eq!(info["port"], demo.port.to_string());
    let output = demo.output();
    assert!(
        output.contains(&format!("ssh -p {} {}@127.0.0.1", demo.port, demo.name))
            && output.contains(&format!("oathtool --totp -b {}", info["secret"]))
            && output.contains(&info["password"]),
        "the demo must say what to type:\n{output}"
    );
    // otp-setup drew the QR code for the phone (half blocks or ANSI, as the locale allows).
    assert!(
        output.contains("Scan this QR code") && output.contains("otpauth://totp/"),
        "{output}"
    );

    let client = SshClient::new();
    let marker = unique("tdm-ran-");
    let command = format!("echo {marker}");
    let password = Some(info["password"].clone());
    let wrong = Answers {
        password: password.clone(),
        code: Some(wrong_totp(&info["secret"])),
    };
    let run = client.run_at(demo.port, &demo.name, &wrong, 1, &command);
    run.assert_refused(&marker, "password and a wrong code");
    assert_eq!(run.code_prompts(), 1, "{}", run.describe());
    let right = Answers {
        password,
        code: Some(totp(&info["secret"])),
    };
    let run = client.run_at(demo.port, &demo.name, &right, 1, &command);
    run.assert_ran(&marker, "password and the code from oathtool");
    assert!(
        run.prompts.iter().any(|p| p.contains("assword")) && run.code_prompts() == 1,
        "{}",
        run.describe()
    );
}

#[track_caller]
fn assert_nothing_left(name: &str, port: u16) {
    let passwd = Command::new("getent")
        .args(["passwd", name])
        .output()
        .unwrap();
    assert!(!passwd.status.success(), "user {name} is still there");
    for path in [
        format!("/home/{name}"),
        format!("/etc/pam.d/{name}-sshd"),
        format!("/run/pam-otp-demo/{name}"),
    ] {
        assert!(!Path::new(&path).exists(), "{path} is still there");
    }
    let sshd = Command::new("pgrep")
        .args(["-f", &format!("/run/pam-otp-demo/{name}/")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&sshd.stdout).trim().is_empty(),
        "the demo's sshd still runs: {}",
        String::from_utf8_lossy(&sshd.stdout)
    );
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "something still listens on port {port}"
    );
}

#[test]
fn the_demo_logs_in_with_password_and_code_and_leaves_nothing() {
    let name = unique("tdm");
    let port = free_port();
    let mut demo = Demo::start(&name, port);
    log_in(&demo);
    demo.stop();
    assert_nothing_left(&name, port);
}

#[test]
fn a_crashed_demo_is_cleaned_up_by_the_next_run() {
    let name = unique("tdm");
    let port = free_port();
    let mut crashed = Demo::start(&name, port);
    // SIGKILL: no cleanup; its sshd, user and files stay behind.
    crashed.signal("-KILL");
    assert!(Path::new(&format!("/etc/pam.d/{name}-sshd")).exists());

    let mut demo = Demo::start(&name, port);
    assert!(
        demo.output()
            .contains("removing what an earlier demo left behind"),
        "{}",
        demo.output()
    );
    log_in(&demo);
    demo.stop();
    assert_nothing_left(&name, port);
}
