//! The state directory and the policy file are trusted only when every directory from `/`
//! down to them is root-owned, writable by no one else and no symbolic link: a user who
//! owns (or may write to) a parent could rename the state away and reset a lockout.
//! Through real libpam and pamtester, with the module's syslog captured. Run as root.

use crate::support;
use crate::support::hostile;

use std::fs;
use std::os::unix::fs::{chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use hostile::{run_logged, service_with_args};
use support::{
    right_code, scratch_path, set_mode, unique, wrong_totp, Fixture, TestUser, AUTHINFO_UNAVAIL,
    AUTH_ERR, LOCKED, SERVICE_ERR,
};

/// A directory `/run/pam-otp-tests/<prefix>…` (root, `mode`), removed with all in it on drop.
struct Parent(PathBuf);

impl Parent {
    fn new(prefix: &str, mode: u32) -> Parent {
        let path = scratch_path(prefix);
        fs::create_dir(&path).unwrap();
        set_mode(&path, mode);
        Parent(path)
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `auth required <module> state_dir=<dir> policy=<the fixture's empty policy>`.
fn state_dir_service(f: &Fixture, dir: &Path) -> support::Service {
    service_with_args(&format!(
        "state_dir={} policy={}",
        dir.display(),
        f.state.policy.display()
    ))
}

/// The attack: the owner of the state directory's parent renames the state away and so
/// lifts a lockout. The module must refuse such a `state_dir` before it is ever used.
#[test]
fn a_state_dir_under_a_users_directory_is_refused_and_the_lockout_holds() {
    let f = Fixture::totp();
    let owner = TestUser::new();
    // Directly under /run (root, 0755), so that the owner can reach it to rename things.
    let parent = Parent(PathBuf::from("/run").join(unique("pam-otp-trp-user-parent")));
    fs::create_dir(&parent.0).unwrap();
    set_mode(&parent.0, 0o755);
    chown(&parent.0, Some(owner.uid), Some(owner.gid)).unwrap();
    let state_dir = parent.0.join("state");
    let service = state_dir_service(&f, &state_dir);

    let run = run_logged(&service, &f.user.name, &right_code(&f.secret), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            &format!("directory {}", parent.0.display()),
            &format!("owned by uid {}, not root", owner.uid),
            &f.user.name,
        ],
        "state_dir whose parent a user owns",
    );
    assert!(
        !state_dir.exists(),
        "the module created {} under a user's directory",
        state_dir.display()
    );

    // What the owner could do if the module trusted it: with the directory made by root
    // (as an administrator would), lock the user, rename the state away, log in again.
    fs::create_dir(&state_dir).unwrap();
    set_mode(&state_dir, 0o700);
    let wrong = wrong_totp(&f.secret);
    let strict = service_with_args(&format!(
        "state_dir={} policy={} max_failures=1 lockout=600",
        state_dir.display(),
        f.state.policy.display()
    ));
    let run = run_logged(&strict, &f.user.name, &wrong, None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["owned by uid", "not root"],
        "wrong code with an unsafe state_dir",
    );
    let moved = Command::new("setpriv")
        .arg(format!("--reuid={}", owner.uid))
        .arg(format!("--regid={}", owner.gid))
        .arg("--clear-groups")
        .arg("mv")
        .arg(&state_dir)
        .arg(parent.0.join("old"))
        .status()
        .unwrap();
    assert!(
        moved.success(),
        "the parent's owner could not rename the state"
    );
    let run = run_logged(&strict, &f.user.name, &right_code(&f.secret), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["owned by uid", "not root"],
        "right code after the state was renamed away",
    );
}

#[test]
fn group_writable_sticky_and_symlinked_parents_are_refused() {
    let f = Fixture::totp();
    for (mode, reason) in [
        (0o775, "writable by group or others (mode 0775)"),
        (0o757, "writable by group or others (mode 0757)"),
        (0o1777, "writable by group or others (mode 1777)"),
    ] {
        let parent = Parent::new("trp-open-parent", mode);
        // set_permissions is not subject to the umask: the mode is exactly this.
        set_mode(&parent.0, mode);
        let state_dir = parent.0.join("state");
        fs::create_dir(&state_dir).unwrap();
        set_mode(&state_dir, 0o700);
        let service = state_dir_service(&f, &state_dir);
        let run = run_logged(&service, &f.user.name, &right_code(&f.secret), None);
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &[&state_dir.display().to_string(), reason, "chmod go-w"],
            &format!("state_dir under a {mode:o} parent"),
        );
        assert_eq!(
            fs::read_dir(&state_dir).unwrap().count(),
            0,
            "state written"
        );
    }

    let real = Parent::new("trp-real", 0o755);
    fs::create_dir(real.0.join("state")).unwrap();
    set_mode(&real.0.join("state"), 0o700);
    let link = Parent(scratch_path("trp-link"));
    symlink(&real.0, &link.0).unwrap();
    let service = state_dir_service(&f, &link.0.join("state"));
    let run = run_logged(&service, &f.user.name, &right_code(&f.secret), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            &format!("directory {}", link.0.display()),
            "is a symbolic link",
        ],
        "state_dir through a symlinked parent",
    );
    assert_eq!(fs::read_dir(real.0.join("state")).unwrap().count(), 0);
}

/// The same state directory, made safe, works: the refusals above are about the path.
#[test]
fn a_root_owned_path_works_and_counts_failures() {
    let f = Fixture::totp();
    let parent = Parent::new("trp-safe-parent", 0o755);
    let state_dir = parent.0.join("nested").join("state");
    fs::create_dir(parent.0.join("nested")).unwrap();
    set_mode(&parent.0.join("nested"), 0o755);
    let service = service_with_args(&format!(
        "state_dir={} policy={} max_failures=1 lockout=600",
        state_dir.display(),
        f.state.policy.display()
    ));
    let wrong = wrong_totp(&f.secret);
    run_logged(&service, &f.user.name, &wrong, None)
        .outcome
        .assert_failure(AUTH_ERR, "wrong code");
    run_logged(&service, &f.user.name, &right_code(&f.secret), None)
        .outcome
        .assert_failure(LOCKED, "right code while locked");
}

#[test]
fn a_policy_file_under_a_users_or_a_writable_directory_is_refused() {
    let f = Fixture::totp();
    let owner = TestUser::new();
    let owned = Parent::new("trp-policy-user", 0o755);
    chown(&owned.0, Some(owner.uid), Some(owner.gid)).unwrap();
    let writable = Parent::new("trp-policy-open", 0o1777);
    set_mode(&writable.0, 0o1777);
    let real = Parent::new("trp-policy-real", 0o755);
    let link = Parent(scratch_path("trp-policy-link"));
    symlink(&real.0, &link.0).unwrap();
    let cases = [
        (&owned.0, format!("owned by uid {}, not root", owner.uid)),
        (
            &writable.0,
            "writable by group or others (mode 1777)".to_string(),
        ),
        (&real.0, String::new()),
    ];
    for (dir, _) in &cases {
        // A root-owned 0644 file: only where it lives is wrong.
        let policy = dir.join("pam_otp.toml");
        fs::write(&policy, "max_failures = 50\n").unwrap();
        set_mode(&policy, 0o644);
    }
    let mut refused = vec![
        (owned.0.join("pam_otp.toml"), cases[0].1.clone()),
        (writable.0.join("pam_otp.toml"), cases[1].1.clone()),
        (
            link.0.join("pam_otp.toml"),
            "is a symbolic link".to_string(),
        ),
    ];
    // The file itself a symlink to a good file.
    let file_link = real.0.join("link.toml");
    symlink(real.0.join("pam_otp.toml"), &file_link).unwrap();
    refused.push((file_link, "is a symbolic link".to_string()));
    for (policy, reason) in &refused {
        let service = service_with_args(&format!(
            "state_dir={} policy={}",
            f.state.path.display(),
            policy.display()
        ));
        let run = run_logged(&service, &f.user.name, &right_code(&f.secret), None);
        run.assert_refused(
            SERVICE_ERR,
            &[
                &format!("policy file {}", policy.display()),
                reason,
                "refusing all logins",
            ],
            &format!("policy={}", policy.display()),
        );
    }
    // The same file read where every directory is root's: accepted.
    let service = service_with_args(&format!(
        "state_dir={} policy={}",
        f.state.path.display(),
        real.0.join("pam_otp.toml").display()
    ));
    run_logged(&service, &f.user.name, &right_code(&f.secret), None)
        .outcome
        .assert_success("policy file in root-owned directories");
}
