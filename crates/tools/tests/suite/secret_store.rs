//! The administrator's secret store for sudo: `otp-admin enroll` writes a root-owned
//! secret the module reads as root, so malware running as the user cannot read it.
//! Driven with the real sudo (the shipped `config/pam.d/sudo-otp`, a per-user sudoers
//! rule), `su`, `pamtester` with the module's syslog captured, `otp-admin` itself, and
//! `zbarimg` for the QR code; codes come from `oathtool`. Must run as root.

use crate::sudo::{asked_for_the_code, assert_ran, assert_refused};
use crate::support;
use crate::support::{admin, clients, enrollment_tools, hostile, secret_store};

use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use admin::{otp_admin, otp_admin_as, AdminRun};
use clients::{run_sudo, InstalledService, ShellUser, SudoRule, SudoRun};
use enrollment_tools::{
    decode_drawing, file_secret, listing, parse_printed, uri_parameter, zbarimg, Theme, EXACT,
};
use hostile::run_logged;
use secret_store::{enroll_confirmed, StoreSecret, STORE_DIR, STORE_SECRET};
use support::{
    hotp, new_secret, right_code, scratch_path, set_mode, totp_enrollment, wrong_totp, Service,
    StateDir, TestUser, AUTHINFO_UNAVAIL,
};

/// A user with a shell and a password, sudo through the shipped `sudo-otp` for them only.
/// Fields drop in order: the sudoers rule first, the service, then the user.
struct SudoUser {
    _rule: SudoRule,
    service: InstalledService,
    user: ShellUser,
    password: String,
}

impl SudoUser {
    fn new() -> SudoUser {
        let user = ShellUser::new();
        let password = user.set_password();
        let service = InstalledService::install("sudo-otp", "tx-store-", &[]);
        let rule = SudoRule::install(&user.name, &service);
        SudoUser {
            _rule: rule,
            service,
            user,
            password,
        }
    }

    fn sudo(&self, code: &str) -> SudoRun {
        run_sudo(&self.user.name, &[&self.password, code])
    }
}

#[test]
fn a_store_enrollment_by_otp_admin_logs_in_to_sudo_with_an_oathtool_code() {
    let s = SudoUser::new();
    let stored = StoreSecret::of(&s.user.name);
    let run = enroll_confirmed(&s.user.name, &["--qr", "none", "--recovery-codes", "2"]);
    run.assert_ok("otp-admin enroll, confirmed with an oathtool code");
    assert!(
        run.stdout
            .contains(&format!("Wrote {}.", stored.path.display())),
        "{run:#?}"
    );
    assert!(run
        .stderr
        .contains(&format!("Enter the code {}'s app shows now: ", s.user.name)));
    let printed = parse_printed(&run.stdout);
    assert_eq!(printed.recovery_codes.len(), 2, "{run:#?}");

    // Root's, 0600, one link: the store's rules; the printed secret is the stored one.
    let meta = fs::symlink_metadata(&stored.path).unwrap();
    assert!(meta.is_file());
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777, meta.nlink()),
        (0, 0o600, 1)
    );
    let text = fs::read_to_string(&stored.path).unwrap();
    assert_eq!(file_secret(&text), printed.secret);
    assert!(!s.user.otp_path().exists(), "nothing in the user's home");

    assert_ran(
        &s.sudo(&right_code(&printed.secret)),
        "store secret, right code",
    );
    let wrong = s.sudo(&wrong_totp(&printed.secret));
    assert_refused(&wrong, "store secret, wrong code");
    assert!(asked_for_the_code(&wrong), "{}", wrong.describe());

    // otp-admin status names the file a login reads, and whose rights it is read with.
    let status = otp_admin(&[
        "--secret",
        "/var/lib/pam-otp/secrets/%u.toml",
        "status",
        &s.user.name,
    ]);
    status.assert_ok("status");
    assert!(
        status.stdout.contains(&format!(
            "({}: the administrator's store, read as root)",
            stored.path.display()
        )),
        "{status:#?}"
    );
}

#[test]
fn the_qr_printed_by_otp_admin_enroll_decodes_to_the_stored_secret() {
    let user = TestUser::new();
    let stored = StoreSecret::of(&user.name);
    let dir = scratch_path("store-qr");
    fs::create_dir(&dir).unwrap();
    let png = dir.join("qr.png");
    let run = otp_admin(&[
        "enroll",
        &user.name,
        "--no-confirm",
        "--qr",
        "ansi",
        "--qr-png",
        png.to_str().unwrap(),
    ]);
    run.assert_ok("otp-admin enroll --no-confirm --qr-png");
    let secret = file_secret(&fs::read_to_string(&stored.path).unwrap());
    let printed = parse_printed(&run.stdout);
    // On the administrator's screen, light and dark.
    for theme in [Theme::Light, Theme::Dark] {
        let uri = decode_drawing(&printed.drawing, theme, EXACT, &dir, "screen.pgm");
        assert_eq!(
            uri_parameter(&uri, "secret").as_deref(),
            Some(secret.as_str()),
            "{theme:?}"
        );
        assert_eq!(uri, printed.uri);
    }
    // The PNG: root's, owner-only (it holds the secret), decoding to the same secret.
    let meta = fs::metadata(&png).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
    let uri = zbarimg(&png);
    assert_eq!(
        uri_parameter(&uri, "secret").as_deref(),
        Some(secret.as_str())
    );
    assert!(uri.contains(&format!("{}%40", user.name)), "{uri}");
    let _ = fs::remove_dir_all(&dir);
}

/// The kernel's host name, the default in the app's entry names.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// otp-setup's entry is `HOST: USER@HOST`; the store's must not look the same on the
/// phone, or the user types the wrong one at sudo and it counts towards a lockout.
#[test]
fn the_store_entry_is_named_apart_from_otp_setups_in_the_uri_qr_and_text() {
    let user = TestUser::new();
    let stored = StoreSecret::of(&user.name);
    let host = host_name();
    let name = &user.name;
    let dir = scratch_path("store-issuer");
    fs::create_dir(&dir).unwrap();
    let png = dir.join("qr.png");
    let run = otp_admin(&[
        "enroll",
        name,
        "--no-confirm",
        "--qr",
        "none",
        "--qr-png",
        png.to_str().unwrap(),
    ]);
    run.assert_ok("otp-admin enroll with the default issuer");
    let printed = parse_printed(&run.stdout);
    // A space in the issuer is %20 in the label and in the parameter, never `+`.
    assert!(
        printed
            .uri
            .starts_with(&format!("otpauth://totp/{host}%20sudo:{name}%40{host}?")),
        "{}",
        printed.uri
    );
    assert_eq!(
        uri_parameter(&printed.uri, "issuer"),
        Some(format!("{host}%20sudo"))
    );
    assert_eq!(zbarimg(&png), printed.uri, "the PNG holds another URI");
    assert!(
        run.stdout.contains(&format!("  Issuer:  {host} sudo\n")),
        "{run:#?}"
    );
    // The line that tells which entry in the app sudo asks for.
    assert!(
        run.stdout.contains(&format!(
            "In {name}'s app this is the entry \"{host} sudo\" ({name}@{host}): sudo asks for its codes"
        )),
        "{run:#?}"
    );
    fs::remove_file(&stored.path).unwrap();

    // An explicit --issuer still wins.
    let run = otp_admin(&[
        "enroll",
        name,
        "--no-confirm",
        "--qr",
        "none",
        "--issuer",
        "ACME Corp",
    ]);
    run.assert_ok("otp-admin enroll --issuer");
    let printed = parse_printed(&run.stdout);
    assert!(
        printed
            .uri
            .starts_with(&format!("otpauth://totp/ACME%20Corp:{name}%40{host}?")),
        "{}",
        printed.uri
    );
    assert_eq!(
        uri_parameter(&printed.uri, "issuer").as_deref(),
        Some("ACME%20Corp")
    );
    assert!(
        run.stdout.contains("this is the entry \"ACME Corp\""),
        "{run:#?}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Runs `sh -c SCRIPT` the way the user's own processes would; its output and status.
fn as_user(how: &[&str], script: &str) -> (bool, String) {
    let out = Command::new("timeout")
        .arg("30")
        .args(how)
        .arg(script)
        .current_dir("/")
        .env("LC_ALL", "C")
        .output()
        .expect("run su / sudo -u");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_user_cannot_read_a_store_secret_but_can_read_a_home_one() {
    let user = ShellUser::new();
    let secret = new_secret();
    let stored = StoreSecret::write(&user.name, &totp_enrollment(&secret));
    let home_file = user.enroll(&totp_enrollment(&secret));
    for (label, file, readable) in [("store", &stored.path, false), ("home", &home_file, true)] {
        let cat = format!("cat '{}'", file.display());
        for how in [
            vec!["su", user.name.as_str(), "-c"],
            vec!["sudo", "-u", user.name.as_str(), "sh", "-c"],
        ] {
            let (ok, output) = as_user(&how, &cat);
            assert_eq!(ok, readable, "{how:?} {cat} ({label} file): {output}");
            assert_eq!(
                output.contains(&secret),
                readable,
                "{how:?} {cat}: {output}"
            );
            if !readable {
                assert!(
                    output.contains("Permission denied"),
                    "{how:?} {cat}: {output}"
                );
            }
        }
    }
    let (listed, output) = as_user(&["su", &user.name, "-c"], &format!("ls {STORE_DIR}"));
    assert!(!listed && output.contains("Permission denied"), "{output}");
}

/// Malware running as the user, with the user's password, guesses the store's code
/// through real sudo, and after every four guesses logs in once through a service that
/// reads the user's own HOTP file (as the shipped pam-auth-update profile puts pam_otp
/// into common-auth), in the same state directory. The home successes must not lower
/// what guards the store: its source locks after 5 guesses, the right store code is then
/// refused, status says so, and the user's own file still works.
#[test]
fn a_success_with_the_users_own_file_does_not_reset_the_stores_lockout() {
    let s = SudoUser::new();
    let store_secret = new_secret();
    let _stored = StoreSecret::write(&s.user.name, &totp_enrollment(&store_secret));
    let home_secret = new_secret();
    s.user
        .enroll(&format!("type = \"hotp\"\nsecret = \"{home_secret}\"\n"));
    let home_service = Service::with_lines(&[
        format!(
            "auth required {} policy={} nullok",
            support::module_ref(),
            s.service.policy_file.display()
        ),
        "auth required pam_permit.so".to_string(),
    ]);
    let mut counter = 0;
    for round in 1..=3 {
        for guess in 1..=4 {
            let run = s.sudo(&wrong_totp(&store_secret));
            assert_refused(&run, &format!("round {round}, wrong store code {guess}"));
        }
        let code = hotp(&home_secret, counter);
        counter += 1;
        home_service
            .login(&s.user, &code)
            .assert_success(&format!("round {round}, the user's own HOTP file"));
    }
    assert_refused(
        &s.sudo(&right_code(&store_secret)),
        "the right store code while the store's lockout holds",
    );
    let status = otp_admin(&[
        "--state-dir",
        &s.service.state.path.display().to_string(),
        "--secret",
        "/var/lib/pam-otp/secrets/%u.toml",
        "status",
        &s.user.name,
    ]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("store failures:") && l.contains("LOCKED until")),
        "{status:#?}"
    );
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("locked:") && l.contains("YES")),
        "{status:#?}"
    );
    // The store's lockout guards the store only: the user's own file still works.
    home_service
        .login(&s.user, &hotp(&home_secret, counter))
        .assert_success("the user's own file after the store locked");
}

/// A service reading the store, with its own state directory.
fn store_service(state: &StateDir) -> Service {
    Service::otp(state, STORE_SECRET)
}

#[test]
fn a_users_own_file_at_the_store_path_is_read_as_the_user_not_as_root() {
    let s = SudoUser::new();
    let secret = new_secret();
    let stored = StoreSecret::write(&s.user.name, &totp_enrollment(&secret));
    chown(&stored.path, Some(s.user.uid), Some(s.user.gid)).unwrap();
    let state = StateDir::new();
    let service = store_service(&state);

    // Root could read it; the user cannot enter the 0700 store, so the right code fails.
    let run = run_logged(&service, &s.user.name, &right_code(&secret), None);
    run.outcome
        .assert_failure(AUTHINFO_UNAVAIL, "user-owned file in the store");
    run.assert_logged(
        &[
            &stored.path.display().to_string(),
            "cannot be read: Permission denied",
        ],
        "user-owned file in the store",
    );
    assert_refused(
        &s.sudo(&right_code(&secret)),
        "sudo, user-owned file in the store",
    );

    // Mode 0000 in a directory the user may enter: still the user's rules (root could read it).
    // (Not under the tests' scratch root: that is 0700, and the user must get through.)
    let open_dir = Path::new("/var/lib").join(support::unique("store-open"));
    fs::create_dir(&open_dir).unwrap();
    set_mode(&open_dir, 0o711);
    let file = open_dir.join(format!("{}.toml", s.user.name));
    fs::write(&file, totp_enrollment(&secret)).unwrap();
    chown(&file, Some(s.user.uid), Some(s.user.gid)).unwrap();
    set_mode(&file, 0o000);
    let open_service = Service::otp(&state, &format!("secret={}/%u.toml", open_dir.display()));
    let run = run_logged(&open_service, &s.user.name, &right_code(&secret), None);
    run.assert_logged(
        &["cannot be read: Permission denied"],
        "user-owned 0000 file",
    );
    // The same file readable by its owner: read, as the user.
    set_mode(&file, 0o600);
    let run = run_logged(&open_service, &s.user.name, &right_code(&secret), None);
    run.outcome
        .assert_success("user-owned 0600 file in a directory the user may enter");

    // Control: the same store file made root's is read as root, and sudo works.
    chown(&stored.path, Some(0), Some(0)).unwrap();
    assert_ran(&s.sudo(&right_code(&secret)), "the store file, now root's");
    let _ = fs::remove_dir_all(&open_dir);
}

/// A root-owned directory (0755) of its own under the tests' scratch root, removed on drop.
struct SecretsDir {
    path: PathBuf,
}

impl SecretsDir {
    fn new() -> SecretsDir {
        let path = scratch_path("store-dir");
        fs::create_dir(&path).unwrap();
        set_mode(&path, 0o755);
        SecretsDir { path }
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[test]
fn a_root_owned_secret_in_a_directory_others_can_write_is_refused_and_logged() {
    let user = TestUser::new();
    let secret = new_secret();
    let state = StateDir::new();
    let dir = SecretsDir::new();
    let file = dir.path.join(format!("{}.toml", user.name));
    fs::write(&file, totp_enrollment(&secret)).unwrap();
    set_mode(&file, 0o600);
    let service = Service::otp(&state, &format!("secret={}/%u.toml", dir.path.display()));
    let dir_text = dir.path.display().to_string();
    let file_text = file.display().to_string();

    // (owner, group, mode) of the directory, and what the log says about it.
    let cases: [(u32, u32, u32, &str); 4] = [
        (user.uid, 0, 0o755, "not root"),
        (
            0,
            user.gid,
            0o775,
            "writable by group or others (mode 0775)",
        ),
        (0, 0, 0o777, "writable by group or others (mode 0777)"),
        (0, 0, 0o1777, "writable by group or others (mode 1777)"),
    ];
    for (uid, gid, mode, reason) in cases {
        chown(&dir.path, Some(uid), Some(gid)).unwrap();
        set_mode(&dir.path, mode);
        let what = format!("directory {uid}:{gid} {mode:o}");
        let run = run_logged(&service, &user.name, &right_code(&secret), None);
        run.assert_refused(
            AUTHINFO_UNAVAIL,
            &[&file_text, "owned by root, but", &dir_text, reason],
            &what,
        );
    }
    // Control: the same file in the same directory, root's and 0755 again.
    chown(&dir.path, Some(0), Some(0)).unwrap();
    set_mode(&dir.path, 0o755);
    let run = run_logged(&service, &user.name, &right_code(&secret), None);
    run.outcome.assert_success("root's 0755 directory");
    run.assert_logged(&["accepted TOTP code"], "root's 0755 directory");
}

#[test]
fn a_root_owned_secret_reached_through_a_symlink_is_refused_and_logged() {
    let user = TestUser::new();
    let secret = new_secret();
    let state = StateDir::new();
    let dir = SecretsDir::new();
    let real = dir.path.join("real");
    fs::create_dir(&real).unwrap();
    let file = real.join(format!("{}.toml", user.name));
    fs::write(&file, totp_enrollment(&secret)).unwrap();
    set_mode(&file, 0o600);

    // A linked directory on the way (root's link, in root's directory).
    let linked_dir = dir.path.join("linked");
    symlink(&real, &linked_dir).unwrap();
    let service = Service::otp(&state, &format!("secret={}/%u.toml", linked_dir.display()));
    let run = run_logged(&service, &user.name, &right_code(&secret), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            "owned by root, but",
            &linked_dir.display().to_string(),
            "is a symbolic link",
        ],
        "linked directory",
    );

    // The file itself a link to the secret.
    let links = dir.path.join("links");
    fs::create_dir(&links).unwrap();
    symlink(&file, links.join(format!("{}.toml", user.name))).unwrap();
    let service = Service::otp(&state, &format!("secret={}/%u.toml", links.display()));
    let run = run_logged(&service, &user.name, &right_code(&secret), None);
    run.assert_refused(AUTHINFO_UNAVAIL, &["is a symbolic link"], "linked file");

    // Control: the real path.
    let service = Service::otp(&state, &format!("secret={}/%u.toml", real.display()));
    let run = run_logged(&service, &user.name, &right_code(&secret), None);
    run.outcome.assert_success("the real path");
}

#[test]
fn every_bad_otp_admin_enroll_input_exits_2_and_writes_nothing() {
    let user = TestUser::new();
    let stored = StoreSecret::of(&user.name);
    let dir = scratch_path("store-bad");
    fs::create_dir(&dir).unwrap();
    let world_writable = scratch_path("store-bad-tmp");
    fs::create_dir(&world_writable).unwrap();
    set_mode(&world_writable, 0o1777);
    let png = dir.join("qr.png");
    let in_tmp = world_writable.join("x.toml");
    let missing_sub = dir.join("sub").join("x.toml");
    let existing = dir.join("existing.toml");
    fs::write(&existing, "old").unwrap();
    let as_dir = dir.join("a-directory");
    fs::create_dir(&as_dir).unwrap();
    let name = user.name.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--digits", "9"], "--digits"),
        (vec!["--type", "sms"], "--type"),
        (vec!["--algorithm", "MD5"], "--algorithm"),
        (vec!["--period", "0"], "--period"),
        (vec!["--type", "hotp", "--period", "60"], "--period"),
        (vec!["--recovery-codes", "101"], "--recovery-codes"),
        (vec!["--qr", "sixel"], "--qr"),
        (vec!["--issuer", ""], "--issuer"),
        (vec!["--label", "tab\there"], "--label"),
        (
            vec!["--import-google-authenticator"],
            "--import-google-authenticator",
        ),
        (vec!["--bogus"], "--bogus"),
        (
            vec!["--file", in_tmp.to_str().unwrap()],
            "writable by group or others",
        ),
        (vec!["--file", "relative.toml"], "not an absolute path"),
        (
            vec!["--file", existing.to_str().unwrap()],
            "already exists; use --force",
        ),
        (vec!["--file", as_dir.to_str().unwrap()], "is a directory"),
        (
            vec!["--qr-png", "/nonexistent-dir/qr.png"],
            "/nonexistent-dir",
        ),
    ];
    for (args, reason) in &cases {
        for file_args in [vec![], vec!["--file", missing_sub.to_str().unwrap()]] {
            if args.contains(&"--file") && !file_args.is_empty() {
                continue;
            }
            let mut all = vec![
                "enroll",
                name,
                "--no-confirm",
                "--qr-png",
                png.to_str().unwrap(),
            ];
            if args.contains(&"--qr-png") {
                all.truncate(3);
            }
            all.extend(&file_args);
            all.extend(args);
            let run = otp_admin(&all);
            assert_eq!(run.status, Some(2), "{all:?}: exit 2\n{run:#?}");
            assert!(
                run.stderr.contains(reason),
                "{all:?}: expected {reason:?}\n{run:#?}"
            );
            assert!(
                !run.stdout.contains("Secret:"),
                "{all:?}: nothing shown\n{run:#?}"
            );
            assert!(
                !stored.path.exists(),
                "{all:?}: wrote {}",
                stored.path.display()
            );
            assert!(
                !png.exists() && !missing_sub.parent().unwrap().exists(),
                "{all:?}: wrote"
            );
            assert_eq!(fs::read_to_string(&existing).unwrap(), "old", "{all:?}");
            assert_eq!(listing(&world_writable), Vec::<String>::new(), "{all:?}");
        }
    }
    // An unknown user, and anyone but root.
    let unknown = otp_admin(&["enroll", "no-such-user-pam-otp", "--no-confirm"]);
    unknown.assert_refused("unknown user");
    assert!(unknown.stderr.contains("no such user"), "{unknown:#?}");
    let admin_user = admin::User::new();
    let not_root = otp_admin_as(&admin_user, &["enroll", name, "--no-confirm"]);
    not_root.assert_refused("not root");
    assert!(
        not_root.stderr.contains("must be run as root"),
        "{not_root:#?}"
    );
    // (Other tests use the store at the same time: only this user's file is checked.)
    assert!(!stored.path.exists());

    // Control: the same command without the bad input writes the file (and --file makes
    // the missing directory, 0700).
    let ok = otp_admin(&[
        "enroll",
        name,
        "--no-confirm",
        "--file",
        missing_sub.to_str().unwrap(),
    ]);
    ok.assert_ok("a good --file");
    let meta = fs::metadata(missing_sub.parent().unwrap()).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o700));
    let ok = otp_admin(&["enroll", name, "--no-confirm"]);
    ok.assert_ok("the default store file");
    assert!(stored.path.exists());
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&world_writable);
}

#[test]
fn status_says_a_home_file_is_read_as_the_user() {
    let user = TestUser::new();
    user.enroll(&totp_enrollment(&new_secret()));
    let run: AdminRun = otp_admin(&["--secret", "~/.otp.toml", "status", &user.name, "--json"]);
    run.assert_ok("status of a home enrollment");
    let json = run.json();
    assert_eq!(json["enrollment_read_as"], "user", "{json}");
    assert_eq!(
        json["enrollment_file"],
        user.otp_path().display().to_string()
    );
    let text = otp_admin(&["--secret", "~/.otp.toml", "status", &user.name]);
    assert!(
        text.stdout
            .contains(&format!(": {0}'s own file, read as {0})", user.name)),
        "{text:#?}"
    );
}
