//! Fleet mode through Redis Sentinel, on the shipped layout (a master, two replicas, three
//! sentinels, TLS everywhere, `min-replicas-to-write 1` and `redis_replicas = 1`): two hosts
//! log in without pause while the master is SIGKILLed, comes back as a replica, and the
//! new master is killed in turn. Logins are refused while no master answers, succeed again
//! once a replica is promoted, and no code is ever accepted twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::admin::otp_admin;
use crate::support::hostile::{run_logged, Logged};
use crate::support::redis::{doctor_findings, hotp_user, Host};
use crate::support::sentinel::SentinelRig;
use crate::support::{finish, hotp, pamtester_argv, spawn, TestUser, AUTHINFO_UNAVAIL, AUTH_ERR};

/// How a login of the run ended.
#[derive(Clone, Debug, PartialEq)]
enum Ended {
    Accepted(u64),
    /// A code already used (the other host's, or a deliberate replay).
    Refused,
    /// No master answered in time: refused, fail closed.
    Unavailable,
}

/// Every login of the run: when it ended, on which host, how.
struct Run {
    next: AtomicU64,
    stop: AtomicBool,
    logins: Mutex<Vec<(Instant, usize, Ended)>>,
    odd: Mutex<Vec<String>>,
}

impl Run {
    fn accepted_since(&self, since: Instant) -> Option<Instant> {
        let logins = self.logins.lock().unwrap();
        logins
            .iter()
            .filter(|(at, _, ended)| *at > since && matches!(ended, Ended::Accepted(_)))
            .map(|(at, _, _)| *at)
            .min()
    }

    fn count_since(&self, since: Instant, wanted: &Ended) -> usize {
        let logins = self.logins.lock().unwrap();
        logins
            .iter()
            .filter(|(at, _, ended)| {
                *at > since && std::mem::discriminant(ended) == std::mem::discriminant(wanted)
            })
            .count()
    }
}

/// One host's loop: the next code in line, and every fifth login the last accepted one
/// again (a replay, which must be refused).
fn keep_logging_in(run: &Run, host: &Host, which: usize, user: &TestUser, secret: &str) {
    let mut round = 0u64;
    while !run.stop.load(Ordering::SeqCst) {
        round += 1;
        let next = run.next.load(Ordering::SeqCst);
        let counter = if round.is_multiple_of(5) && next > 0 {
            next - 1
        } else {
            next
        };
        let outcome = finish(
            spawn(&pamtester_argv(&host.service, &user.name, None, None)),
            &hotp(secret, counter),
        );
        let ended = if outcome.succeeded() {
            run.next.fetch_max(counter + 1, Ordering::SeqCst);
            Ended::Accepted(counter)
        } else if outcome.failed_with(AUTH_ERR) {
            // Spent, by the other host or by a login whose WAIT came too late.
            let _ =
                run.next
                    .compare_exchange(counter, counter + 1, Ordering::SeqCst, Ordering::SeqCst);
            Ended::Refused
        } else if outcome.failed_with(AUTHINFO_UNAVAIL) {
            Ended::Unavailable
        } else {
            run.odd.lock().unwrap().push(format!("{outcome:?}"));
            continue;
        };
        run.logins
            .lock()
            .unwrap()
            .push((Instant::now(), which, ended));
    }
}

/// Kills the current master and waits until a login is accepted again; returns how long
/// logins were refused after the kill.
fn fail_over(rig: &mut SentinelRig, run: &Run, what: &str) -> Duration {
    let master = rig.server_at(rig.master_port(0).expect("sentinel 0 names a master"));
    rig.wait_for("a login accepted before the kill", || {
        run.accepted_since(Instant::now() - Duration::from_secs(2))
            .is_some()
    });
    let before = run.logins.lock().unwrap().len();
    let killed = Instant::now();
    rig.servers[master].kill();
    rig.wait_for(
        &format!("{what}: a login accepted after the failover"),
        || {
            run.accepted_since(killed + Duration::from_millis(rig.down_after_ms))
                .is_some()
        },
    );
    let back = run.accepted_since(killed).unwrap();
    let refused = run.count_since(killed, &Ended::Unavailable);
    let outage = back - killed;
    println!(
        "fleet sentinel: {what}: master (server {master}) SIGKILLed; logins refused (PAM_AUTHINFO_UNAVAIL) {refused} times; first accepted {} ms after the kill = down-after-milliseconds {} + {} ms; {} logins before the kill",
        outage.as_millis(),
        rig.down_after_ms,
        outage.as_millis().saturating_sub(rig.down_after_ms.into()),
        before
    );
    assert!(
        refused > 0,
        "{what}: no login was refused during the failover"
    );
    let promoted = rig.server_at(rig.master_port(0).unwrap());
    assert_ne!(
        promoted, master,
        "{what}: the sentinels still name the dead master"
    );
    outage
}

#[test]
fn logins_fail_closed_during_failovers_resume_after_promotion_and_no_code_is_accepted_twice() {
    let down_after_ms = 1000;
    let mut rig = SentinelRig::start(down_after_ms);
    let (user, secret) = hotp_user();
    let args = format!(
        "{} redis_replicas=1 max_failures=0 max_failures_user=0",
        rig.module_args()
    );
    let hosts = [Host::new(&args), Host::new(&args)];
    // doctor asks every sentinel and checks the master they name: nothing to report.
    let doctor = doctor_findings(&hosts[0].service.name, &user.name);
    let about_redis: Vec<_> = doctor
        .iter()
        .filter(|(_, id, _)| id.starts_with("redis"))
        .collect();
    assert!(
        about_redis.is_empty(),
        "doctor on the healthy layout: {about_redis:#?}"
    );
    let run = Run {
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        logins: Mutex::new(Vec::new()),
        odd: Mutex::new(Vec::new()),
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (which, host) in hosts.iter().enumerate() {
            let (run, user, secret) = (&run, &user, &secret);
            scope.spawn(move || keep_logging_in(run, host, which, user, secret));
        }
        let finish_run = || run.stop.store(true, Ordering::SeqCst);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rig.wait_for("10 logins accepted before the first failover", || {
                run.count_since(started, &Ended::Accepted(0)) >= 10
            });
            let first = fail_over(&mut rig, &run, "first failover");
            let old = (0..3).find(|&i| !rig.servers[i].is_running()).unwrap();
            let restarted = Instant::now();
            rig.restart_server(old);
            rig.wait_for("the old master demoted to a replica", || {
                rig.role(old) == "slave"
            });
            rig.wait_until_synced(old);
            println!(
                "fleet sentinel: the old master (server {old}) is a replica in sync {} ms after its restart",
                restarted.elapsed().as_millis()
            );
            let rejoined = Instant::now();
            rig.wait_for(
                "logins accepted with the old master back as a replica",
                || {
                    run.accepted_since(rejoined + Duration::from_secs(1))
                        .is_some()
                },
            );
            let second = fail_over(&mut rig, &run, "second failover");
            sleep(Duration::from_secs(1));
            (first, second)
        }));
        finish_run();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });

    let odd = run.odd.lock().unwrap();
    assert!(odd.is_empty(), "logins that ended otherwise: {odd:#?}");
    let logins = run.logins.lock().unwrap();
    let mut accepted: HashMap<u64, Vec<usize>> = HashMap::new();
    for (_, host, ended) in logins.iter() {
        if let Ended::Accepted(counter) = ended {
            accepted.entry(*counter).or_default().push(*host);
        }
    }
    let twice: Vec<_> = accepted
        .iter()
        .filter(|(_, hosts)| hosts.len() > 1)
        .collect();
    assert!(twice.is_empty(), "codes accepted more than once: {twice:?}");
    let count = |wanted: Ended| {
        logins
            .iter()
            .filter(|(_, _, e)| std::mem::discriminant(e) == std::mem::discriminant(&wanted))
            .count()
    };
    println!(
        "fleet sentinel: {} logins in {:?}: {} codes accepted once each, {} refused as used, {} refused while no master answered",
        logins.len(),
        started.elapsed(),
        accepted.len(),
        count(Ended::Refused),
        count(Ended::Unavailable)
    );
    assert!(accepted.len() >= 10, "too few logins got through");
}

/// The layout with one host that has logged in once (HOTP counter 0) through it.
struct OneHost {
    rig: SentinelRig,
    user: TestUser,
    secret: String,
    host: Host,
}

impl OneHost {
    fn start() -> OneHost {
        let rig = SentinelRig::start(1000);
        let (user, secret) = hotp_user();
        let host = Host::new(&format!("{} redis_replicas=1", rig.module_args()));
        let one = OneHost {
            rig,
            user,
            secret,
            host,
        };
        one.login(0).outcome.assert_success("through the sentinels");
        one
    }

    fn login(&self, counter: u64) -> Logged {
        let code = hotp(&self.secret, counter);
        run_logged(&self.host.service, &self.user.name, &code, None)
    }
}

#[test]
fn a_master_the_sentinels_still_name_after_it_became_a_replica_is_refused() {
    let one = OneHost::start();
    let (rig, login) = (&one.rig, |counter| one.login(counter));
    // The master turns replica behind the sentinels' back: they still name it for a while,
    // and only ROLE tells the module it is not the master any more.
    let master = rig.server_at(rig.master_port(0).unwrap());
    let other = rig.servers[(master + 1) % 3].port.to_string();
    assert!(rig
        .server_admin(master, &["REPLICAOF", "127.0.0.1", &other])
        .contains("OK"));
    assert_eq!(rig.role(master), "slave");
    let policy = rig.policy_file(&one.host.state).display().to_string();
    let status = || otp_admin(&["--policy", &policy, "status", &one.user.name]);
    let refused_status = status();
    let demoted = login(1);
    assert_eq!(
        rig.master_port(0),
        Some(rig.servers[master].port),
        "the sentinels moved on before the login: the test proved nothing"
    );
    demoted.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", "is a slave now, not the master"],
        "the named master is a replica",
    );
    println!("named master is a replica: {:?}", demoted.module_lines());
    // otp-admin reaches the record as the module does, and refuses the same master.
    refused_status.assert_refused("otp-admin status, the named master a replica");
    assert!(
        refused_status.stderr.contains("not the master"),
        "{refused_status:#?}"
    );
    assert!(rig
        .server_admin(master, &["REPLICAOF", "NO", "ONE"])
        .contains("OK"));
    rig.wait_until_synced((master + 1) % 3);
    login(1)
        .outcome
        .assert_success("the master is the master again; code 1 was never spent");
    let shown = status();
    shown.assert_ok("otp-admin status through the sentinels");
    assert!(
        shown.stdout.contains("of sentinels 127.0.0.1:"),
        "{shown:#?}"
    );
}

#[test]
fn a_master_without_current_replicas_refuses_and_the_code_stays_unspent() {
    let one = OneHost::start();
    let (rig, login) = (&one.rig, |counter| one.login(counter));
    let master = rig.server_at(rig.master_port(0).unwrap());
    let replicas: Vec<usize> = (0..3).filter(|&i| i != master).collect();
    for &replica in &replicas {
        rig.servers[replica].signal("STOP");
    }
    // min-replicas-max-lag 10 (shipped): after that the master refuses writes (NOREPLICAS).
    rig.wait_for("the master refusing writes", || {
        rig.server_admin(master, &["INFO", "replication"])
            .contains("min_slaves_good_slaves:0")
    });
    let refused = login(1);
    for &replica in &replicas {
        rig.servers[replica].signal("CONT");
    }
    println!(
        "master without current replicas: refused after {:?}: {:?}",
        refused.elapsed,
        refused.module_lines()
    );
    refused
        .outcome
        .assert_failure(AUTHINFO_UNAVAIL, "no current replica");
    refused.assert_logged(&["redis", "NOREPLICAS"], "no current replica");
    for &replica in &replicas {
        rig.wait_until_synced(replica);
    }
    rig.wait_for("the master taking writes again", || {
        !rig.server_admin(master, &["INFO", "replication"])
            .contains("min_slaves_good_slaves:0")
    });
    login(1)
        .outcome
        .assert_success("replicas back: the refused code was never spent");
}
