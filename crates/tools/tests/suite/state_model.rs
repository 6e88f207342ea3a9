//! What the state belongs to, through the real stack: failures and lockouts to the person
//! (one UID, across enrollments and services), per source (PAM_RHOST) under a user-wide
//! ceiling; the replay guard, HOTP counter and spent recovery codes to each enrollment.
//! Real sshd with password + code and `ssh -b` for sources, pamtester `-I rhost=` for
//! IPv6, real sudo for what a replay looks like. Codes from oathtool. Must run as root.

use std::fs;

use crate::support;
use crate::support::clients::{
    run_sudo, Answers, InstalledService, ShellUser, SshClient, SshRun, Sshd, SudoRule,
};
use crate::support::secret_store::StoreSecret;
use crate::support::state_record::{stored_payload, stored_state};
use crate::support::{
    finish, new_secret, otp_line, pamtester_argv, recovery_hash, spawn, totp, totp_enrollment,
    unique, user_db, wait_for_step_margin, wrong_totp, Fixture, Outcome, Service, StateDir,
    TestUser, AUTH_ERR, LOCKED, NOLOGIN, REPLAY_MESSAGE,
};

/// pamtester with PAM_RHOST set, answering `answer` (lines joined by \n).
fn login_from(service: &Service, user: &str, rhost: Option<&str>, answer: &str) -> Outcome {
    finish(spawn(&pamtester_argv(service, user, None, rhost)), answer)
}

// ---- two enrollments, one state_dir ----

/// svc-a reads `~/.otp.toml`, svc-b `~/.otp-b.toml` (another secret), one state_dir.
struct TwoServices {
    user: TestUser,
    state: StateDir,
    a: Service,
    b: Service,
    secret_a: String,
    secret_b: String,
}

impl TwoServices {
    fn new(extra_a: &str) -> TwoServices {
        let user = TestUser::new();
        let (secret_a, secret_b) = (new_secret(), new_secret());
        user.enroll(&format!("{}{extra_a}", totp_enrollment(&secret_a)));
        user.write_file(".otp-b.toml", totp_enrollment(&secret_b), 0o600);
        let state = StateDir::new();
        let a = Service::otp(&state, "");
        let b = Service::otp(&state, "secret=~/.otp-b.toml");
        TwoServices {
            user,
            state,
            a,
            b,
            secret_a,
            secret_b,
        }
    }

    fn login(&self, service: &Service, answer: &str) -> Outcome {
        login_from(service, &self.user.name, None, answer)
    }
}

#[test]
fn failures_on_two_enrollments_add_up_to_a_lockout() {
    let t = TwoServices::new("");
    let (wrong_a, wrong_b) = (wrong_totp(&t.secret_a), wrong_totp(&t.secret_b));
    // Before: each service's first login reset the other's failures; ten rounds of
    // (4 on a, 1 on b) never locked. Now the fifth failure, whichever service, locks.
    for _ in 0..4 {
        t.login(&t.a, &wrong_a)
            .assert_failure(AUTH_ERR, "wrong code on a");
    }
    t.login(&t.b, &wrong_b)
        .assert_failure(AUTH_ERR, "fifth wrong code, on b");
    wait_for_step_margin(5);
    t.login(&t.a, &totp(&t.secret_a))
        .assert_failure(LOCKED, "right code on a after five failures on a and b");
    t.login(&t.b, &totp(&t.secret_b))
        .assert_failure(LOCKED, "right code on b after five failures on a and b");
}

#[test]
fn a_code_used_on_one_enrollment_stays_used_after_a_try_on_the_other() {
    let t = TwoServices::new("");
    wait_for_step_margin(8);
    let code = totp(&t.secret_a);
    t.login(&t.a, &code).assert_success("first use on a");
    t.login(&t.b, &wrong_totp(&t.secret_b))
        .assert_failure(AUTH_ERR, "one try on b");
    let again = t.login(&t.a, &code);
    again.assert_failure(AUTH_ERR, "the same code on a again");
    assert!(again.stderr.contains(REPLAY_MESSAGE), "{again:?}");
    // And b's own replay guard is its own: b's code still works once.
    t.login(&t.b, &totp(&t.secret_b))
        .assert_success("b's code, once");
    let path = t.state.state_file(&t.user.name);
    let enrollments = stored_state(&path).unwrap().enrollments;
    assert_eq!(
        enrollments.len(),
        2,
        "one record per enrollment: {enrollments:?}"
    );
}

#[test]
fn a_spent_recovery_code_stays_spent_after_a_try_on_the_other_enrollment() {
    let codes = ["abcd-efgh-2345", "jkmn-pqrs-6789"];
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| format!("\"{}\"", recovery_hash(c)))
        .collect();
    let t = TwoServices::new(&format!("recovery_codes = [{}]\n", hashes.join(", ")));
    let first = t.login(&t.a, codes[0]);
    first.assert_success("recovery code on a");
    assert!(
        first.stdout.contains("1 recovery code left")
            || first.stderr.contains("1 recovery code left"),
        "{first:?}"
    );
    t.login(&t.b, &wrong_totp(&t.secret_b))
        .assert_failure(AUTH_ERR, "one try on b");
    let again = t.login(&t.a, codes[0]);
    again.assert_failure(AUTH_ERR, "the spent recovery code again");
    assert!(
        again
            .stderr
            .contains("This recovery code was already used."),
        "{again:?}"
    );
}

#[test]
fn re_enrolling_does_not_reset_a_lockout() {
    let t = TwoServices::new("");
    let wrong = wrong_totp(&t.secret_a);
    for _ in 0..5 {
        t.login(&t.a, &wrong).assert_failure(AUTH_ERR, "wrong code");
    }
    let secret = new_secret();
    t.user.enroll(&totp_enrollment(&secret));
    t.login(&t.a, &totp(&secret))
        .assert_failure(LOCKED, "right code of a brand-new enrollment while locked");
}

// ---- accounts that share a UID ----

/// A second account with `user`'s UID and home (`useradd -o`), deleted on drop.
struct SameUid {
    name: String,
}

impl SameUid {
    fn of(user: &TestUser) -> SameUid {
        let name = unique("pou");
        let uid = user.uid.to_string();
        let home = user.home.display().to_string();
        let out = user_db(&[
            "useradd",
            "-o",
            "-u",
            &uid,
            "-g",
            &user.gid.to_string(),
            "-M",
            "-d",
            &home,
            "-s",
            NOLOGIN,
            &name,
        ]);
        assert!(
            out.status.success(),
            "useradd -o: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SameUid { name }
    }
}

impl Drop for SameUid {
    fn drop(&mut self) {
        let _ = user_db(&["userdel", "-f", &self.name]);
    }
}

#[test]
fn accounts_that_share_a_uid_share_the_replay_guard_and_the_lockout() {
    let f = Fixture::totp();
    let twin = SameUid::of(&f.user);
    let service = f.service("");
    wait_for_step_margin(8);
    let code = totp(&f.secret);
    f.login(&service, &code)
        .assert_success("the code as the first account");
    login_from(&service, &twin.name, None, &code)
        .assert_failure(AUTH_ERR, "the same code as the account with the same UID");
    let wrong = wrong_totp(&f.secret);
    for _ in 0..5 {
        f.login(&service, &wrong)
            .assert_failure(AUTH_ERR, "wrong code");
    }
    login_from(&service, &twin.name, None, &totp(&f.secret))
        .assert_failure(LOCKED, "the other account while the UID is locked");
    // One file, named by the UID: no account name in the state directory.
    let names: Vec<String> = fs::read_dir(&f.state.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains(&f.user.name) && !n.contains(&twin.name)),
        "{names:?}"
    );
    assert!(f.state.state_file(&f.user.name).exists(), "{names:?}");
}

// ---- try_first_pass ----

#[test]
fn try_first_pass_with_a_code_shaped_password_still_asks_for_the_code() {
    let f = Fixture::totp();
    let password = "482913";
    let out = support::user_db_with_input(&["chpasswd"], &format!("{}:{password}\n", f.user.name));
    assert!(out.status.success(), "chpasswd failed");
    let service = Service::with_lines(&[
        "auth requisite pam_unix.so".to_string(),
        otp_line(&f.state, "try_first_pass"),
    ]);
    // Before: the password was taken for the code, no code was asked, rc=7, one failure
    // per login until locked out. Now the miss counts once, the code is asked for, and
    // the right code clears the count. Two logins: this step's code, then the next one's
    // (window=1 accepts it).
    wait_for_step_margin(10);
    let now = support::now();
    for (round, at) in [now, now + 30].into_iter().enumerate() {
        let code = support::totp_at(&f.secret, at, &[]);
        let run = login_from(&service, &f.user.name, None, &format!("{password}\n{code}"));
        run.assert_success(&format!("login {round}: password, then the code"));
        assert!(run.prompted("Verification code: "), "{run:?}");
        let state = stored_state(&f.state.state_file(&f.user.name));
        assert_eq!(state.map(|s| s.all.user.failures), Some(0), "round {round}");
    }
    // A wrong code after the miss: two failures for that login (both were checked).
    let run = login_from(
        &service,
        &f.user.name,
        None,
        &format!("{password}\n{}", wrong_totp(&f.secret)),
    );
    run.assert_failure(AUTH_ERR, "password, then a wrong code");
    let state = stored_state(&f.state.state_file(&f.user.name));
    assert_eq!(state.map(|s| s.all.user.failures), Some(2));
}

/// Sleeps until the clock is in a later 30 s step than the Unix time `used_at`, so a
/// new code exists. It compares with the step the used code belongs to rather than with
/// the step at the call: a fresh machine's clock may be stepped back by time sync
/// while the test runs, and the next code must still be a different one.
fn wait_for_step_after(used_at: i64) {
    while support::now().div_euclid(30) <= used_at.div_euclid(30) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

// ---- sources: IPv6 /64 and a thousand addresses ----

#[test]
fn ipv6_addresses_in_one_64_are_one_source() {
    let f = Fixture::totp();
    let service = f.service("");
    let wrong = wrong_totp(&f.secret);
    for (i, rhost) in ["::1", "::2", "::1:2:3:4", "0::ffff:0:0:1", "::1"]
        .iter()
        .enumerate()
    {
        login_from(&service, &f.user.name, Some(rhost), &wrong)
            .assert_failure(AUTH_ERR, &format!("wrong code {i} from {rhost}"));
    }
    wait_for_step_margin(5);
    login_from(&service, &f.user.name, Some("::2"), &totp(&f.secret))
        .assert_failure(LOCKED, "right code from ::2 once ::/64 is locked");
    login_from(
        &service,
        &f.user.name,
        Some("2001:db8::1"),
        &totp(&f.secret),
    )
    .assert_success("right code from another /64");
}

#[test]
fn a_thousand_addresses_keep_the_state_bounded_and_the_lock_in_place() {
    let f = Fixture::totp();
    // No user-wide ceiling: every one of the thousand failures is checked.
    let service = f.service("max_failures_user=0");
    let wrong = wrong_totp(&f.secret);
    for _ in 0..5 {
        login_from(&service, &f.user.name, Some("127.0.0.2"), &wrong)
            .assert_failure(AUTH_ERR, "wrong code from 127.0.0.2");
    }
    let mut refused = 0;
    for batch in 0..50u32 {
        let children: Vec<_> = (0..20u32)
            .map(|i| {
                let n = batch * 20 + i;
                let rhost = format!("10.{}.{}.1", n / 256, n % 256);
                spawn(&pamtester_argv(&service, &f.user.name, None, Some(&rhost)))
            })
            .collect();
        for child in children {
            let run = finish(child, &wrong);
            refused += usize::from(run.failed_with(AUTH_ERR));
        }
    }
    assert_eq!(refused, 1000, "every distinct address checked and refused");
    let path = f.state.state_file(&f.user.name);
    let size = fs::metadata(&path).unwrap().len();
    let sources = stored_state(&path).unwrap().all.sources;
    eprintln!(
        "after 1000 addresses: {} sources, {size} bytes",
        sources.len()
    );
    assert!(sources.len() <= 32, "{} sources kept", sources.len());
    // The record file has a fixed layout (a header block and two slot blocks); what it
    // holds must stay small too.
    let payload = stored_payload(&path).unwrap().len();
    assert!(payload < 8 * 1024, "state record of {payload} bytes");
    assert!(size <= 12 * 1024, "state file of {size} bytes");
    assert!(
        sources.contains_key("127.0.0.2"),
        "the locked source was forgotten"
    );
    wait_for_step_margin(5);
    login_from(&service, &f.user.name, Some("127.0.0.2"), &totp(&f.secret))
        .assert_failure(LOCKED, "right code from the locked source");
    login_from(&service, &f.user.name, Some("192.0.2.1"), &totp(&f.secret))
        .assert_success("right code from another address");
}

// ---- real sshd, password + code, sources by `ssh -b` ----

struct PasswordSshd {
    sshd: Sshd,
    _service: InstalledService,
    client: SshClient,
    user: ShellUser,
    password: String,
    secret: String,
    marker: String,
}

impl PasswordSshd {
    fn new(policy: &[(&str, &str)]) -> PasswordSshd {
        let user = ShellUser::new();
        let password = user.set_password();
        let secret = new_secret();
        user.enroll(&totp_enrollment(&secret));
        let service = InstalledService::install("sshd-password-otp", "tx-sshd-src-", policy);
        let sshd = Sshd::start(&service, &["AuthenticationMethods keyboard-interactive"]);
        PasswordSshd {
            sshd,
            _service: service,
            client: SshClient::new(),
            user,
            password,
            secret,
            marker: unique("tx-ran-"),
        }
    }

    /// Logs in from the local address `from` (`ssh -b`) with `extra` ssh arguments.
    fn login_with(&self, from: &str, extra: &[&str], code: &str) -> SshRun {
        let answers = Answers {
            code: Some(code.to_string()),
            password: Some(self.password.clone()),
        };
        let command = format!("echo {}", self.marker);
        let mut args = vec!["-b", from];
        args.extend_from_slice(extra);
        self.client
            .run_with(&args, &self.sshd, &self.user.name, &answers, 1, &command)
    }

    fn login(&self, from: &str, code: &str) -> SshRun {
        self.login_with(from, &[], code)
    }
}

#[test]
fn sshd_a_locked_address_leaves_the_owner_in() {
    let s = PasswordSshd::new(&[]);
    let wrong = wrong_totp(&s.secret);
    for i in 0..5 {
        s.login("127.0.0.2", &wrong)
            .assert_refused(&s.marker, &format!("wrong code {i} from 127.0.0.2"));
    }
    wait_for_step_margin(10);
    let locked = s.login("127.0.0.2", &totp(&s.secret));
    locked.assert_refused(&s.marker, "right code from the locked 127.0.0.2");
    assert_eq!(locked.code_prompts(), 0, "{}", locked.describe());
    s.login("127.0.0.1", &totp(&s.secret))
        .assert_ran(&s.marker, "the owner from 127.0.0.1");
}

#[test]
fn sshd_the_user_wide_ceiling_locks_every_address() {
    // max_failures_user=8: one wrong code from each of 127.0.0.2 to 127.0.0.9.
    let s = PasswordSshd::new(&[("max_failures_user", "8")]);
    let wrong = wrong_totp(&s.secret);
    for host in 2..=9 {
        let from = format!("127.0.0.{host}");
        let run = s.login(&from, &wrong);
        run.assert_refused(&s.marker, &format!("wrong code from {from}"));
        // Each address is asked (one failure each is far below max_failures=5).
        assert_eq!(run.code_prompts(), 1, "{}", run.describe());
    }
    wait_for_step_margin(10);
    let owner = s.login("127.0.0.1", &totp(&s.secret));
    owner.assert_refused(&s.marker, "the owner from 127.0.0.1 with the user locked");
    assert_eq!(owner.code_prompts(), 0, "{}", owner.describe());
}

#[test]
fn sshd_a_replayed_code_is_named_and_not_counted() {
    let s = PasswordSshd::new(&[("max_failures", "2")]);
    wait_for_step_margin(15);
    let used_at = support::now();
    let code = support::totp_at(&s.secret, used_at, &[]);
    s.login("127.0.0.1", &code)
        .assert_ran(&s.marker, "first use of the code");
    // Three replays with max_failures=2: none counts, so the source is not locked.
    for i in 0..3 {
        // LogLevel=INFO, ssh's default: the server's message is printed to the user.
        let again = s.login_with("127.0.0.1", &["-o", "LogLevel=INFO"], &code);
        again.assert_refused(&s.marker, &format!("replay {i}"));
        eprintln!("what the ssh user sees on a replay:\n{}", again.stderr);
        assert!(
            again.stderr.contains(REPLAY_MESSAGE),
            "{}",
            again.describe()
        );
    }
    wait_for_step_after(used_at);
    let next_at = support::now();
    s.login("127.0.0.1", &support::totp_at(&s.secret, next_at, &[]))
        .assert_ran(
            &s.marker,
            &format!(
                "the next code after three replays (used at {used_at}, next at {next_at}, \
                 clock after it {})",
                support::now()
            ),
        );
}

/// As a sudo user: the code once, then the same code again (three times, with
/// max_failures=2); what the last run shows.
fn sudo_replay(defaults: &[&str]) -> crate::support::clients::SudoRun {
    let user = ShellUser::new();
    let password = user.set_password();
    let secret = new_secret();
    // The shipped sudo file reads the administrator's store.
    let _stored = StoreSecret::write(&user.name, &totp_enrollment(&secret));
    let service =
        InstalledService::install("sudo-otp", "tx-sudo-replay-", &[("max_failures", "2")]);
    let _rule = SudoRule::install_with(&user.name, &service, defaults);
    wait_for_step_margin(10);
    let code = totp(&secret);
    let first = run_sudo(&user.name, &[&password, &code]);
    assert_eq!(first.stdout.trim(), "root", "{}", first.describe());
    for _ in 0..2 {
        let replay = run_sudo(&user.name, &[&password, &code]);
        assert_ne!(replay.status, Some(0), "{}", replay.describe());
    }
    let again = run_sudo(&user.name, &[&password, &code]);
    eprintln!(
        "what the sudo user sees on a replay (Defaults {defaults:?}):\n{}",
        again.stderr
    );
    assert_ne!(again.status, Some(0), "{}", again.describe());
    again
}

#[test]
fn sudo_a_replayed_code_is_refused_silently_as_sudo_asks() {
    // sudo (1.9.13 here) calls pam_authenticate with PAM_SILENT, and the module then sends
    // no message: the user sees only sudo's own line. (sudo 1.9.16 and later have
    // `Defaults !pam_silent`, under which the replay message is shown.) The replay is
    // not counted: a second replay is refused the same way, never as a lockout.
    let again = sudo_replay(&[]);
    assert!(
        !again.stderr.contains(REPLAY_MESSAGE),
        "{}",
        again.describe()
    );
    assert!(
        again
            .stderr
            .contains("Verification code: sudo: 1 incorrect password attempt"),
        "{}",
        again.describe()
    );
}

// ---- otp-admin: locked sources, unlock --source ----

#[test]
fn otp_admin_lists_locked_sources_and_unlocks_one() {
    use crate::support::admin::otp_admin;
    let f = Fixture::totp();
    let service = f.service("");
    let wrong = wrong_totp(&f.secret);
    for rhost in ["127.0.0.2", "2001:db8:5:6::1"] {
        for _ in 0..5 {
            login_from(&service, &f.user.name, Some(rhost), &wrong)
                .assert_failure(AUTH_ERR, &format!("wrong code from {rhost}"));
        }
    }
    let dir = f.state.path.display().to_string();
    let status = otp_admin(&["--state-dir", &dir, "status", &f.user.name]);
    status.assert_ok("status");
    println!("otp-admin status {}:\n{}", f.user.name, status.stdout);
    for needle in [
        "locked source:",
        "127.0.0.2 until ",
        "2001:db8:5:6::/64 until ",
        "2 remembered (of 32): 2 locked",
        "10 of 20",
    ] {
        assert!(
            status.stdout.contains(needle),
            "{needle:?}\n{}",
            status.stdout
        );
    }
    let unlock = otp_admin(&[
        "--state-dir",
        &dir,
        "unlock",
        &f.user.name,
        "--source",
        "127.0.0.2",
    ]);
    unlock.assert_ok("unlock --source");
    println!("{}", unlock.stdout);
    assert!(unlock.stdout.contains("unlocked"), "{unlock:?}");
    wait_for_step_margin(5);
    login_from(
        &service,
        &f.user.name,
        Some("2001:db8:5:6::2"),
        &totp(&f.secret),
    )
    .assert_failure(LOCKED, "the other source stays locked");
    login_from(&service, &f.user.name, Some("127.0.0.2"), &totp(&f.secret))
        .assert_success("the unlocked source");
    // unlock without --source clears every source.
    otp_admin(&["--state-dir", &dir, "unlock", &f.user.name]).assert_ok("unlock");
    let json = otp_admin(&["--state-dir", &dir, "status", &f.user.name, "--json"]).json();
    assert_eq!(json["locked"], false, "{json}");
    assert_eq!(json["sources"].as_array().map(Vec::len), Some(0), "{json}");
}
