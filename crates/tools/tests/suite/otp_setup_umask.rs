//! `otp-setup` under the most restrictive umask still writes an enrollment the module can
//! read: mode 0600, set explicitly and checked, and only then reported as written. The
//! file is then used for a real login through pam_otp.so and pamtester, with a code from
//! oathtool. Run as root (it creates users).

use crate::support;
use crate::support::enrollment_tools;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use enrollment_tools::{file_secret, run_as, text, ts_user, Workspace};
use support::{run_pamtester, totp, wait_for_step_margin, Service, StateDir};

#[test]
fn umask_0777_still_writes_an_owner_only_enrollment_that_logs_in() {
    let user = ts_user();
    let workspace = Workspace::new();
    let binary = workspace.binary().display().to_string();
    let out = run_as(
        &user,
        "C.UTF-8",
        "/bin/sh",
        &[
            "-c",
            "umask 0777 && exec \"$0\" --no-confirm --qr none",
            &binary,
        ],
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let path = user.otp_path();
    let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| {
        panic!(
            "no {}: {e}\nstdout: {stdout}\nstderr: {stderr}",
            path.display()
        )
    });
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "mode of {} under umask 0777\nstdout: {stdout}\nstderr: {stderr}",
        path.display()
    );
    assert_eq!(meta.uid(), user.uid);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("Wrote"), "stdout: {stdout}");

    let secret = file_secret(&fs::read_to_string(&path).unwrap());
    let state = StateDir::new();
    let service = Service::otp(&state, "");
    wait_for_step_margin(5);
    run_pamtester(&service, &user.name, &totp(&secret), None)
        .assert_success("login with the enrollment written under umask 0777");
}
