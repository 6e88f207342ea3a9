//! Load: 200 concurrent logins against one user through real libpam. Every
//! pamtester first passes the module's lockout pre-check and waits at the prompt; then all
//! answers are released at once, so all 200 decisions race for the user's state lock.
//! Wrong codes: the failure count is exact and the lockout engages; right codes: exactly
//! one success. Meanwhile another user of the same state directory keeps logging in.
//! Run as root: `cargo test --test suite -- hostile_load::`.

use crate::support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::state_record::stored_state;
use support::{
    hotp, now, run_pamtester, totp, totp_at, wait_for_step_margin, wrong_totp, Fixture, Service,
    StateDir, TestUser, AUTH_ERR, LOCKED,
};

const STAMPEDE: usize = 200;

/// One stampede at a time in this binary: 200 processes are enough load for two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How the 200 logins ended.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    succeeded: usize,
    wrong: usize,
    locked: usize,
    other: Vec<String>,
}

/// Starts `STAMPEDE` pamtesters for `user`, then answers all of them at once.
fn stampede(service: &Service, user: &str, answer: &str) -> Counts {
    let mut children: Vec<Child> = (0..STAMPEDE)
        .map(|_| {
            Command::new("timeout")
                .args(["120", "pamtester", &service.name, user, "authenticate"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start pamtester")
        })
        .collect();
    // Let every process reach the prompt (or the lockout refusal) before any answer goes out.
    thread::sleep(Duration::from_millis(1500));
    for child in &mut children {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(format!("{answer}\n").as_bytes());
        }
    }
    let mut counts = Counts::default();
    for child in children {
        let out = child.wait_with_output().expect("wait for pamtester");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout.contains("successfully authenticated") {
            counts.succeeded += 1;
        } else if stderr.contains(&format!("pamtester: {AUTH_ERR}")) {
            counts.wrong += 1;
        } else if stderr.contains(&format!("pamtester: {LOCKED}")) {
            counts.locked += 1;
        } else {
            counts
                .other
                .push(format!("{:?}: {stdout} {stderr}", out.status));
        }
    }
    counts
}

/// Another user (HOTP, same state directory and module arguments) logging in over and
/// over until stopped.
struct Bystander {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<bool>>,
    _user: TestUser,
}

impl Bystander {
    fn start(state: &StateDir, args: &str) -> Bystander {
        let user = TestUser::new();
        let secret = support::new_secret();
        user.enroll(&format!(
            "version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"
        ));
        let service = Service::otp(state, args);
        let stop = Arc::new(AtomicBool::new(false));
        let (name, flag) = (user.name.clone(), stop.clone());
        let handle = thread::spawn(move || {
            let mut results = Vec::new();
            let mut counter = 0;
            while !flag.load(Ordering::SeqCst) || results.is_empty() {
                let out = run_pamtester(&service, &name, &hotp(&secret, counter), None);
                results.push(out.succeeded());
                counter += 1;
            }
            results
        });
        Bystander {
            stop,
            handle,
            _user: user,
        }
    }

    /// The bystander's results, one per login.
    fn finish(self) -> Vec<bool> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("bystander thread")
    }
}

/// Runs a stampede while a bystander logs in, and checks the bystander was never refused.
fn stampede_with_bystander(f: &Fixture, args: &str, answer: &str) -> Counts {
    let service = f.service(args);
    let bystander = Bystander::start(&f.state, args);
    let counts = stampede(&service, &f.user.name, answer);
    let results = bystander.finish();
    eprintln!(
        "stampede: {counts:?}; bystander: {} logins, {} refused",
        results.len(),
        results.iter().filter(|ok| !**ok).count()
    );
    assert!(
        results.len() >= 2 && results.iter().all(|ok| *ok),
        "another user's logins during the stampede: {results:?}"
    );
    counts
}

#[test]
fn two_hundred_wrong_codes_are_each_counted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::totp();
    let counts = stampede_with_bystander(
        &f,
        "max_failures=1000 max_failures_user=0",
        &wrong_totp(&f.secret),
    );
    assert_eq!(
        counts,
        Counts {
            wrong: STAMPEDE,
            ..Counts::default()
        }
    );
    let state = stored_state(&f.state.state_file(&f.user.name)).expect("a state file");
    assert_eq!(
        state.all.user.failures, STAMPEDE as u32,
        "lost or doubled updates"
    );
    assert_eq!(
        state.all.sources["local"].failures, STAMPEDE as u32,
        "lost or doubled updates of the source"
    );
    assert_eq!(state.all.user.lockouts, 0);
}

#[test]
fn two_hundred_wrong_codes_lock_the_user_and_nothing_slips_through() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::totp();
    let started = now();
    let counts = stampede_with_bystander(&f, "", &wrong_totp(&f.secret));
    // Exactly max_failures (5) were checked; every later decision found the user locked.
    assert_eq!(
        counts,
        Counts {
            wrong: 5,
            locked: STAMPEDE - 5,
            ..Counts::default()
        }
    );
    let path = f.state.state_file(&f.user.name);
    let state = stored_state(&path).expect("a state file");
    // pamtester sets no PAM_RHOST: the source "local" is locked, after 5 user-wide failures.
    let local = &state.all.sources["local"];
    assert_eq!((local.lockouts, local.failures), (1, 0));
    assert_eq!(state.all.user.failures, 5);
    let until = local.locked_until as i64;
    assert!(
        until >= started + 60 && until <= now() + 60,
        "locked_until {until}, started {started}"
    );

    // While locked, 200 right codes at once: not one gets in, and the state does not move.
    let before = std::fs::read(&path).unwrap();
    wait_for_step_margin(10);
    let counts = stampede_with_bystander(&f, "", &totp(&f.secret));
    assert_eq!(
        counts,
        Counts {
            locked: STAMPEDE,
            ..Counts::default()
        }
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "state changed while locked"
    );
}

#[test]
fn two_hundred_logins_with_one_right_code_succeed_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Lockout out of the way: all 200 are checked against the code.
    let f = Fixture::totp();
    wait_for_step_margin(20);
    // The code for one known instant, so the step it belongs to is exact.
    let time = now();
    let step = time / 30;
    let code = totp_at(&f.secret, time, &[]);
    let counts = stampede_with_bystander(&f, "max_failures=1000 max_failures_user=0", &code);
    assert_eq!(
        counts,
        Counts {
            succeeded: 1,
            wrong: STAMPEDE - 1,
            ..Counts::default()
        }
    );
    let state = stored_state(&f.state.state_file(&f.user.name)).expect("a state file");
    // The 199 others decided after it: replays, refused and not counted as failures.
    assert_eq!(state.all.user.failures, 0);
    let accepted = state.enrollment().unwrap().last_totp_step;
    assert_eq!(
        accepted,
        Some(step as u64),
        "the accepted step is the code's step"
    );

    // The default policy: one success, then replays for the rest, refused (PAM_AUTH_ERR)
    // but not counted, so they lock nobody out.
    let f = Fixture::totp();
    wait_for_step_margin(20);
    let counts = stampede_with_bystander(&f, "", &totp(&f.secret));
    assert_eq!(
        counts,
        Counts {
            succeeded: 1,
            wrong: STAMPEDE - 1,
            ..Counts::default()
        }
    );
}
