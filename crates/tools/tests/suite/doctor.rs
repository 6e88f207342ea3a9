//! `otp-admin doctor` against fixtures: a temporary PAM directory made from the shipped
//! `config/pam.d` files (and this machine's Debian `common-*` files), a temporary sshd
//! configuration that includes the shipped drop-in (read by the real `sshd -T`), the
//! shipped policy file, real users and enrollment files. Every finding is produced by
//! its fault and absent from the shipped setup. Run as root.

use crate::support;
use crate::support::admin;
use crate::support::checker::{CheckerInstall, CheckerMode};
use crate::support::clients;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use admin::{otp_admin, otp_admin_bounded, AdminRun, StateDir, User};
use clients::{
    ensure_privsep_dir, new_host_key, policy_text, read_shipped, shipped, ShellUser, SudoRule,
};
use support::module_ref;
use support::secret_store::StoreSecret;
use support::{assert_root, new_secret, scratch_path, totp_enrollment};

/// The shipped sshd and sudo setups, installed into a private directory.
struct Fixture {
    dir: PathBuf,
    pam_dir: PathBuf,
    sshd_config: PathBuf,
    policy: PathBuf,
    state: StateDir,
    /// What the sshd configuration says before the shipped drop-in (first value wins).
    sshd_first: Vec<String>,
    include_drop_in: bool,
}

impl Fixture {
    fn shipped() -> Fixture {
        assert_root();
        let dir = scratch_path("td-doctor");
        let pam_dir = dir.join("pam.d");
        fs::create_dir_all(&pam_dir).unwrap();
        // The shipped files include Debian's common-* files: use this machine's.
        for common in fs::read_dir("/etc/pam.d").unwrap().flatten() {
            let name = common.file_name().to_string_lossy().into_owned();
            if name.starts_with("common-") {
                fs::copy(common.path(), pam_dir.join(&name)).unwrap();
            }
        }
        let state = StateDir::new();
        let policy = dir.join("pam_otp.toml");
        let state_dir = format!("\"{}\"", state.path.display());
        fs::write(&policy, policy_text(&[("state_dir", &state_dir)])).unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(0o644)).unwrap();
        new_host_key(&dir);
        ensure_privsep_dir();
        let fixture = Fixture {
            sshd_config: dir.join("sshd_config"),
            dir,
            pam_dir,
            policy,
            state,
            sshd_first: Vec::new(),
            include_drop_in: true,
        };
        fixture.install_pam("sshd", "sshd-otp", "");
        fixture.install_pam("sudo", "sudo-otp", "");
        fixture.install_pam("sudo-i", "sudo-i-otp", "");
        fixture.write_sshd_config();
        fixture
    }

    /// `config/pam.d/<shipped>` as `<pam_dir>/<service>`, naming the module under test
    /// and the fixture's policy file, plus `extra` arguments.
    fn install_pam(&self, service: &str, shipped_file: &str, extra: &str) {
        let text = read_shipped(&format!("pam.d/{shipped_file}")).replace(
            "pam_otp.so",
            &format!("{} policy={}{extra}", module_ref(), self.policy.display()),
        );
        fs::write(self.pam_dir.join(service), text).unwrap();
    }

    /// Changes a PAM file of the fixture.
    fn edit_pam(&self, service: &str, edit: impl Fn(String) -> String) {
        let path = self.pam_dir.join(service);
        let text = fs::read_to_string(&path).unwrap();
        let changed = edit(text.clone());
        assert_ne!(changed, text, "the edit of {service} changed nothing");
        fs::write(&path, changed).unwrap();
    }

    fn write_sshd_config(&self) {
        let mut text = format!(
            "HostKey {}\n",
            self.dir.join("ssh_host_ed25519_key").display()
        );
        for line in &self.sshd_first {
            text.push_str(line);
            text.push('\n');
        }
        if self.include_drop_in {
            text.push_str(&format!(
                "Include {}\n",
                shipped("sshd_config.d/pam-otp.conf").display()
            ));
        }
        fs::write(&self.sshd_config, text).unwrap();
    }

    fn sshd_first(&mut self, line: &str) {
        self.sshd_first.push(line.into());
        self.write_sshd_config();
    }

    /// `otp-admin doctor` on the fixture, as an administrator reads it.
    fn doctor_text(&self, args: &[&str]) -> AdminRun {
        let pam_dir = self.pam_dir.display().to_string();
        let sshd_config = self.sshd_config.display().to_string();
        let mut all = vec![
            "doctor",
            "--pam-dir",
            &pam_dir,
            "--sshd-config",
            &sshd_config,
        ];
        all.extend_from_slice(args);
        otp_admin(&all)
    }

    /// `otp-admin doctor --json` on the fixture; the exit status and the findings.
    fn doctor(&self, args: &[&str]) -> Doctor {
        let pam_dir = self.pam_dir.display().to_string();
        let sshd_config = self.sshd_config.display().to_string();
        let mut all = vec![
            "doctor",
            "--json",
            "--pam-dir",
            &pam_dir,
            "--sshd-config",
            &sshd_config,
        ];
        all.extend_from_slice(args);
        let run = finished(otp_admin_bounded(&all));
        let json: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {run:#?}"));
        Doctor {
            status: run.status,
            json,
        }
    }
}

/// The run, once it is known to have ended by itself: not killed by the time limit
/// (124) nor aborted by the memory limit (a signal, or no status at all).
#[track_caller]
fn finished(run: AdminRun) -> AdminRun {
    assert!(
        matches!(run.status, Some(0..=2)),
        "otp-admin doctor did not finish by itself (124: killed after the time limit; \
         above 128: killed by a signal, as an allocation past the memory limit aborts):\n\
         {run:#?}"
    );
    run
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct Doctor {
    status: Option<i32>,
    json: serde_json::Value,
}

impl Doctor {
    fn findings(&self) -> Vec<&serde_json::Value> {
        self.json["findings"].as_array().unwrap().iter().collect()
    }

    fn ids(&self) -> Vec<String> {
        self.findings()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn with_id(&self, id: &str) -> Option<&serde_json::Value> {
        self.findings().into_iter().find(|f| f["id"] == id)
    }

    #[track_caller]
    fn assert_found(&self, id: &str, severity: &str, what: &str) -> &serde_json::Value {
        let finding = self
            .with_id(id)
            .unwrap_or_else(|| panic!("{what}: no finding {id}:\n{:#}", self.json));
        assert_eq!(finding["severity"], severity, "{what}: {finding:#}");
        assert!(
            !finding["fix"].as_str().unwrap().is_empty(),
            "{what}: a finding without a fix: {finding:#}"
        );
        let expected = if self.json["errors"].as_u64().unwrap() > 0 {
            2
        } else if self.json["warnings"].as_u64().unwrap() > 0 {
            1
        } else {
            0
        };
        assert_eq!(self.status, Some(expected), "{what}: exit status");
        finding
    }
}

/// A user enrolled the way otp-setup leaves it.
/// A user enrolled where each shipped file reads: `~/.otp.toml` (sshd) and the
/// administrator's store (sudo).
struct Enrolled {
    user: User,
    _stored: StoreSecret,
}

impl std::ops::Deref for Enrolled {
    type Target = User;
    fn deref(&self) -> &User {
        &self.user
    }
}

fn enrolled_user() -> Enrolled {
    let user = User::new();
    let enrollment = totp_enrollment(&new_secret());
    user.enroll(&enrollment);
    let stored = StoreSecret::write(&user.name, &enrollment);
    Enrolled {
        user,
        _stored: stored,
    }
}

#[test]
fn the_shipped_sshd_and_sudo_setups_have_no_findings() {
    let fixture = Fixture::shipped();
    let user = enrolled_user();
    let run = fixture.doctor(&["--user", &user.name]);
    assert_eq!(run.status, Some(0), "{:#}", run.json);
    assert!(run.ids().is_empty(), "{:#}", run.json);
    assert_eq!(
        run.json["services"],
        serde_json::json!(["sshd", "sudo", "sudo-i"])
    );

    // The text form says so too.
    let text = fixture.doctor_text(&["sshd", "sudo", "--user", &user.name]);
    text.assert_ok("doctor on the shipped setup");
    assert!(
        text.stdout
            .contains("checked sshd, sudo: 0 error(s), 0 warning(s)"),
        "{text:#?}"
    );
}

#[test]
fn the_password_and_code_sshd_setup_has_no_findings() {
    let mut fixture = Fixture::shipped();
    fixture.install_pam("sshd", "sshd-password-otp", "");
    fixture.sshd_first("AuthenticationMethods keyboard-interactive");
    let user = enrolled_user();
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    assert_eq!(run.status, Some(0), "{:#}", run.json);
}

#[test]
fn the_one_prompt_sshd_setup_is_clean_and_its_missing_check_is_found() {
    let mut fixture = Fixture::shipped();
    fixture.install_pam("sshd", "sshd-password-code-one-prompt", "");
    fixture.sshd_first("AuthenticationMethods keyboard-interactive");
    let user = enrolled_user();
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    assert_eq!(run.status, Some(0), "{:#}", run.json);
    // Without the line that checks the kept code, the password alone logs in.
    fixture.edit_pam("sshd", |t| {
        t.lines()
            .filter(|l| !l.contains("use_split_code"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    run.assert_found(
        "split-code-unchecked",
        "error",
        "split_pass without use_split_code",
    );
    assert_eq!(run.status, Some(2), "{:#}", run.json);
}

/// One fault in the PAM files and the finding it must produce.
#[test]
fn every_pam_fault_is_found() {
    let user = enrolled_user();
    type Edit = fn(String) -> String;
    let cases: &[(&str, Edit, &str, &str)] = &[
        (
            "no pam_otp line",
            |t| {
                t.lines()
                    .filter(|l| !l.contains("pam_otp.so"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            },
            "otp-missing",
            "error",
        ),
        (
            "pam_otp sufficient",
            |t| {
                t.replace("auth       required   /", "auth sufficient /")
                    .replace("auth       required   pam_otp", "auth sufficient pam_otp")
            },
            "otp-not-required",
            "error",
        ),
        (
            "pam_otp optional",
            |t| {
                t.replace("auth       required   /", "auth optional /")
                    .replace("auth       required   pam_otp", "auth optional pam_otp")
            },
            "otp-not-required",
            "error",
        ),
        (
            "a sufficient module before pam_otp",
            |t| t.replace("@include common-auth", "auth sufficient pam_unix.so"),
            "otp-skipped",
            "error",
        ),
        (
            "a jump over pam_otp",
            |t| {
                t.replace(
                    "@include common-auth",
                    "auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so",
                )
            },
            "otp-skipped",
            "error",
        ),
        (
            "a required password module before pam_otp",
            |t| t.replace("@include common-auth", "auth required pam_unix.so"),
            "password-required-before-otp",
            "warning",
        ),
        (
            "an include of a missing file",
            |t| t.replace("@include common-auth", "@include common-auth-nothere"),
            "pam-syntax",
            "error",
        ),
        (
            "a module path that does not exist",
            |t| {
                let line = t
                    .lines()
                    .find(|l| l.contains("policy="))
                    .unwrap()
                    .to_string();
                let module = line.split_whitespace().nth(2).unwrap().to_string();
                t.replace(&module, "/nonexistent/pam_otp.so")
            },
            "module-missing",
            "error",
        ),
        (
            "an argument the module refuses",
            |t| t.replace(" policy=", " window=wide policy="),
            "otp-settings-refused",
            "error",
        ),
        (
            "a policy file that does not exist",
            |t| t.replace(" policy=/", " policy=/nonexistent/"),
            "policy-file-missing",
            "error",
        ),
    ];
    for (what, edit, id, severity) in cases {
        let fixture = Fixture::shipped();
        fixture.edit_pam("sudo", edit);
        let run = fixture.doctor(&["--user", &user.name]);
        let finding = run.assert_found(id, severity, what);
        assert_eq!(finding["service"], "sudo", "{what}: {finding:#}");
        // The fault is in sudo's file only: sshd stays clean.
        assert!(
            run.findings().iter().all(|f| f["service"] != "sshd"),
            "{what}: sshd has findings too:\n{:#}",
            run.json
        );
    }
}

#[test]
fn substacks_are_followed() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    fs::write(
        fixture.pam_dir.join("td-inner"),
        "auth sufficient pam_unix.so\n",
    )
    .unwrap();
    // In a substack, "sufficient" ends only the substack: pam_otp still runs.
    fixture.edit_pam("sudo", |t| {
        t.replace("@include common-auth", "auth substack td-inner")
    });
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    assert!(run.ids().is_empty(), "{:#}", run.json);
    // Included instead, it ends the whole stack first.
    fixture.edit_pam("sudo", |t| {
        t.replace("auth substack td-inner", "auth include td-inner")
    });
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    run.assert_found("otp-skipped", "error", "include of a sufficient module");
}

#[test]
fn every_sshd_fault_is_found() {
    let user = enrolled_user();
    let cases: &[(&str, &str, &str)] = &[
        ("UsePAM no", "sshd-usepam", "error"),
        (
            // (sshd refuses keyboard-interactive in AuthenticationMethods while it is off)
            "KbdInteractiveAuthentication no\nAuthenticationMethods publickey",
            "sshd-kbdinteractive",
            "error",
        ),
        ("AuthenticationMethods any", "sshd-no-authmethods", "error"),
        (
            "AuthenticationMethods publickey publickey,keyboard-interactive",
            "sshd-authmethods-bypass",
            "error",
        ),
        (
            "PasswordAuthentication yes\nAuthenticationMethods publickey,password password,keyboard-interactive",
            "sshd-authmethods-bypass",
            "error",
        ),
        (
            "PasswordAuthentication yes",
            "sshd-password-authentication",
            "warning",
        ),
        ("NoSuchKeyword yes", "sshd-config-unreadable", "error"),
    ];
    for (line, id, severity) in cases {
        let mut fixture = Fixture::shipped();
        fixture.sshd_first(line);
        let run = fixture.doctor(&["--user", &user.name]);
        let finding = run.assert_found(id, severity, line);
        assert_eq!(finding["service"], "sshd", "{line}: {finding:#}");
    }
    // No drop-in and no other line: OpenSSH's built-in defaults.
    let mut fixture = Fixture::shipped();
    fixture.include_drop_in = false;
    fixture.write_sshd_config();
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    for id in ["sshd-usepam", "sshd-no-authmethods"] {
        run.assert_found(id, "error", "sshd without the drop-in");
    }
}

#[test]
fn enrollments_against_nullok_are_found() {
    let enrolled = enrolled_user();
    let missing = User::new();
    // A key: they can log in today, so the refusal to come is an error.
    missing.write_file(".ssh/authorized_keys", SOME_KEY, 0o600);
    let broken = User::new();
    broken.write_file(".otp.toml", totp_enrollment(&new_secret()), 0o644);
    let users = [
        "--user",
        &enrolled.name,
        "--user",
        &missing.name,
        "--user",
        &broken.name,
    ];

    let fixture = Fixture::shipped();
    let run = fixture.doctor(&[&["sshd"][..], &users[..]].concat());
    let locked = run.assert_found("unenrolled-locked-out", "error", "no nullok");
    assert_eq!(locked["users"], serde_json::json!([missing.name]));
    let refused = run.assert_found("enrollment-refused", "error", "mode 0644");
    assert_eq!(refused["users"], serde_json::json!([broken.name]));
    assert!(run.with_id("nullok-unenrolled").is_none());

    fixture.install_pam("sshd", "sshd-otp", " nullok");
    let run = fixture.doctor(&[&["sshd"][..], &users[..]].concat());
    let through = run.assert_found("nullok-unenrolled", "warning", "nullok");
    assert_eq!(through["users"], serde_json::json!([missing.name]));
    // A broken file fails even with nullok.
    run.assert_found("enrollment-refused", "error", "nullok, mode 0644");
    assert!(run.with_id("unenrolled-locked-out").is_none());
}

#[test]
fn unsafe_files_and_split_state_are_found() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    fs::set_permissions(&fixture.policy, fs::Permissions::from_mode(0o666)).unwrap();
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    run.assert_found("policy-file-unsafe", "error", "policy file 0666");
    fs::set_permissions(&fixture.policy, fs::Permissions::from_mode(0o644)).unwrap();

    fs::set_permissions(&fixture.state.path, fs::Permissions::from_mode(0o777)).unwrap();
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    run.assert_found("state-dir-unsafe", "error", "state directory 0777");
    fs::set_permissions(&fixture.state.path, fs::Permissions::from_mode(0o700)).unwrap();

    // sudo keeps its state elsewhere than sshd.
    let other = StateDir::new();
    fixture.install_pam("sudo", "sudo-otp", &format!(" state_dir={}", other.arg()));
    let run = fixture.doctor(&["--user", &user.name]);
    let split = run.assert_found("state-dir-split", "warning", "two state directories");
    let message = split["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{} (sudo)", other.arg())) && message.contains("(sshd"),
        "{message}"
    );

    // A state directory under a directory anyone can write to.
    let open_parent = scratch_path("td-open");
    fs::create_dir(&open_parent).unwrap();
    fs::set_permissions(&open_parent, fs::Permissions::from_mode(0o1777)).unwrap();
    let nested = open_parent.join("state");
    fixture.install_pam(
        "sudo",
        "sudo-otp",
        &format!(" state_dir={}", nested.display()),
    );
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    run.assert_found("state-dir-missing", "info", "state directory not made yet");
    fs::create_dir(&nested).unwrap();
    fs::set_permissions(&nested, fs::Permissions::from_mode(0o700)).unwrap();
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    run.assert_found("state-dir-parents", "warning", "world-writable parent");
    let _ = fs::remove_dir_all(&open_parent);
}

#[test]
fn a_named_service_without_a_file_is_an_error() {
    let fixture = Fixture::shipped();
    let run = fixture.doctor(&["td-no-such-service"]);
    run.assert_found("service-missing", "error", "named service without a file");
}

#[test]
fn the_text_report_names_severity_place_and_fix() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    fixture.edit_pam("sudo", |t| {
        t.replace("@include common-auth", "auth required pam_unix.so")
    });
    let pam_dir = fixture.pam_dir.display().to_string();
    let run = otp_admin(&[
        "doctor",
        "sudo",
        "--pam-dir",
        &pam_dir,
        "--user",
        &user.name,
    ]);
    assert_eq!(run.status, Some(1), "warnings only: exit 1\n{run:#?}");
    assert!(
        run.stdout
            .contains("WARNING sudo: pam_unix.so is \"required\""),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("fix:   make it \"auth requisite pam_unix.so\""),
        "{run:#?}"
    );
    assert!(run.stdout.contains(&format!("{pam_dir}/sudo:")), "{run:#?}");
}

/// Asserts an error finding `id` about sudo whose message says `message_part`.
#[track_caller]
fn assert_pam_finding(run: &Doctor, id: &str, what: &str, message_part: &str) {
    let finding = run.assert_found(id, "error", what);
    assert_eq!(finding["service"], "sudo", "{what}: {finding:#}");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{what}: the message does not say {message_part:?}: {finding:#}"
    );
}

#[test]
fn an_include_of_a_fifo_is_a_finding_not_a_hang() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    let fifo = fixture.dir.join("td-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let line = format!("@include {}", fifo.display());
    fixture.edit_pam("sudo", |t| format!("{line}\n{t}"));
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    assert_pam_finding(&run, "pam-file-unreadable", "a FIFO", "a FIFO");
}

#[test]
fn an_include_of_dev_zero_is_a_finding_not_a_read_without_end() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    fixture.edit_pam("sudo", |t| format!("@include /dev/zero\n{t}"));
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    assert_pam_finding(
        &run,
        "pam-file-unreadable",
        "/dev/zero",
        "a character device",
    );
}

#[test]
fn includes_eight_wide_and_sixteen_deep_end_at_the_depth_limit() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    // td-tree-1 includes td-tree-2 eight times, and so on: libpam would read 8^15 copies
    // of the last file, which holds one rule.
    for level in 1..16 {
        let line = format!("@include td-tree-{}\n", level + 1);
        fs::write(
            fixture.pam_dir.join(format!("td-tree-{level}")),
            line.repeat(8),
        )
        .unwrap();
    }
    fs::write(
        fixture.pam_dir.join("td-tree-16"),
        "auth optional pam_permit.so\n",
    )
    .unwrap();
    fixture.edit_pam("sudo", |t| format!("@include td-tree-1\n{t}"));
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    assert_pam_finding(&run, "pam-include-depth", "16 levels of includes", "16");
    assert_pam_finding(
        &run,
        "pam-stack-too-large",
        "8^15 copies of one file",
        "files",
    );
}

#[test]
fn a_hostile_service_name_is_printed_escaped() {
    let fixture = Fixture::shipped();
    let pam_dir = fixture.pam_dir.display().to_string();
    let hostile = "a\u{1b}]0;x\u{7}\u{202e}\u{2028}b";
    let run = finished(otp_admin_bounded(&[
        "doctor",
        hostile,
        "--pam-dir",
        &pam_dir,
    ]));
    for raw in ['\u{1b}', '\u{7}', '\u{202e}', '\u{2028}'] {
        assert!(
            !run.stdout.contains(raw),
            "raw {raw:?} reached the terminal:\n{:?}",
            run.stdout
        );
    }
    let last = run.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("checked a\\u{1b}]0;x\\u{7}\\u{202e}\\u{2028}b: 1 error(s)"),
        "the service name is not shown escaped: {last:?}\n{run:#?}"
    );
}

/// The users a finding names.
fn users_of(finding: &serde_json::Value) -> Vec<String> {
    finding["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

/// A public key line; doctor only looks whether sshd would find one.
const SOME_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ8zBq8X0H7c2FQ9C9M2e4gYf8mYwq2n1x3Yk0rDoc6 td\n";

#[test]
fn an_account_that_can_log_in_today_and_would_be_refused_is_an_error() {
    let fixture = Fixture::shipped();
    let with_key = ShellUser::new();
    with_key.authorize_key(SOME_KEY);
    let with_password = ShellUser::new();
    with_password.set_password();
    let no_way_in = ShellUser::new();
    let users = [
        "--user",
        &with_key.name,
        "--user",
        &with_password.name,
        "--user",
        &no_way_in.name,
    ];

    // sshd with key and code: the key is what lets them in today.
    let run = fixture.doctor(&[&["sshd"][..], &users[..]].concat());
    let locked = run.assert_found("unenrolled-locked-out", "error", "a key and no enrollment");
    assert_eq!(users_of(locked), vec![with_key.name.clone()]);
    assert!(
        locked["message"]
            .as_str()
            .unwrap()
            .contains("can log in today"),
        "{locked:#}"
    );
    let noted = run.assert_found("unenrolled-no-way-in", "info", "no key");
    assert_eq!(
        users_of(noted),
        [with_password.name.clone(), no_way_in.name.clone()]
    );
    assert_eq!(run.status, Some(2), "{:#}", run.json);

    // sudo: a way to log in, and rights in sudoers.
    let run = fixture.doctor(&[&["sudo"][..], &users[..]].concat());
    assert!(
        run.with_id("unenrolled-locked-out").is_none(),
        "{:#}",
        run.json
    );
    let _rule = SudoRule::allow(&with_password.name);
    let _rule2 = SudoRule::allow(&no_way_in.name);
    let run = fixture.doctor(&[&["sudo"][..], &users[..]].concat());
    let locked = run.assert_found(
        "unenrolled-locked-out",
        "error",
        "sudo rights and a password",
    );
    assert_eq!(users_of(locked), vec![with_password.name.clone()]);
    let noted = run.assert_found("unenrolled-no-way-in", "info", "no rights or no password");
    assert_eq!(
        users_of(noted),
        [with_key.name.clone(), no_way_in.name.clone()]
    );

    // The text form: an ERROR line and exit 2, so README's gate ("no error") stops here.
    let text = fixture.doctor_text(&["sshd", "--user", &with_key.name]);
    assert_eq!(text.status, Some(2), "{text:#?}");
    assert!(
        text.stdout
            .contains("ERROR   sshd: 1 account(s) that can log in today"),
        "{text:#?}"
    );
}

#[test]
fn root_is_judged_for_sshd_only_where_sshd_lets_root_in() {
    let mut fixture = Fixture::shipped();
    let names_root = |run: &Doctor| {
        run.findings().iter().any(|f| {
            f["users"]
                .as_array()
                .is_some_and(|u| u.contains(&"root".into()))
        })
    };
    // OpenSSH's default, prohibit-password, turns keyboard-interactive off for root: root
    // never reaches pam_otp, so its enrollment changes nothing.
    let run = fixture.doctor(&["sshd", "--user", "root"]);
    assert!(!names_root(&run), "{:#}", run.json);
    fixture.sshd_first("PermitRootLogin yes");
    let run = fixture.doctor(&["sshd", "--user", "root"]);
    assert!(names_root(&run), "{:#}", run.json);
}

#[test]
fn sudo_with_the_code_before_the_password_is_an_error() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    fixture.edit_pam("sudo", |t| {
        let otp = t
            .lines()
            .find(|l| l.contains("pam_otp.so"))
            .unwrap()
            .to_string();
        t.replace(&format!("{otp}\n"), "").replace(
            "@include common-auth",
            &format!("{otp}\n@include common-auth"),
        )
    });
    let run = fixture.doctor(&["sudo", "--user", &user.name]);
    let finding = run.assert_found("otp-before-password", "error", "pam_otp before common-auth");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("refused as a replay"),
        "{finding:#}"
    );
}

#[test]
fn a_plain_doctor_checks_sudo_i_and_every_service_that_uses_pam_otp() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    // README has the administrator edit sudo-i too: a "sufficient" there skips the code.
    fixture.edit_pam("sudo-i", |t| {
        t.replace(
            "@include common-auth",
            "auth sufficient pam_permit.so\n@include common-auth",
        )
    });
    // The pam-auth-update profile puts pam_otp into common-auth, which login includes.
    let common = fixture.pam_dir.join("common-auth");
    let mut text = fs::read_to_string(&common).unwrap();
    text.push_str(&format!(
        "auth required {} policy={}\n",
        module_ref(),
        fixture.policy.display()
    ));
    fs::write(&common, text).unwrap();
    fs::write(fixture.pam_dir.join("td-login"), "@include common-auth\n").unwrap();
    fs::write(
        fixture.pam_dir.join("td-other"),
        "auth required pam_permit.so\n",
    )
    .unwrap();

    let run = fixture.doctor(&["--user", &user.name]);
    let services: Vec<&str> = run.json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["sshd", "sudo", "sudo-i", "td-login"],
        "{:#}",
        run.json
    );
    let skipped = run.assert_found("otp-skipped", "error", "sufficient in sudo-i");
    assert_eq!(skipped["service"], "sudo-i", "{skipped:#}");
}

#[test]
fn a_fleet_speaks_of_one_guard_and_break_glass_on_the_floor_splits_nothing() {
    let user = enrolled_user();
    let mut fixture = Fixture::shipped();
    fixture.sshd_first("AuthenticationMethods publickey,keyboard-interactive");
    let fleet = " store=redis redis_url=rediss://127.0.0.1:6390";
    fixture.install_pam("sshd", "sshd-otp", fleet);
    let other = scratch_path("td-other-state");
    fixture.install_pam(
        "sudo",
        "sudo-otp",
        &format!("{fleet} state_dir={}", other.display()),
    );
    // Two floors, one shared record: nothing is split.
    let run = fixture.doctor(&["sshd", "sudo", "--user", &user.name]);
    assert!(run.with_id("state-dir-split").is_none(), "{:#}", run.json);
    // README's break-glass line: the file store on this host's floor.
    fs::write(
        fixture.pam_dir.join("td-console"),
        format!(
            "auth required {} policy={} store=file\n",
            module_ref(),
            fixture.policy.display()
        ),
    )
    .unwrap();
    let run = fixture.doctor(&["sshd", "td-console", "--user", &user.name]);
    assert!(run.with_id("state-dir-split").is_none(), "{:#}", run.json);
    // With a state_dir of its own, it keeps a second guard: said.
    let run = fixture.doctor(&["sudo", "td-console", "--user", &user.name]);
    let split = run.assert_found("state-dir-split", "warning", "file store beside the fleet");
    assert!(
        split["message"].as_str().unwrap().contains("td-console"),
        "{split:#}"
    );
}

#[test]
fn doctor_says_each_thing_once_and_names_the_file_that_sets_it() {
    let mut fixture = Fixture::shipped();
    // The one-prompt stack has two pam_otp lines: its unenrolled users are named once.
    fixture.install_pam("sshd", "sshd-password-code-one-prompt", "");
    fixture.sshd_first("AuthenticationMethods keyboard-interactive");
    let missing = ShellUser::new();
    missing.set_password();
    let run = fixture.doctor(&["sshd", "--user", &missing.name]);
    let about_missing = run
        .findings()
        .into_iter()
        .filter(|f| f["id"].as_str().unwrap().starts_with("unenrolled"))
        .count();
    assert_eq!(about_missing, 1, "{:#}", run.json);

    // An earlier drop-in (cloud-init's) sets PasswordAuthentication: the fix names it.
    let mut fixture = Fixture::shipped();
    let drop_in = fixture.dir.join("50-cloud-init.conf");
    fs::write(&drop_in, "PasswordAuthentication yes\n").unwrap();
    fixture.sshd_first(&format!("Include {}", drop_in.display()));
    let user = enrolled_user();
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    let finding = run.assert_found(
        "sshd-password-authentication",
        "warning",
        "cloud-init drop-in",
    );
    let place = format!("{}:1", drop_in.display());
    assert_eq!(finding["location"], place.as_str(), "{finding:#}");
    assert!(
        finding["fix"].as_str().unwrap().contains(&place),
        "{finding:#}"
    );

    // sshd's own error lines end in \r\n: shown as lines, not as escapes.
    let mut fixture = Fixture::shipped();
    fixture.sshd_first("NoSuchKeyword yes");
    let run = fixture.doctor(&["sshd", "--user", &user.name]);
    let finding = run.assert_found("sshd-config-unreadable", "error", "bad sshd_config");
    let message = finding["message"].as_str().unwrap();
    assert!(message.contains("NoSuchKeyword; "), "{message}");
    assert!(
        !message.contains('\r') && !message.contains('\n'),
        "{message}"
    );
}

/// README's roll-out: a deadline on the line. Before it, the accounts that would be refused
/// get in and are told to enroll: a warning with the date (README's gate, "no error",
/// passes); after it, the error it then is.
#[test]
fn a_roll_out_deadline_ahead_is_a_warning_and_one_passed_an_error() {
    let fixture = Fixture::shipped();
    let with_key = ShellUser::new();
    with_key.authorize_key(SOME_KEY);
    let day = |offset_days: i64| {
        let at = support::now() + offset_days * 86_400;
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{at}"), "+%Y-%m-%d"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let ahead = day(8);
    fixture.install_pam("sshd", "sshd-otp", &format!(" enforce_after={ahead}"));
    let run = fixture.doctor(&["sshd", "--user", &with_key.name]);
    let until = run.assert_found("unenrolled-until-deadline", "warning", "deadline ahead");
    assert_eq!(users_of(until), vec![with_key.name.clone()]);
    assert!(
        until["message"]
            .as_str()
            .unwrap()
            .contains(&format!("until {ahead}")),
        "{until:#}"
    );
    assert!(
        run.with_id("unenrolled-locked-out").is_none(),
        "{:#}",
        run.json
    );
    assert_eq!(run.status, Some(1), "{:#}", run.json);

    fixture.install_pam("sshd", "sshd-otp", &format!(" enforce_after={}", day(-1)));
    let run = fixture.doctor(&["sshd", "--user", &with_key.name]);
    run.assert_found("unenrolled-locked-out", "error", "deadline passed");
}

/// A screen locker calls PAM as the user: without a setuid checker beside the module,
/// every unlock is refused. Doctor says so for the shipped screen-locker stack, and is
/// quiet once the checker is installed as the package installs it.
#[test]
fn a_screen_locker_without_a_usable_checker_is_an_error() {
    let user = enrolled_user();
    let fixture = Fixture::shipped();
    for (mode, expected) in [
        (CheckerMode::NotSetuid, Some("is not setuid root")),
        (CheckerMode::Missing, Some("is not installed")),
        (CheckerMode::Setuid, None),
    ] {
        let install = CheckerInstall::copied(mode);
        let text = read_shipped("pam.d/screen-locker-otp").replace(
            "pam_otp.so",
            &format!("{} policy={}", install.module, fixture.policy.display()),
        );
        fs::write(fixture.pam_dir.join("swaylock"), text).unwrap();
        let run = fixture.doctor(&["swaylock", "--user", &user.name]);
        match expected {
            Some(why) => {
                let found = run.assert_found("checker-unusable", "error", why);
                assert!(
                    found["message"].as_str().unwrap().contains(why),
                    "{found:#}"
                );
            }
            None => assert!(run.with_id("checker-unusable").is_none(), "{:#}", run.json),
        }
    }
}
