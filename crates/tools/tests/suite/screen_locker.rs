//! PAM callers that are not root (screen lockers: swaylock, i3lock, xscreensaver, kde):
//! pamtester run as the enrolled user goes through the setuid checker `pam_otp_check`,
//! which decides with the same state, replay guard and lockout as a root login (sshd,
//! sudo); the checker run directly with a terminal, a hostile environment, oversized or
//! missing answers and arguments that would lower the limits; the shipped
//! `screen-locker-otp` stack and pam-auth-update profile. Real libpam, pamtester,
//! pam_unix (through its own unix_chkpwd), codes from oathtool. Run as root.
//!
//! The checker is setuid, so the dynamic loader ignores LD_PRELOAD for it: libfaketime
//! cannot reach it, and these tests use HOTP codes (no waiting for time steps) or wait
//! in real time.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use crate::nullok_off::WITH_PROFILE_ENABLED;
use crate::support::checker::run_logged;
use crate::support::checker::{
    checker_as, pamtester_as, pamtester_as_name, wire_answer, CheckerInstall, CheckerMode,
    SystemPolicy, EXIT_AUTH_ERR, EXIT_CONV_ERR, EXIT_PERM_DENIED, EXIT_SUCCESS, EXIT_SYSTEM_ERR,
    NO_CHECKER_MESSAGE,
};
use crate::support::clients::{read_shipped, require_program, ShellUser};
use crate::support::hostile::Logged;
use crate::support::redis::{Host, RedisServer};
use crate::support::secret_store::StoreSecret;
use crate::support::state_record::{stored_state, StoredState};
use crate::support::{
    finish, hotp, in_private_mounts, new_secret, pamtester_argv, right_code, run_pamtester,
    scratch_path, spawn, LocalUser, Service, AUTHINFO_UNAVAIL, AUTH_ERR, LOCKED, LOCKED_MESSAGE,
    REPLAY_MESSAGE,
};

fn hotp_enrollment(secret: &str) -> String {
    format!("version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n")
}

/// An enrolled user (HOTP, with a password) and the system policy the checker reads.
struct Desk {
    user: ShellUser,
    password: String,
    secret: String,
    policy: SystemPolicy,
    install: CheckerInstall,
}

impl Desk {
    fn new(settings: &[(&str, &str)]) -> Desk {
        let user = ShellUser::new();
        let password = user.set_password();
        let secret = new_secret();
        user.enroll(&hotp_enrollment(&secret));
        Desk {
            user,
            password,
            secret,
            policy: SystemPolicy::new(settings),
            install: CheckerInstall::new(),
        }
    }

    fn code(&self, counter: u64) -> String {
        hotp(&self.secret, counter)
    }

    /// A service with exactly `auth` lines `lines`, `MODULE` standing for the module.
    fn service(&self, lines: &[&str]) -> Service {
        let lines: Vec<String> = lines
            .iter()
            .map(|l| l.replace("MODULE", &self.install.module))
            .collect();
        Service::with_lines(&lines)
    }

    /// The shipped screen-locker stack, its pam_otp.so the module under test.
    fn screen_locker_service(&self) -> Service {
        let text = read_shipped("pam.d/screen-locker-otp");
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| l.replace("pam_otp.so", &self.install.module))
            .collect();
        assert!(lines.iter().any(|l| l.contains("use_split_code")), "{text}");
        Service::with_lines(&lines)
    }

    /// A root login (as sshd or sudo runs the module) on the same state directory.
    fn root_service(&self) -> Service {
        self.service(&[&format!(
            "auth required MODULE state_dir={} policy={}",
            self.policy.state.path.display(),
            self.policy.file().display()
        )])
    }

    fn state(&self) -> Option<StoredState> {
        stored_state(&self.policy.state_file(&self.user))
    }

    fn local_failures(&self) -> u32 {
        self.state()
            .and_then(|s| s.all.sources.get("local").map(|t| t.failures))
            .unwrap_or(0)
    }

    /// pamtester as the user, for the user.
    fn unlock(&self, service: &Service, answers: &str) -> Logged {
        pamtester_as(&self.policy, &self.user, &service.name, &self.user, answers)
    }

    /// pamtester as the user with `answers`: refused as locked, and told so.
    #[track_caller]
    fn assert_locked(&self, service: &Service, answers: &str, what: &str) {
        let run = self.unlock(service, answers);
        run.outcome.assert_failure(LOCKED, what);
        assert!(
            run.outcome.stderr.contains(LOCKED_MESSAGE),
            "{what}: {:?}",
            run.outcome
        );
    }

    /// pamtester as root (no setpriv): what sshd and sudo do.
    fn root_login(&self, service: &Service, answer: &str) -> crate::support::Outcome {
        run_pamtester(service, &self.user.name, answer, None)
    }
}

#[test]
fn a_plain_stack_run_by_the_user_shares_state_replay_guard_and_lockout_with_root_logins() {
    let desk = Desk::new(&[("max_failures", "3"), ("lockout", "8")]);
    let plain = desk.service(&["auth required MODULE"]);
    let root = desk.root_service();

    let run = desk.unlock(&plain, &desk.code(0));
    run.outcome.assert_success("the right code, as the user");
    run.assert_logged(&["accepted HOTP code (counter 0)"], "accepted");

    let run = desk.unlock(&plain, &desk.code(0));
    run.outcome.assert_failure(AUTH_ERR, "the same code again");
    assert!(
        run.outcome.stderr.contains(REPLAY_MESSAGE),
        "{:?}",
        run.outcome
    );
    // A root login sees the code as spent too: one replay guard.
    let out = desk.root_login(&root, &desk.code(0));
    out.assert_failure(AUTH_ERR, "the code spent through the checker, as root");
    assert!(out.stderr.contains(REPLAY_MESSAGE), "{out:?}");

    // Failures through the checker and as root add up in one tally ("local").
    let wrong = desk.code(500);
    desk.unlock(&plain, &wrong)
        .outcome
        .assert_failure(AUTH_ERR, "a wrong code, as the user");
    assert_eq!(desk.local_failures(), 1, "{:?}", desk.state());
    desk.root_login(&root, &wrong)
        .assert_failure(AUTH_ERR, "a wrong code, as root");
    assert_eq!(desk.local_failures(), 2, "{:?}", desk.state());
    desk.unlock(&plain, &wrong)
        .outcome
        .assert_failure(AUTH_ERR, "the third wrong code locks");

    // Locked: the right code is refused, through the checker and as root.
    desk.assert_locked(
        &plain,
        &desk.code(1),
        "the right code while locked, as the user",
    );
    desk.root_login(&root, &desk.code(1))
        .assert_failure(LOCKED, "the right code while locked, as root");
    // ... until the lockout ends (real time: the checker is setuid, faketime cannot reach it).
    sleep(Duration::from_secs(9));
    desk.unlock(&plain, &desk.code(1))
        .outcome
        .assert_success("the right code after the lockout");
}

#[test]
fn the_shipped_screen_locker_stack_takes_password_and_code_in_one_answer() {
    require_program("/usr/sbin/unix_chkpwd", "libpam-modules-bin");
    let desk = Desk::new(&[("max_failures", "2"), ("lockout", "8")]);
    let locker = desk.screen_locker_service();
    let one = |password: &str, code: &str| format!("{password}{code}");

    let run = desk.unlock(&locker, &one(&desk.password, &desk.code(0)));
    run.outcome.assert_success("password and code");
    assert!(
        run.outcome.prompted("Password and verification code: "),
        "{:?}",
        run.outcome
    );
    let run = desk.unlock(&locker, &one(&desk.password, &desk.code(0)));
    run.outcome.assert_failure(AUTH_ERR, "the same code again");
    assert!(
        run.outcome.stderr.contains(REPLAY_MESSAGE),
        "{:?}",
        run.outcome
    );

    // A wrong password ends the stack before the code: nothing counted, nothing spent.
    let before = desk.state();
    desk.unlock(&locker, &one("not-the-password", &desk.code(1)))
        .outcome
        .assert_failure(AUTH_ERR, "a wrong password");
    assert_eq!(desk.state(), before, "a wrong password changed the state");

    let wrong = desk.code(500);
    desk.unlock(&locker, &one(&desk.password, &wrong))
        .outcome
        .assert_failure(AUTH_ERR, "a wrong code");
    assert_eq!(desk.local_failures(), 1, "{:?}", desk.state());
    desk.unlock(&locker, &one(&desk.password, &wrong))
        .outcome
        .assert_failure(AUTH_ERR, "the second wrong code locks");
    let run = desk.unlock(&locker, &one(&desk.password, &desk.code(1)));
    run.outcome
        .assert_failure(LOCKED, "the right code while locked");
    // The root login (sshd, sudo) is locked out as well.
    desk.root_login(&desk.root_service(), &desk.code(1))
        .assert_failure(LOCKED, "a root login while the locker's failures lock");
    sleep(Duration::from_secs(9));
    desk.unlock(&locker, &one(&desk.password, &desk.code(1)))
        .outcome
        .assert_success("after the lockout");
}

#[test]
fn a_user_asking_for_another_user_is_refused_logged_and_changes_nothing() {
    let desk = Desk::new(&[]);
    let other = Desk::new(&[]);
    let plain = desk.service(&["auth required MODULE"]);
    // The victim has state: one login through a root service.
    let root = desk.root_service();
    let victim_code = hotp(&desk.secret, 0);
    desk.root_login(&root, &victim_code)
        .assert_success("the victim's own login");
    let victim_file = desk.policy.state_file(&desk.user);
    let before = fs::read(&victim_file).unwrap();
    let listing = desk.policy.listing();

    // Through the module: the other user runs pamtester for the victim.
    let run = pamtester_as(
        &desk.policy,
        &other.user,
        &plain.name,
        &desk.user,
        &desk.code(1),
    );
    run.outcome
        .assert_failure(AUTH_ERR, "another user's account");
    run.assert_logged(
        &[
            &format!(
                "uid {} asked to check the code of uid {}",
                other.user.uid, desk.user.uid
            ),
            "refused",
        ],
        "the refusal",
    );
    // Directly, with the victim's next right code: still refused, the code not spent.
    let run = checker_as(
        &desk.policy,
        &desk.install,
        &other.user,
        &[&desk.user.name, "swaylock", ""],
        &[],
        &wire_answer(&desk.code(1)),
    );
    assert_eq!(run.outcome.status, Some(EXIT_AUTH_ERR), "{:?}", run.outcome);
    assert_eq!(
        fs::read(&victim_file).unwrap(),
        before,
        "the victim's state changed"
    );
    assert_eq!(
        desk.policy.listing(),
        listing,
        "the state directory changed"
    );
    // The victim's next code still works: it was never spent.
    desk.root_login(&root, &desk.code(1))
        .assert_success("the victim's next code");
}

#[test]
fn the_checker_refuses_a_terminal_on_its_standard_input() {
    require_program("/usr/bin/script", "bsdutils");
    let desk = Desk::new(&[]);
    let command = format!(
        "{} {} swaylock ''",
        desk.install.checker.display(),
        desk.user.name
    );
    let argv = desk.policy.as_user(
        desk.user.uid,
        desk.user.gid,
        &[],
        &["script".into(), "-qec".into(), command, "/dev/null".into()],
    );
    let run = crate::support::checker::run_logged(argv, &wire_answer(&desk.code(0)));
    assert_eq!(
        run.outcome.status,
        Some(EXIT_SYSTEM_ERR),
        "{:?}",
        run.outcome
    );
    run.assert_logged(&["from a terminal", "refused"], "the refusal");
    assert_eq!(
        desk.state(),
        None,
        "state written for a run from a terminal"
    );
    // The code was not spent.
    let run = desk.unlock(&desk.service(&["auth required MODULE"]), &desk.code(0));
    run.outcome.assert_success("the code after the refused run");
}

#[test]
fn a_hostile_environment_does_not_reach_the_checker() {
    let desk = Desk::new(&[]);
    let faketime = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let secret = new_secret();
    // TOTP here: a preloaded libfaketime one year ahead would make the right code wrong.
    desk.user.enroll(&crate::support::totp_enrollment(&secret));
    let mut env = vec![
        ("PATH", "/nonexistent"),
        ("TZ", "Evil/Zone"),
        ("LANG", "xx_XX.BOGUS"),
        ("FAKETIME", "+365d"),
    ];
    if let Some(lib) = faketime {
        env.push(("LD_PRELOAD", lib));
    } else {
        env.push(("LD_PRELOAD", "/nonexistent/evil.so"));
    }
    let code = right_code(&secret);
    let run = checker_as(
        &desk.policy,
        &desk.install,
        &desk.user,
        &[&desk.user.name, "swaylock", ""],
        &env,
        &wire_answer(&code),
    );
    assert_eq!(run.outcome.status, Some(EXIT_SUCCESS), "{:?}", run.outcome);
    run.assert_logged(&["accepted TOTP code"], "accepted in real time");
    // Nothing but the state and its lock, root's and private, whatever the caller's umask.
    let listing = desk.policy.listing();
    assert_eq!(listing.len(), 2, "{listing:?}");
    for line in &listing {
        assert!(line.starts_with("-rw------- 1 0 0 "), "{line}");
    }
}

#[test]
fn an_oversized_or_missing_answer_changes_nothing() {
    let desk = Desk::new(&[]);
    let args = [desk.user.name.as_str(), "swaylock", ""];
    let huge = vec![b'1'; 1 << 20];
    for (what, input) in [
        ("1 MiB", huge),
        ("no answer", Vec::new()),
        ("no NUL", b"123456".to_vec()),
    ] {
        let run = checker_as(&desk.policy, &desk.install, &desk.user, &args, &[], &input);
        assert_eq!(
            run.outcome.status,
            Some(EXIT_CONV_ERR),
            "{what}: {:?}",
            run.outcome
        );
        assert!(
            run.elapsed < Duration::from_secs(10),
            "{what}: {:?}",
            run.elapsed
        );
        assert_eq!(desk.state(), None, "{what}: state written");
    }
    // The first code still works: nothing was spent or counted.
    checker_as(
        &desk.policy,
        &desk.install,
        &desk.user,
        &args,
        &[],
        &wire_answer(&desk.code(0)),
    )
    .outcome
    .status
    .filter(|s| *s == EXIT_SUCCESS)
    .expect("the first code after the refused answers");
}

#[test]
fn arguments_cannot_lower_the_limits_or_name_another_enrollment() {
    let desk = Desk::new(&[("max_failures", "3"), ("lockout", "600")]);
    let name = desk.user.name.as_str();
    // Directly: any argument beyond USER SERVICE RHOST [nullok] is refused, nothing read.
    for extra in [
        "max_failures=0",
        "window=100",
        "secret=/var/lib/pam-otp/secrets/%u.toml",
        "state_dir=/tmp",
        "policy=/tmp/evil.toml",
    ] {
        let run = checker_as(
            &desk.policy,
            &desk.install,
            &desk.user,
            &[name, "swaylock", "", extra],
            &[],
            &wire_answer(&desk.code(500)),
        );
        assert_eq!(
            run.outcome.status,
            Some(EXIT_SYSTEM_ERR),
            "{extra}: {:?}",
            run.outcome
        );
        run.assert_logged(&["wrong arguments"], extra);
    }
    assert_eq!(desk.state(), None, "refused runs wrote state");

    // Through a PAM file whose line lowers the limits and names the store: the line's
    // limits and secret do not reach the checker, the policy file's do.
    let store_secret = new_secret();
    let store = StoreSecret::write(&desk.user.name, &hotp_enrollment(&store_secret));
    let lax = desk.service(&[&format!(
        "auth required MODULE max_failures=0 window=100 hotp_lookahead=1000 secret={}",
        store.path.display()
    )]);
    let run = desk.unlock(&lax, &hotp(&store_secret, 0));
    run.outcome.assert_failure(
        AUTH_ERR,
        "the store's code through the user's own enrollment",
    );
    for attempt in 2..=3 {
        desk.unlock(&lax, &desk.code(900 + attempt))
            .outcome
            .assert_failure(AUTH_ERR, "a guess beyond the lookahead of 10");
    }
    let run = desk.unlock(&lax, &desk.code(0));
    run.outcome.assert_failure(
        LOCKED,
        "locked after max_failures = 3, whatever the line says",
    );
    let state = desk.state().expect("state");
    assert_eq!(
        state.all.sources.get("local").map(|t| t.lockouts),
        Some(1),
        "{state:?}"
    );
}

#[test]
fn guessing_through_the_checker_in_a_loop_is_locked_after_max_failures() {
    let desk = Desk::new(&[("max_failures", "4"), ("lockout", "600")]);
    let args = [desk.user.name.as_str(), "swaylock", "203.0.113.7"];
    let mut statuses = Vec::new();
    for guess in 0..8u64 {
        let run = checker_as(
            &desk.policy,
            &desk.install,
            &desk.user,
            &args,
            &[],
            &wire_answer(&format!("{:06}", 100_000 + guess)),
        );
        statuses.push(run.outcome.status);
    }
    let expected: Vec<Option<i32>> = [EXIT_AUTH_ERR; 4]
        .into_iter()
        .chain([EXIT_PERM_DENIED; 4])
        .map(Some)
        .collect();
    assert_eq!(
        statuses, expected,
        "like sshd: max_failures wrong codes, then locked"
    );
    // The right code is refused too, and the rhost given did not choose the tally.
    let run = checker_as(
        &desk.policy,
        &desk.install,
        &desk.user,
        &[&desk.user.name, "swaylock", "198.51.100.9"],
        &[],
        &wire_answer(&desk.code(0)),
    );
    assert_eq!(
        run.outcome.status,
        Some(EXIT_PERM_DENIED),
        "{:?}",
        run.outcome
    );
    let state = desk.state().expect("state");
    assert_eq!(
        state.all.sources.keys().collect::<Vec<_>>(),
        ["local"],
        "{state:?}"
    );
    // And a root login is locked as well: the same lockout.
    desk.root_login(&desk.root_service(), &desk.code(0))
        .assert_failure(LOCKED, "a root login after guessing through the checker");
}

#[test]
fn a_missing_or_not_setuid_checker_is_named_in_the_log_and_to_the_user() {
    let desk = Desk::new(&[]);
    for (mode, needle) in [
        (CheckerMode::Missing, "is not installed"),
        (CheckerMode::NotSetuid, "is not setuid root"),
    ] {
        let install = CheckerInstall::copied(mode);
        let service = Service::with_lines(&[format!("auth required {}", install.module)]);
        let run = pamtester_as_name(
            &desk.policy,
            &desk.user,
            &service.name,
            &desk.user.name,
            &desk.code(0),
        );
        run.outcome.assert_failure(AUTHINFO_UNAVAIL, needle);
        assert!(
            run.outcome.stderr.contains(NO_CHECKER_MESSAGE),
            "{needle}: {:?}",
            run.outcome
        );
        run.assert_logged(&["not root", "pam_otp_check", needle], needle);
        assert_eq!(desk.state(), None, "{needle}: state written");
    }
}

/// The screen lockers' services, as they are named in /etc/pam.d.
const LOCKERS: [&str; 4] = ["swaylock", "i3lock", "xscreensaver", "kde"];

/// With the shipped pam-auth-update profile enabled (see `nullok_off`), makes each
/// locker's service and `tsl-other` include common-auth, then runs the rest.
const LOCKER_SERVICES: &str = r#"set -e
for s in swaylock i3lock xscreensaver kde tsl-other; do
    printf 'auth include common-auth\naccount required pam_permit.so\n' > "/etc/pam.d/$s"
done
exec "$@""#;

/// pamtester for `service` as `user`, with the shipped profile enabled (its pam_otp.so
/// the module under test) and `policy` as the system's.
fn with_profile<K>(desk: &Desk, user: &LocalUser<K>, service: &str, answers: &str) -> Logged {
    let work = scratch_path("tsl-work");
    fs::create_dir(&work).unwrap();
    let profile = work.join("profile");
    let shipped = read_shipped("pam-configs/pam-otp");
    fs::write(
        &profile,
        shipped.replace("pam_otp.so", &desk.install.module),
    )
    .unwrap();
    let mut argv = in_private_mounts(
        WITH_PROFILE_ENABLED,
        &[work.display().to_string(), profile.display().to_string()],
    );
    argv.extend(in_private_mounts(LOCKER_SERVICES, &[]));
    argv.extend(desk.policy.as_user(
        user.uid,
        user.gid,
        &[],
        &[
            "pamtester".into(),
            service.into(),
            user.name.clone(),
            "authenticate".into(),
        ],
    ));
    let run = run_logged(argv, format!("{answers}\n").as_bytes());
    let _ = fs::remove_dir_all(&work);
    run
}

#[test]
fn the_shipped_profile_locks_no_enrolled_user_out_of_the_screen() {
    require_program("/usr/sbin/pam-auth-update", "libpam-runtime");
    require_program("/usr/sbin/unix_chkpwd", "libpam-modules-bin");
    let desk = Desk::new(&[]);
    let profile = read_shipped("pam-configs/pam-otp");
    for locker in LOCKERS {
        // The lockers answer every prompt with the password: it alone unlocks.
        let run = with_profile(&desk, &desk.user, locker, &desk.password);
        run.outcome.assert_success(locker);
        assert!(
            !run.outcome.prompted("Verification code"),
            "{locker}: {:?}",
            run.outcome
        );
        // And the profile says which services it leaves out.
        assert!(
            profile.contains(locker),
            "the profile does not name {locker}"
        );
    }
    // Another program running as the user gets the code asked, through the checker.
    let answers = format!("{}\n{}", desk.password, desk.code(0));
    let run = with_profile(&desk, &desk.user, "tsl-other", &answers);
    run.outcome
        .assert_success("another service run by the user");
    assert!(
        run.outcome.prompted("Verification code"),
        "{:?}",
        run.outcome
    );
    run.assert_logged(&["accepted HOTP code (counter 0)"], "through the checker");
    let answers = format!("{}\n{}", desk.password, desk.code(500));
    with_profile(&desk, &desk.user, "tsl-other", &answers)
        .outcome
        .assert_failure(AUTH_ERR, "another service with a wrong code");
    // An unenrolled user passes there with the password (the profile's nullok).
    let unenrolled = ShellUser::new();
    let password = unenrolled.set_password();
    with_profile(&desk, &unenrolled, "tsl-other", &password)
        .outcome
        .assert_success("an unenrolled user, nullok");
}

#[test]
fn in_fleet_mode_the_checker_shares_the_replay_guard_with_the_fleet() {
    let redis = RedisServer::start();
    // The policy file says what the fleet's module lines say (values as TOML strings).
    let args = redis.socket_args();
    let settings: Vec<(String, String)> = args
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), format!("\"{value}\"")))
        .collect();
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let desk = Desk::new(&settings);
    let plain = desk.service(&["auth required MODULE"]);
    let other_host = Host::new(&args);
    let on_other_host =
        |code: &str| run_pamtester(&other_host.service, &desk.user.name, code, None);

    let run = desk.unlock(&plain, &desk.code(0));
    run.outcome.assert_success("counter 0 through the checker");
    let out = on_other_host(&desk.code(0));
    out.assert_failure(AUTH_ERR, "counter 0 again on another host");
    assert!(out.stderr.contains(REPLAY_MESSAGE), "{out:?}");
    on_other_host(&desk.code(1)).assert_success("counter 1 on another host");
    let run = desk.unlock(&plain, &desk.code(1));
    run.outcome
        .assert_failure(AUTH_ERR, "counter 1 again through the checker");
    assert!(
        run.outcome.stderr.contains(REPLAY_MESSAGE),
        "{:?}",
        run.outcome
    );
}

/// Whether the user was shown `text` (pamtester prints information on stdout, errors on
/// stderr).
fn told(run: &Logged, text: &str) -> bool {
    run.outcome.stdout.contains(text) || run.outcome.stderr.contains(text)
}

#[test]
fn a_user_with_no_enrollment_gets_the_module_lines_roll_out_rule_through_the_checker() {
    require_program("/usr/sbin/unix_chkpwd", "libpam-modules-bin");
    let desk = Desk::new(&[]);
    let unenrolled = ShellUser::new();
    let password = unenrolled.set_password();
    let stack = |args: &str| {
        desk.service(&[
            "auth requisite pam_unix.so",
            &format!("auth required MODULE {args}"),
            "auth required pam_permit.so",
        ])
    };
    let as_unenrolled = |service: &Service| {
        pamtester_as(
            &desk.policy,
            &unenrolled,
            &service.name,
            &unenrolled,
            &password,
        )
    };
    // Before the deadline: let through, and told (the password has passed).
    let run = as_unenrolled(&stack("enforce_after=2099-01-01"));
    run.outcome.assert_success("before the deadline");
    assert!(
        told(&run, "Verification codes are required here from 2099-01-01"),
        "{:?}",
        run.outcome
    );
    // After it: refused with the reason; nullok: let through; neither: refused.
    let run = as_unenrolled(&stack("enforce_after=2000-01-01"));
    run.outcome
        .assert_failure(AUTHINFO_UNAVAIL, "after the deadline");
    assert!(
        told(
            &run,
            "verification codes are required here since 2000-01-01"
        ),
        "{:?}",
        run.outcome
    );
    as_unenrolled(&stack("nullok"))
        .outcome
        .assert_success("nullok");
    as_unenrolled(&stack(""))
        .outcome
        .assert_failure(AUTHINFO_UNAVAIL, "no roll-out rule");
    // Nothing of it reaches an enrolled user: a deadline ahead still wants the code.
    let run = pamtester_as(
        &desk.policy,
        &desk.user,
        &stack("enforce_after=2099-01-01").name,
        &desk.user,
        &format!("{}\n{}", desk.password, desk.code(500)),
    );
    run.outcome
        .assert_failure(AUTH_ERR, "an enrolled user with a wrong code");
}

#[test]
fn a_user_wide_lockout_from_remote_guesses_locks_the_screen_and_a_remote_source_lock_does_not() {
    let desk = Desk::new(&[
        ("max_failures", "2"),
        ("max_failures_user", "4"),
        ("lockout", "600"),
    ]);
    let plain = desk.service(&["auth required MODULE"]);
    let root = desk.root_service();
    let from = |rhost: &str, code: &str| {
        finish(
            spawn(&pamtester_argv(&root, &desk.user.name, None, Some(rhost))),
            code,
        )
    };
    let wrong = desk.code(500);
    // One address locked (as sshd sees it): the screen, a local login, still unlocks.
    for _ in 0..2 {
        from("203.0.113.7", &wrong).assert_failure(AUTH_ERR, "a wrong code from one address");
    }
    from("203.0.113.7", &desk.code(0)).assert_failure(LOCKED, "that address is locked");
    desk.unlock(&plain, &desk.code(0))
        .outcome
        .assert_success("the screen, while one remote address is locked");
    // Failures from everywhere reach the user-wide limit: the screen is locked too.
    for rhost in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        from(rhost, &wrong).assert_failure(AUTH_ERR, rhost);
    }
    from("198.51.100.4", &wrong).assert_failure(AUTH_ERR, "the fourth address");
    desk.assert_locked(
        &plain,
        &desk.code(1),
        "the screen after the user-wide lockout",
    );
}
