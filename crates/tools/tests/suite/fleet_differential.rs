//! One rule book: random sequences of logins (right, wrong, replayed, recovery and older
//! codes, from several sources, across two enrollments, with time passing) through a
//! file-store service and through a fleet service (a real `redis-server`) give the same
//! PAM results and messages, and leave the same state: the same tallies, locks and
//! enrollment records, read back by the tests' own decoder.
//!
//! Both stores decide at the same second: in fleet mode the server's clock decides, so
//! each pair of logins starts just after the server's clock turned a second, and the
//! file-store client runs under libfaketime frozen at that second. Time passes for real
//! (short lockouts make locks come and go within a sequence).

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use crate::support::redis::{Host, RedisServer};
use crate::support::state_record::{stored_state, StoredState, STATE_FORMAT};
use crate::support::{
    finish, hotp, new_secret, recovery_hash, spawn, totp_at, Outcome, Rng, Service, StateDir,
    TestUser,
};

/// Random sequences, and logins in each (each through both stores).
const CASES: usize = 6;
const STEPS: usize = 25;

/// A policy under which locks come and go within a sequence (of real seconds).
const POLICY: &str = "max_failures=3 max_failures_user=6 lockout=1 max_lockout=4";

/// A Unix time as libfaketime reads a frozen absolute time (`TZ=UTC` is set).
fn faketime_spec(unix: u64) -> String {
    let text = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix))
        .to_string();
    text.trim_end_matches('Z').replace('T', " ")
}

/// The server's clock: Unix seconds and the microseconds within.
fn server_time(redis: &RedisServer) -> (u64, u64) {
    let out = redis.admin(&["TIME"]);
    let mut lines = out.lines().map(|l| l.trim().parse::<u64>().unwrap());
    (lines.next().unwrap(), lines.next().unwrap())
}

/// Waits until the server's clock has just turned a second (at most 0.5 s into it),
/// leaving a pair of logins half of the second; that second.
fn start_of_a_second(redis: &RedisServer) -> u64 {
    loop {
        let (seconds, micros) = server_time(redis);
        if micros < 500_000 {
            return seconds;
        }
        sleep(Duration::from_micros(1_000_000 - micros + 5_000));
    }
}

const SOURCES: [Option<&str>; 4] = [
    None,
    Some("192.0.2.1"),
    Some("192.0.2.2"),
    Some("2001:db8::7"),
];

/// One of the two enrollments the user switches between.
struct Enrolled {
    secret: String,
    totp: bool,
    text: String,
    recovery: Vec<&'static str>,
    /// HOTP: the next counter the stores should accept (as the file store's results say).
    next_counter: u64,
    /// The last code accepted with it, for replays.
    last_accepted: Option<String>,
}

impl Enrolled {
    fn new(totp: bool, recovery: Vec<&'static str>) -> Enrolled {
        let secret = new_secret();
        let hashes: Vec<String> = recovery
            .iter()
            .map(|code| format!("\"{}\"", recovery_hash(code)))
            .collect();
        let text = format!(
            "version = 1\ntype = \"{}\"\nsecret = \"{secret}\"\nrecovery_codes = [{}]\n",
            if totp { "totp" } else { "hotp" },
            hashes.join(", ")
        );
        Enrolled {
            secret,
            totp,
            text,
            recovery,
            next_counter: 0,
            last_accepted: None,
        }
    }
}

/// One login under libfaketime at `time` (UTC), answering `answer`.
fn login_at(
    service: &Service,
    user: &TestUser,
    rhost: Option<&str>,
    answer: &str,
    time: u64,
) -> Outcome {
    let mut argv: Vec<String> = ["env", "TZ=UTC", "faketime", "-f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(faketime_spec(time));
    argv.push("pamtester".into());
    if let Some(rhost) = rhost {
        argv.extend(["-I".into(), format!("rhost={rhost}")]);
    }
    argv.extend([
        service.name.clone(),
        user.name.clone(),
        "authenticate".into(),
    ]);
    finish(spawn(&argv), answer)
}

/// The state as stored, a missing one as the empty state.
fn or_empty(state: Option<StoredState>) -> StoredState {
    state.unwrap_or(StoredState {
        version: STATE_FORMAT,
        last_success: 0,
        all: Default::default(),
        protected: Default::default(),
        enrollments: BTreeMap::new(),
    })
}

#[test]
fn the_file_store_and_the_fleet_decide_every_login_alike() {
    let mut rng = Rng::from_os("fleet differential");
    let redis = RedisServer::start();
    let user = TestUser::new();
    let mut enrolled = [
        Enrolled::new(true, vec!["fd-recovery-a", "fd-recovery-b"]),
        Enrolled::new(false, vec!["fd-recovery-c"]),
    ];
    let mut compared = 0;
    for case in 0..CASES {
        let file_state = StateDir::new();
        let file = Service::otp(&file_state, POLICY);
        let fleet = Host::new(&format!("{} {POLICY}", redis.socket_args()));
        redis.admin(&["DEL", &redis.record_key(user.uid)]);
        let mut current = rng.below(2) as usize;
        user.enroll(&enrolled[current].text);
        for step in 0..STEPS {
            if rng.below(8) == 0 {
                current = 1 - current;
                user.enroll(&enrolled[current].text);
            }
            sleep(Duration::from_secs(
                [0, 0, 0, 0, 1, 3][rng.below(6) as usize],
            ));
            let time = start_of_a_second(&redis);
            let rhost = SOURCES[rng.below(SOURCES.len() as u64) as usize];
            let e = &enrolled[current];
            let (what, answer) = match rng.below(6) {
                0 | 1 => (
                    "right",
                    if e.totp {
                        totp_at(&e.secret, time as i64, &[])
                    } else {
                        hotp(&e.secret, e.next_counter + rng.below(3))
                    },
                ),
                2 => ("wrong", "000000".to_string()),
                3 => (
                    "replay",
                    e.last_accepted.clone().unwrap_or_else(|| "999999".into()),
                ),
                4 => (
                    "recovery",
                    e.recovery[rng.below(e.recovery.len() as u64) as usize].to_string(),
                ),
                _ => (
                    "older",
                    if e.totp {
                        totp_at(&e.secret, time as i64 - 30, &[])
                    } else {
                        hotp(&e.secret, e.next_counter.saturating_sub(1))
                    },
                ),
            };
            let by_file = login_at(&file, &user, rhost, &answer, time);
            let by_fleet = login_at(&fleet.service, &user, rhost, &answer, time);
            assert_eq!(
                server_time(&redis).0,
                time,
                "case {case} step {step}: the pair of logins took half a second (a machine too busy to compare them at one time)"
            );
            let context = format!(
                "case {case} step {step}: {what} answer from {rhost:?} with the {} enrollment at {time}",
                if e.totp { "TOTP" } else { "HOTP" }
            );
            assert_eq!(
                (&by_file.status, &by_file.stdout, &by_file.stderr),
                (&by_fleet.status, &by_fleet.stdout, &by_fleet.stderr),
                "{context}: the stores answered differently"
            );
            let in_file = or_empty(stored_state(&file_state.state_file(&user.name)));
            let in_fleet = or_empty(redis.record(user.uid).map(|(_, state)| state));
            assert_eq!(
                in_file, in_fleet,
                "{context}: the stores keep different states"
            );
            if by_file.succeeded() {
                let e = &mut enrolled[current];
                if !e.totp && what != "recovery" {
                    e.next_counter = (0..e.next_counter + 3)
                        .find(|&c| hotp(&e.secret, c) == answer)
                        .map_or(e.next_counter, |c| c + 1);
                }
                e.last_accepted = Some(answer);
            }
            compared += 1;
        }
    }
    println!("fleet differential: {CASES} sequences x {STEPS} logins = {compared} logins compared through both stores");
}
