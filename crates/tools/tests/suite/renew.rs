//! `otp-setup --show` and `--new-recovery-codes` (and `otp-admin enroll USER` with the
//! same, for the store): the existing enrollment after a current
//! code from the app (made by oathtool), its QR code decoded by zbarimg, its recovery
//! codes tried through the real libpam (pamtester). Must run as root.

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support;
use crate::support::admin::otp_admin_path;
use crate::support::clients::ShellUser;
use crate::support::enrollment_tools::{
    as_user_argv, decode_drawing, parse_printed, run_as, text, ts_user, uri_parameter, user_env,
    Theme, Workspace, EXACT,
};
use crate::support::secret_store::{enroll_confirmed, StoreSecret};
use support::{totp, wait_for_step_margin, Service, StateDir, TestUser, AUTH_ERR};

const UTF8: &str = "C.UTF-8";

/// otp-setup as `user` with `lines` on its standard input.
fn otp_setup_typing(
    workspace: &Workspace,
    user: &TestUser,
    args: &[&str],
    lines: &[&str],
) -> Output {
    let binary = workspace.binary();
    let mut command = Command::new("timeout");
    command
        .arg("60")
        .args(as_user_argv(user, binary.to_str().unwrap(), args))
        .env_clear()
        .envs(user_env(user, UTF8))
        .current_dir(&user.home);
    typing(command, lines)
}

/// Runs `command` with `lines` on its standard input (it may stop reading early).
fn typing(mut command: Command, lines: &[&str]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the tool");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        let _ = stdin.write_all(format!("{line}\n").as_bytes());
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A user enrolled with `otp-setup --no-confirm`: the secret and recovery codes printed.
fn enrolled(workspace: &Workspace) -> (TestUser, String, Vec<String>) {
    let user = ts_user();
    let out = run_as(
        &user,
        UTF8,
        workspace.binary().to_str().unwrap(),
        &["--no-confirm"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = parse_printed(&text(&out.stdout));
    assert_eq!(printed.recovery_codes.len(), 5);
    (user, printed.secret, printed.recovery_codes)
}

#[test]
fn show_after_a_right_code_draws_the_same_secret_and_writes_nothing() {
    let workspace = Workspace::new();
    let (user, secret, _) = enrolled(&workspace);
    let file_before = fs::read(user.otp_path()).unwrap();
    wait_for_step_margin(5);
    let out = otp_setup_typing(&workspace, &user, &["--show"], &[&totp(&secret)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = parse_printed(&text(&out.stdout));
    assert_eq!(printed.secret, secret);
    let decoded = decode_drawing(
        &printed.drawing,
        Theme::Light,
        EXACT,
        &workspace.dir,
        "show.pgm",
    );
    assert_eq!(decoded, printed.uri);
    assert_eq!(
        uri_parameter(&decoded, "secret").as_deref(),
        Some(secret.as_str())
    );
    assert_eq!(
        fs::read(user.otp_path()).unwrap(),
        file_before,
        "--show wrote"
    );
}

#[test]
fn show_after_wrong_codes_shows_nothing() {
    let workspace = Workspace::new();
    let (user, secret, _) = enrolled(&workspace);
    let out = otp_setup_typing(
        &workspace,
        &user,
        &["--show"],
        &["000000", "111111", "222222"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains(&secret[..8]) && !stdout.contains("otpauth://") && !stdout.contains('▀'),
        "wrong codes showed the enrollment:\n{stdout}"
    );
    // Without an enrollment: refused, nothing asked.
    let stranger = ts_user();
    let out = otp_setup_typing(&workspace, &stranger, &["--show"], &["000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no enrollment to show"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn new_recovery_codes_kill_the_old_ones_and_work_once() {
    let workspace = Workspace::new();
    let (user, secret, old) = enrolled(&workspace);
    let state = StateDir::new();
    // Room for the six refusals below before a lockout.
    let service = Service::otp(&state, "max_failures=10");
    service
        .login(&user, &old[0])
        .assert_success("an old recovery code before");

    // A wrong code changes nothing.
    let file_before = fs::read(user.otp_path()).unwrap();
    let out = otp_setup_typing(
        &workspace,
        &user,
        &["--new-recovery-codes", "3"],
        &["0", "0", "0"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(fs::read(user.otp_path()).unwrap(), file_before);

    wait_for_step_margin(5);
    let used = totp(&secret);
    service
        .login(&user, &used)
        .assert_success("the app's code before the renewal");
    let out = otp_setup_typing(
        &workspace,
        &user,
        &["--new-recovery-codes", "3"],
        &[&totp(&secret)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("The old recovery codes no longer work"),
        "{stdout}"
    );
    let new: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Recovery codes:"))
        .filter_map(|l| l.strip_prefix("  "))
        .map(String::from)
        .collect();
    assert_eq!(new.len(), 3, "{stdout}");
    // The secret stays: the app's codes still work.
    let file_after = fs::read_to_string(user.otp_path()).unwrap();
    assert!(
        file_after.contains(&format!("secret = \"{secret}\"")),
        "{file_after}"
    );

    // The rewritten file is another enrollment to the module (its fingerprint covers the
    // recovery codes), but the code spent through the old one stays spent.
    service
        .login(&user, &used)
        .assert_failure(AUTH_ERR, "the app's code used before the renewal, again");
    for (i, code) in old.iter().enumerate() {
        service.login(&user, code).assert_failure(
            AUTH_ERR,
            &format!("old recovery code {i} (spent: {})", i == 0),
        );
    }
    service
        .login(&user, &new[1])
        .assert_success("a new recovery code");
    service
        .login(&user, &new[1])
        .assert_failure(AUTH_ERR, "the same new recovery code again");
    service
        .login(&user, &new[2])
        .assert_success("another new recovery code");
}

/// `otp-admin ARGS` as root with `lines` typed at its prompt.
fn otp_admin_typing(args: &[&str], lines: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command
        .arg("60")
        .arg(otp_admin_path())
        .args(args)
        .env("LANG", UTF8);
    typing(command, lines)
}

/// The recovery codes listed at the end of a run's output.
fn recovery_codes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Recovery codes:"))
        .filter_map(|l| l.strip_prefix("  "))
        .map(String::from)
        .collect()
}

#[test]
fn otp_admin_enroll_show_and_new_recovery_codes_for_the_store() {
    let user = ShellUser::new();
    let enrolled = enroll_confirmed(&user.name, &[]);
    assert_eq!(enrolled.status, Some(0), "{enrolled:#?}");
    let _stored = StoreSecret::of(&user.name);
    let printed = parse_printed(&enrolled.stdout);
    let (secret, old) = (printed.secret, printed.recovery_codes);
    let store_file = fs::read(&_stored.path).unwrap();

    // --show: a wrong code shows nothing, a right one the same secret.
    let out = otp_admin_typing(&["enroll", &user.name, "--show"], &["1", "2", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("otpauth://"),
        "{}",
        text(&out.stdout)
    );
    wait_for_step_margin(5);
    let out = otp_admin_typing(&["enroll", &user.name, "--show"], &[&totp(&secret)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = parse_printed(&text(&out.stdout));
    assert_eq!(shown.secret, secret);
    let workspace = Workspace::new();
    let decoded = decode_drawing(
        &shown.drawing,
        Theme::Dark,
        EXACT,
        &workspace.dir,
        "admin.pgm",
    );
    assert_eq!(
        uri_parameter(&decoded, "secret").as_deref(),
        Some(secret.as_str())
    );
    assert!(decoded.contains("issuer="), "{decoded}");
    assert_eq!(fs::read(&_stored.path).unwrap(), store_file, "--show wrote");

    // A code used to log in, then new recovery codes: the code stays used.
    let state = StateDir::new();
    let service = Service::otp(
        &state,
        "secret=/var/lib/pam-otp/secrets/%u.toml max_failures=10",
    );
    wait_for_step_margin(5);
    let code = totp(&secret);
    service
        .login(&user, &code)
        .assert_success("a code from the app");
    let dir = state.path.display().to_string();
    let out = otp_admin_typing(
        &[
            "--state-dir",
            &dir,
            "enroll",
            &user.name,
            "--new-recovery-codes",
            "2",
        ],
        &[&code],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let new = recovery_codes(&text(&out.stdout));
    assert_eq!(new.len(), 2, "{}", text(&out.stdout));
    service
        .login(&user, &code)
        .assert_failure(AUTH_ERR, "the code used before the new recovery codes");
    for code in &old {
        service
            .login(&user, code)
            .assert_failure(AUTH_ERR, "an old recovery code");
    }
    service
        .login(&user, &new[0])
        .assert_success("a new recovery code");
    service
        .login(&user, &new[0])
        .assert_failure(AUTH_ERR, "the new recovery code again");
}
