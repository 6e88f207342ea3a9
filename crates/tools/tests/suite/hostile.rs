//! Hostile input against the real module through libpam and pamtester: enrollment
//! files that are links, FIFOs, devices, huge, foreign or unreadable; hostile user names,
//! `secret=` templates, state directories and policy files. Each must be refused, logged
//! (captured from the module's own syslog socket), without hanging and without the module
//! reading anything with root's rights; where a repaired file then works, the test shows it.
//! Run as root: `cargo test --test suite -- hostile::`.

use crate::support;
use crate::support::hostile;

use std::fs;
use std::os::unix::fs::{chown, lchown, symlink};
use std::path::Path;

use hostile::{run_logged, service_with_args, BadNameUser, Logged};
use support::{
    right_code, scratch_path, set_mode, totp_enrollment, Fixture, Service, StateDir, TestUser,
    AUTHINFO_UNAVAIL, SERVICE_ERR, USER_UNKNOWN,
};

fn login(f: &Fixture, service: &Service, answer: &str) -> Logged {
    run_logged(service, &f.user.name, answer, None)
}

/// Nothing was written to the state directory (the refusal came before any state use).
#[track_caller]
fn assert_state_untouched(f: &Fixture, what: &str) {
    let entries: Vec<_> = fs::read_dir(&f.state.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(entries.is_empty(), "{what}: state written: {entries:?}");
}

/// After the hostile file is repaired, the same kind of login works: the refusal was the file's doing.
#[track_caller]
fn assert_accepted_after_repair(f: &Fixture, service: &Service, what: &str) {
    let run = login(f, service, &right_code(&f.secret));
    run.outcome.assert_success(&format!("{what}, repaired"));
    run.assert_logged(&["accepted TOTP code", &f.user.name], what);
}

#[test]
fn the_harness_sees_a_normal_login_and_its_log_line() {
    let f = Fixture::totp();
    let service = f.service("");
    let run = login(&f, &service, &right_code(&f.secret));
    run.outcome.assert_success("plain login");
    run.assert_logged(
        &["pam_otp(", ":auth): accepted TOTP code", &f.user.name],
        "plain login",
    );
    let wrong = login(&f, &service, "000000x");
    wrong
        .outcome
        .assert_failure(support::AUTH_ERR, "junk answer");
    wrong.assert_logged(&["wrong code"], "junk answer");
}

// Services in the file-shape tests below carry `nullok`: a broken or insecure file must be
// refused even then, never taken for "not enrolled".

#[test]
fn enrollment_symlink_to_etc_shadow_is_refused() {
    let f = Fixture::totp();
    let service = f.service("nullok");
    f.user.symlink_enrollment("/etc/shadow");
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "is a symbolic link", &f.user.name],
        "symlink to /etc/shadow",
    );
    assert!(
        !run.log.iter().any(|l| l.contains("root:")),
        "shadow content leaked"
    );
    assert_state_untouched(&f, "symlink to /etc/shadow");
    f.user.enroll(&totp_enrollment(&f.secret));
    assert_accepted_after_repair(&f, &service, "symlink to /etc/shadow");
}

#[test]
fn enrollment_fifo_is_refused_without_hanging() {
    let f = Fixture::totp();
    let service = f.service("nullok");
    let path = f.user.otp_path();
    fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    chown(&path, Some(f.user.uid), Some(f.user.gid)).unwrap();
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "not a regular file"],
        "FIFO",
    );
    assert_state_untouched(&f, "FIFO");
    fs::remove_file(&path).unwrap();
    f.user.enroll(&totp_enrollment(&f.secret));
    assert_accepted_after_repair(&f, &service, "FIFO");
}

#[test]
fn enrollment_symlink_to_dev_zero_is_refused() {
    let f = Fixture::totp();
    let service = f.service("");
    f.user.symlink_enrollment("/dev/zero");
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "is a symbolic link"],
        "symlink to /dev/zero",
    );
    assert_state_untouched(&f, "symlink to /dev/zero");
}

#[test]
fn dev_zero_through_a_symlinked_parent_directory_is_refused() {
    // O_NOFOLLOW guards only the last component; a device behind a linked parent must
    // still be refused (by type) without a single byte read.
    let f = Fixture::totp();
    let service = f.service("secret=%h/devdir/zero");
    let link = f.user.home.join("devdir");
    symlink("/dev", &link).unwrap();
    lchown(&link, Some(f.user.uid), Some(f.user.gid)).unwrap();
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["devdir/zero", "not a regular file"],
        "/dev/zero via a linked parent",
    );
    assert_state_untouched(&f, "/dev/zero via a linked parent");
}

#[test]
fn one_gib_sparse_enrollment_is_refused_without_reading_it() {
    let f = Fixture::totp();
    let service = f.service("");
    let path = f.user.otp_path();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Starts with a valid enrollment; the size alone must refuse it.
    file.set_len(1 << 30).unwrap();
    drop(file);
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "larger than 64 KiB"],
        "1 GiB file",
    );
    assert_state_untouched(&f, "1 GiB file");
    f.user.enroll(&totp_enrollment(&f.secret));
    assert_accepted_after_repair(&f, &service, "1 GiB file");
}

#[test]
fn hard_link_to_another_users_enrollment_is_refused_on_both_sides() {
    let victim = Fixture::totp();
    let attacker = TestUser::new();
    // As root: fs.protected_hardlinks would stop the attacker making this link himself.
    fs::hard_link(victim.user.otp_path(), attacker.otp_path()).unwrap();
    let service = victim.service("");
    // The attacker's login with the victim's secret: the module, reading as the attacker,
    // cannot open the victim's 0600 file.
    let run = run_logged(&service, &attacker.name, &right_code(&victim.secret), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "Permission denied", &attacker.name],
        "attacker through a hard link",
    );
    // The victim's own file now has two links: refused too (fail closed), until it is fixed.
    let run = login(&victim, &service, &right_code(&victim.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "has 2 hard links"],
        "victim's file with a second link",
    );
    assert_state_untouched(&victim, "hard link");
    fs::remove_file(attacker.otp_path()).unwrap();
    assert_accepted_after_repair(&victim, &service, "hard link");
}

#[test]
fn enrollment_owned_by_another_user_is_refused() {
    let f = Fixture::totp();
    let other = TestUser::new();
    let service = f.service("nullok");
    // Readable by others, so the module can open it as the user: the owner check must refuse it.
    let path = f.user.otp_path();
    chown(&path, Some(other.uid), Some(other.gid)).unwrap();
    set_mode(&path, 0o644);
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            ".otp.toml",
            &format!("owned by uid {}", other.uid),
            &f.user.name,
        ],
        "owned by another user",
    );
    assert_state_untouched(&f, "owned by another user");
    f.user.enroll(&totp_enrollment(&f.secret));
    assert_accepted_after_repair(&f, &service, "owned by another user");
}

#[test]
fn group_or_world_accessible_enrollment_is_refused() {
    let f = Fixture::totp();
    let service = f.service("nullok");
    for mode in [0o640, 0o604, 0o660, 0o606, 0o620] {
        let what = format!("mode {mode:04o}");
        set_mode(&f.user.otp_path(), mode);
        let run = login(&f, &service, &right_code(&f.secret));
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &[".otp.toml", "group or others have access"],
            &what,
        );
    }
    assert_state_untouched(&f, "open modes");
    set_mode(&f.user.otp_path(), 0o600);
    assert_accepted_after_repair(&f, &service, "open modes");
}

#[test]
fn enrollment_that_is_a_directory_is_refused() {
    let f = Fixture::totp();
    let service = f.service("");
    let path = f.user.otp_path();
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    chown(&path, Some(f.user.uid), Some(f.user.gid)).unwrap();
    set_mode(&path, 0o700);
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "not a regular file"],
        "directory",
    );
    assert_state_untouched(&f, "directory");
    fs::remove_dir(&path).unwrap();
    f.user.enroll(&totp_enrollment(&f.secret));
    assert_accepted_after_repair(&f, &service, "directory");
}

#[test]
fn enrollment_in_a_home_the_user_cannot_read_is_refused_not_read_as_root() {
    // Root-squashed NFS style: root could read the (valid) file, the user cannot. The module
    // reads as the user, so the right code must be refused.
    let f = Fixture::totp();
    let service = f.service("");
    set_mode(&f.user.home, 0o000);
    let run = login(&f, &service, &right_code(&f.secret));
    set_mode(&f.user.home, 0o700);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "Permission denied", &f.user.name],
        "home chmod 000",
    );
    assert_state_untouched(&f, "home chmod 000");
    assert_accepted_after_repair(&f, &service, "home chmod 000");
}

#[test]
fn files_only_root_can_read_are_not_read_as_root() {
    let f = Fixture::totp();
    let service = f.service("");
    // A valid enrollment owned by root, mode 0600, in the user's home: root could read it,
    // but the home is the user's, so it is not the administrator's store.
    let path = f.user.otp_path();
    chown(&path, Some(0), Some(0)).unwrap();
    let run = login(&f, &service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[".otp.toml", "owned by root, but directory", "not root"],
        "root-owned 0600 file",
    );
    chown(&path, Some(f.user.uid), Some(f.user.gid)).unwrap();

    // A valid file of the user's, reached through a linked parent into a root-only directory.
    let vault = f.user.home.join("root-only");
    fs::create_dir(&vault).unwrap();
    set_mode(&vault, 0o700);
    let file = vault.join("otp.toml");
    fs::write(&file, totp_enrollment(&f.secret)).unwrap();
    chown(&file, Some(f.user.uid), Some(f.user.gid)).unwrap();
    set_mode(&file, 0o600);
    let link = f.user.home.join("vault");
    symlink(&vault, &link).unwrap();
    lchown(&link, Some(f.user.uid), Some(f.user.gid)).unwrap();
    let vault_service = f.service("secret=%h/vault/otp.toml");
    let run = login(&f, &vault_service, &right_code(&f.secret));
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["vault/otp.toml", "Permission denied"],
        "file in a root-only directory",
    );
    assert_state_untouched(&f, "root-only files");
    // Once the user may pass through the directory, the same file works.
    set_mode(&vault, 0o711);
    assert_accepted_after_repair(&f, &vault_service, "file in a root-only directory");
}

#[test]
fn hostile_user_names_are_refused_before_any_path_is_made() {
    let state = StateDir::new();
    let service = Service::otp(&state, "");
    let long = "a".repeat(300);
    let huge = "b".repeat(100_000);
    let names = [
        "../../etc/passwd",
        "a/b",
        "..",
        ".",
        ".hidden",
        "/",
        "x\nfake: accepted TOTP code",
        "tab\there",
        long.as_str(),
        huge.as_str(),
    ];
    for name in names {
        let what = format!("user name {:?}", &name[..name.len().min(40)]);
        let run = run_logged(&service, name, "123456", None);
        run.assert_refused(USER_UNKNOWN, &["unknown or unusable user name"], &what);
        for line in run.module_lines() {
            assert!(
                !line.contains('\n') && !line.contains('\t'),
                "{what}: control character in {line:?}"
            );
            assert!(
                line.len() < 1500,
                "{what}: log line of {} bytes",
                line.len()
            );
        }
    }
    let entries: Vec<_> = fs::read_dir(&state.path).unwrap().collect();
    assert!(entries.is_empty(), "state written for a hostile name");
}

#[test]
fn real_users_with_unsafe_names_are_refused() {
    // `useradd --badname` makes such accounts; the module must not build paths from them
    // even though they exist and are enrolled with a valid file.
    let pid = std::process::id();
    let state = StateDir::new();
    let service = Service::otp(&state, "");
    for name in [format!("th{pid}/x"), format!(".th{pid}")] {
        let user = BadNameUser::new(&name);
        let secret = support::new_secret();
        user.enroll(&totp_enrollment(&secret));
        let run = run_logged(&service, &user.name, &right_code(&secret), None);
        run.assert_refused(
            USER_UNKNOWN,
            &["unknown or unusable user name"],
            &format!("real user {name:?}"),
        );
    }
    let entries: Vec<_> = fs::read_dir(&state.path).unwrap().collect();
    assert!(entries.is_empty(), "state written for an unsafe name");
}

#[test]
fn secret_templates_that_would_escape_are_refused() {
    let f = Fixture::totp();
    for template in [
        "%h/../../etc/shadow",
        "~/../%u/.otp.toml",
        "/etc/pam-otp/../../etc/shadow",
        "%h/./../%u/.otp.toml",
    ] {
        let service = f.service(&format!("secret={template}"));
        let run = login(&f, &service, &right_code(&f.secret));
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            // Quotes inside a message are escaped in the log: only values are quoted.
            &["bad value for secret", "contains \\\"..\\\""],
            template,
        );
    }
    for template in ["%u.toml", "relative/otp.toml", ""] {
        let service = f.service(&format!("secret={template}"));
        let run = login(&f, &service, &right_code(&f.secret));
        run.assert_refused(
            SERVICE_ERR,
            &["bad value for secret", "refusing all logins"],
            template,
        );
    }
    assert_state_untouched(&f, "escaping templates");
}

#[test]
fn insecure_state_dirs_fail_closed() {
    let f = Fixture::totp();
    let other = TestUser::new();
    let real = scratch_path("th-real-state");
    fs::create_dir(&real).unwrap();
    set_mode(&real, 0o700);
    let link = scratch_path("th-link-state");
    symlink(&real, &link).unwrap();
    let open = scratch_path("th-open-state");
    fs::create_dir(&open).unwrap();
    let foreign = scratch_path("th-foreign-state");
    fs::create_dir(&foreign).unwrap();
    set_mode(&foreign, 0o700);
    chown(&foreign, Some(other.uid), Some(other.gid)).unwrap();
    let plain = scratch_path("th-file-state");
    fs::write(&plain, "").unwrap();

    let foreign_reason = format!("owned by uid {}", other.uid);
    let cases: [(&Path, Option<u32>, &str); 6] = [
        (&link, None, "is a symbolic link"),
        (&open, Some(0o777), "writable by group or others"),
        (&open, Some(0o1777), "writable by group or others"),
        (&open, Some(0o770), "writable by group or others"),
        (&foreign, None, &foreign_reason),
        (&plain, None, "not a directory"),
    ];
    for (dir, mode, reason) in cases {
        if let Some(mode) = mode {
            set_mode(dir, mode);
        }
        let what = format!("state_dir {} ({reason})", dir.display());
        let service = service_with_args(&format!("state_dir={}", dir.display()));
        let run = login(&f, &service, &right_code(&f.secret));
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &[&dir.display().to_string(), reason, &f.user.name],
            &what,
        );
    }
    for dir in [&real, &open, &foreign] {
        let entries: Vec<_> = fs::read_dir(dir).unwrap().collect();
        assert!(entries.is_empty(), "{}: state written", dir.display());
    }
    for path in [&link, &plain] {
        fs::remove_file(path).unwrap();
    }
    for dir in [&real, &open, &foreign] {
        fs::remove_dir(dir).unwrap();
    }
}

#[test]
fn hostile_policy_files_fail_closed() {
    let f = Fixture::totp();
    let fifo = scratch_path("th-policy-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let users = scratch_path("th-policy-users");
    fs::write(&users, "window = 100\n").unwrap();
    chown(&users, Some(f.user.uid), Some(f.user.gid)).unwrap();
    set_mode(&users, 0o600);
    let writable = scratch_path("th-policy-writable");
    fs::write(&writable, "window = 100\n").unwrap();
    set_mode(&writable, 0o666);
    let huge = scratch_path("th-policy-huge");
    fs::write(&huge, format!("# {}\n", "x".repeat(100_000))).unwrap();
    let missing = scratch_path("th-policy-missing");
    let cases = [
        (fifo.display().to_string(), "not a regular file".to_string()),
        ("/dev/zero".to_string(), "not a regular file".to_string()),
        (
            users.display().to_string(),
            format!("owned by uid {}, not root", f.user.uid),
        ),
        (
            writable.display().to_string(),
            "writable by group or others".to_string(),
        ),
        (huge.display().to_string(), "larger than 64 KiB".to_string()),
        (
            missing.display().to_string(),
            "No such file or directory".to_string(),
        ),
    ];
    for (path, reason) in &cases {
        let service = f.service(&format!("policy={path}"));
        let run = login(&f, &service, &right_code(&f.secret));
        run.assert_refused(
            SERVICE_ERR,
            &[
                &format!("policy file {path}"),
                reason,
                "refusing all logins",
            ],
            &format!("policy={path}"),
        );
    }
    assert_state_untouched(&f, "hostile policy files");
    for path in [&fifo, &users, &writable, &huge] {
        fs::remove_file(path).unwrap();
    }
}

// ---- what cannot come through pamtester's argv: NUL, checked on the functions the module uses ----

#[test]
fn secret_expansion_refuses_nul_and_escapes() {
    use pam_otp_sys::policy::expand_secret_path;
    let home = Path::new("/home/alice");
    for user in ["a\0b", "..", "a/../../b", ""] {
        assert!(
            expand_secret_path("/etc/otp/%u.toml", user, home).is_err(),
            "{user:?}"
        );
    }
    assert!(expand_secret_path("~/.otp.toml", "alice", Path::new("/home/../etc")).is_err());
    assert!(expand_secret_path("%h/%u/../x", "alice", home).is_err());
    assert_eq!(
        expand_secret_path("%h/.otp/%u.toml", "alice", home).unwrap(),
        Path::new("/home/alice/.otp/alice.toml")
    );
}

// ---- sudo's second factor against the user themself: a secret the user cannot rewrite ----

/// A root-owned directory (0755) for per-user secrets under /var/lib; on drop, clears the
/// immutable flags and removes it.
struct SecretsDir {
    path: std::path::PathBuf,
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.path)
            .status();
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Runs `sh -c SCRIPT` as `user`; whether it succeeded.
fn as_user(user: &str, script: &str) -> bool {
    std::process::Command::new("runuser")
        .args(["-u", user, "--", "sh", "-c", script])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run runuser")
        .success()
}

#[test]
fn an_immutable_secret_in_a_root_directory_cannot_be_rewritten_by_the_user() {
    // An earlier recipe for sudo: secret=/var/lib/<dir>/%u.toml, the directory root's
    // (0755), the file the user's (so the module, reading as the user, can open it), mode
    // 0400, made immutable by root with chattr +i.
    let f = Fixture::totp();
    let dir = SecretsDir {
        path: Path::new("/var/lib").join(support::unique("th-secrets")),
    };
    fs::create_dir(&dir.path).unwrap();
    set_mode(&dir.path, 0o755);
    let file = dir.path.join(format!("{}.toml", f.user.name));
    let text = totp_enrollment(&f.secret);
    fs::write(&file, &text).unwrap();
    chown(&file, Some(f.user.uid), Some(f.user.gid)).unwrap();
    set_mode(&file, 0o400);
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&file)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(chattr.success(), "chattr +i {}", file.display());
    // The user's own ~/.otp.toml is ignored by this service.
    fs::remove_file(f.user.otp_path()).unwrap();

    let service = f.service(&format!("secret={}/%u.toml", dir.path.display()));
    let run = login(&f, &service, &right_code(&f.secret));
    run.outcome.assert_success("immutable root-managed secret");

    let path = file.display().to_string();
    let dir_path = dir.path.display().to_string();
    for (attempt, script) in [
        (
            "append",
            format!("echo 'secret = \"AAAAAAAAAAAAAAAA\"' >> '{path}'"),
        ),
        ("chmod", format!("chmod 600 '{path}'")),
        ("remove", format!("rm -f '{path}'")),
        ("rename", format!("mv '{path}' '{path}.old'")),
        (
            "replace",
            format!("echo x > '{dir_path}/new' && mv '{dir_path}/new' '{path}'"),
        ),
    ] {
        assert!(
            !as_user(&f.user.name, &script),
            "the user could {attempt} the root-managed secret"
        );
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
    // Without the flag the owner could rewrite it: the test above is about the flag.
    assert!(std::process::Command::new("chattr")
        .arg("-i")
        .arg(&file)
        .status()
        .unwrap()
        .success());
    assert!(
        as_user(
            &f.user.name,
            &format!("chmod 600 '{path}' && echo '# mine' >> '{path}'")
        ),
        "control: the owner could not change a mutable file"
    );
}
