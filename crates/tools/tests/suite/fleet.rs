//! Fleet mode (`store = "redis"`) against a real `redis-server` started from the shipped
//! configuration: two "hosts" (PAM services with their own local state directories) share
//! one Redis. A code is accepted once across both, failures add up across both, and an
//! unreachable, frozen or misconfigured Redis refuses the login, quickly.

use std::time::{Duration, Instant};

use crate::support::admin::otp_admin;
use crate::support::hostile::run_logged;
use crate::support::redis::{at_once, hotp_user, Host, RedisServer};
use crate::support::secret_store::{StoreSecret, STORE_SECRET};
use crate::support::state_record::stored_state;
use crate::support::{
    finish, hotp, module_path, new_secret, pamtester_argv, runnable_copy, spawn, Outcome, Service,
    TestUser, AUTHINFO_UNAVAIL, AUTH_ERR, LOCKED, LOCKED_MESSAGE, REPLAY_MESSAGE,
};

fn login(host: &Host, user: &TestUser, answer: &str, rhost: Option<&str>) -> Outcome {
    finish(
        spawn(&pamtester_argv(&host.service, &user.name, None, rhost)),
        answer,
    )
}

#[test]
fn a_code_accepted_on_one_host_is_refused_on_the_other() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!("{} max_failures=2", redis.socket_args());
    let a = Host::new(&args);
    let b = Host::new(&args);
    let first = hotp(&secret, 0);
    login(&a, &user, &first, None).assert_success("counter 0 on host A");
    // Refused everywhere, and never counted: a used code tests no unknown code, so no
    // number of replays locks the user (max_failures=2 here).
    for attempt in 0..3 {
        let what = format!("counter 0 again, attempt {attempt}");
        for (host, name) in [(&b, "B"), (&a, "A")] {
            let again = login(host, &user, &first, None);
            again.assert_failure(AUTH_ERR, &format!("{what} on {name}"));
            // The same words as on a single host.
            assert!(again.stderr.contains(REPLAY_MESSAGE), "{what}: {again:?}");
        }
    }
    // A's floor holds what it accepted; B accepted nothing.
    let floor = stored_state(&a.state.state_file(&user.name)).expect("A's state file");
    assert_eq!(floor.enrollment().unwrap().next_hotp_counter, Some(1));
    login(&b, &user, &hotp(&secret, 1), None).assert_success("counter 1 on host B");
    login(&a, &user, &hotp(&secret, 1), None).assert_failure(AUTH_ERR, "counter 1 on A");
}

/// `logins` pamtesters at once, alternating between the hosts, all with the same code.
fn race(hosts: &[&Host], user: &TestUser, code: &str, logins: usize) -> (usize, usize) {
    let outcomes = at_once(hosts, user, code, logins);
    let successes = outcomes.iter().filter(|o| o.succeeded()).count();
    let refused = outcomes.iter().filter(|o| o.failed_with(AUTH_ERR)).count();
    let odd: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.succeeded() && !o.failed_with(AUTH_ERR))
        .collect();
    assert!(
        odd.is_empty(),
        "logins that neither succeeded nor failed cleanly: {odd:#?}"
    );
    (successes, refused)
}

#[test]
fn concurrent_logins_with_one_code_across_hosts_succeed_exactly_once() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // The default lockout limits: the losers are replays, which are not counted, so
    // hundreds of them lock nobody between rounds.
    let args = format!("{} redis_timeout_ms=20000", redis.socket_args());
    let a = Host::new(&args);
    let b = Host::new(&args);
    for (counter, logins) in [20, 20, 20, 200].into_iter().enumerate() {
        let counter = counter as u64;
        let (successes, refused) = race(&[&a, &b], &user, &hotp(&secret, counter), logins);
        println!("fleet race: {logins} concurrent logins over 2 hosts, one code: {successes} accepted, {refused} refused");
        assert_eq!(successes, 1, "round with counter {counter}");
        assert_eq!(refused, logins - 1);
    }
}

#[test]
fn wrong_codes_alternated_between_hosts_lock_after_max_failures_in_all() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!("{} max_failures=3 lockout=60", redis.socket_args());
    let a = Host::new(&args);
    let b = Host::new(&args);
    let wrong = "000000";
    assert_ne!(hotp(&secret, 0), wrong);
    for (i, host) in [&a, &b, &a].into_iter().enumerate() {
        login(host, &user, wrong, None).assert_failure(AUTH_ERR, &format!("wrong code {i}"));
    }
    // Three in all, over two hosts: locked on both, even for the right code.
    for (name, host) in [("A", &a), ("B", &b)] {
        let locked = login(host, &user, &hotp(&secret, 0), None);
        locked.assert_failure(LOCKED, &format!("right code on {name} while locked"));
        // The same words as on a single host: the wait in words, not a bare number.
        assert!(
            locked.stderr.contains(LOCKED_MESSAGE)
                && locked.stderr.contains(" seconds, or ask an administrator"),
            "{name}: {locked:?}"
        );
        assert!(!locked.prompted("Verification code"), "asked while locked");
    }
}

#[test]
fn a_source_lock_follows_the_source_across_hosts_and_sources_add_up() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!(
        "{} max_failures=2 max_failures_user=5 lockout=60",
        redis.socket_args()
    );
    let a = Host::new(&args);
    let b = Host::new(&args);
    let attacker = Some("192.0.2.66");
    login(&a, &user, "000000", attacker).assert_failure(AUTH_ERR, "first from the attacker");
    login(&b, &user, "000000", attacker).assert_failure(AUTH_ERR, "second, on B");
    login(&b, &user, &hotp(&secret, 0), attacker)
        .assert_failure(LOCKED, "the attacker's source on B, right code");
    login(&a, &user, &hotp(&secret, 0), attacker)
        .assert_failure(LOCKED, "the attacker's source on A, right code");
    // Another source is not locked out by the attacker's tally.
    login(&a, &user, &hotp(&secret, 0), Some("198.51.100.7")).assert_success("another source");
    // IPv6 counts by /64: rotating the interface identifier does not reset the tally.
    login(&a, &user, "000000", Some("2001:db8:5:6::1")).assert_failure(AUTH_ERR, "v6 #1");
    login(&b, &user, "000000", Some("2001:db8:5:6::2")).assert_failure(AUTH_ERR, "v6 #2");
    login(&a, &user, &hotp(&secret, 1), Some("2001:db8:5:6::3"))
        .assert_failure(LOCKED, "same /64, new address");
    // Failures from fresh sources add up to the user-wide ceiling (5), then every source is
    // locked. The success above reset the user-wide tally; two v6 failures count since.
    for (i, source) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let host = if i % 2 == 0 { &a } else { &b };
        login(host, &user, "000000", Some(source)).assert_failure(AUTH_ERR, source);
    }
    login(&b, &user, &hotp(&secret, 1), Some("198.51.100.7"))
        .assert_failure(LOCKED, "user-wide lock, a source that never failed");
}

#[test]
fn a_frozen_or_dead_redis_refuses_within_the_time_budget_and_a_restart_keeps_the_record() {
    let mut redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!(
        "{} max_failures=2 redis_timeout_ms=500",
        redis.socket_args()
    );
    let a = Host::new(&args);
    let b = Host::new(&args);
    login(&a, &user, &hotp(&secret, 0), None).assert_success("counter 0 on A");
    login(&b, &user, "000000", Some("192.0.2.9")).assert_failure(AUTH_ERR, "one");
    login(&a, &user, "000000", Some("192.0.2.9")).assert_failure(AUTH_ERR, "two: locked");

    redis.signal("STOP");
    let frozen = run_logged(&a.service, &user.name, &hotp(&secret, 1), None);
    redis.signal("CONT");
    println!(
        "fleet: redis frozen (SIGSTOP), redis_timeout_ms=500: refused after {:?}",
        frozen.elapsed
    );
    frozen.assert_refused(AUTHINFO_UNAVAIL, &["redis"], "frozen redis");
    assert!(
        frozen.elapsed < Duration::from_millis(3 * 500 + 1500),
        "a frozen Redis took {:?} to refuse (budget about 3 x 500 ms)",
        frozen.elapsed
    );

    redis.kill();
    let dead = run_logged(&b.service, &user.name, &hotp(&secret, 1), None);
    println!("fleet: redis killed: refused after {:?}", dead.elapsed);
    dead.assert_refused(AUTHINFO_UNAVAIL, &["redis", "cannot connect"], "dead redis");
    assert!(
        dead.elapsed < Duration::from_millis(1500),
        "{:?}",
        dead.elapsed
    );

    // SIGKILL lost nothing: appendfsync always, and the shipped ACL keeps the scripted
    // writes when the append-only file is read back.
    redis.restart();
    assert!(
        !redis.log().contains("NOPERM"),
        "the AOF was not replayed whole:\n{}",
        redis.log()
    );
    login(&b, &user, &hotp(&secret, 0), None)
        .assert_failure(AUTH_ERR, "counter 0 on B after the restart");
    login(&b, &user, &hotp(&secret, 1), Some("192.0.2.9"))
        .assert_failure(LOCKED, "the locked source after the restart");
    login(&b, &user, &hotp(&secret, 1), None).assert_success("counter 1 on B");
}

#[test]
fn tls_with_client_certificate_and_acl_user_works_and_every_misconfiguration_refuses() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let a = Host::new(&redis.tls_args());
    let b = Host::new(&redis.tls_args());
    login(&a, &user, &hotp(&secret, 0), None).assert_success("TLS, host A");
    login(&b, &user, &hotp(&secret, 0), None).assert_failure(AUTH_ERR, "TLS replay on B");

    redis.pki.make_ca("other");
    let wrong_password = redis.dir.join("wrong-password");
    std::fs::write(&wrong_password, "not-the-password\n").unwrap();
    std::fs::set_permissions(
        &wrong_password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let tls = redis.tls_args();
    let without_client_cert: String = tls
        .split(' ')
        .filter(|a| !a.starts_with("redis_cert_file") && !a.starts_with("redis_key_file"))
        .collect::<Vec<_>>()
        .join(" ");
    let cases = [
        (
            "wrong CA",
            tls.replace("ca.crt", "other.crt"),
            "invalid peer certificate",
        ),
        ("no client certificate", without_client_cert, "redis"),
        (
            "wrong password",
            tls.replace(
                &redis.password_file.display().to_string(),
                &wrong_password.display().to_string(),
            ),
            "redis",
        ),
        (
            "unknown ACL user",
            tls.replace("redis_user=pamotp", "redis_user=nobody"),
            "redis",
        ),
    ];
    for (what, args, needle) in cases {
        let host = Host::new(&args);
        let started = Instant::now();
        let run = run_logged(&host.service, &user.name, &hotp(&secret, 1), None);
        println!("fleet: {what}: refused after {:?}", started.elapsed());
        run.assert_refused(AUTHINFO_UNAVAIL, &["redis", needle], what);
        assert!(
            run.elapsed < Duration::from_secs(3),
            "{what}: {:?}",
            run.elapsed
        );
    }
    // None of them spent the code.
    login(&a, &user, &hotp(&secret, 1), None).assert_success("counter 1 after the refusals");
}

#[test]
fn a_lossy_failover_cannot_make_a_host_accept_its_own_code_again() {
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(&primary);
    let (user, secret) = hotp_user();
    let mut a = Host::new(&primary.socket_args());
    let mut b = Host::new(&primary.socket_args());
    // The replica is promoted before it has the next write: the failover loses it.
    assert!(replica.admin(&["REPLICAOF", "NO", "ONE"]).contains("OK"));
    let code = hotp(&secret, 0);
    login(&a, &user, &code, None).assert_success("counter 0 on A, before the failover");
    let on_replica = replica
        .socket_args()
        .replace(&replica.prefix, &primary.prefix);
    a.reconfigure(&on_replica);
    b.reconfigure(&on_replica);
    // The promoted replica never saw counter 0; A's floor did.
    login(&a, &user, &code, None).assert_failure(AUTH_ERR, "counter 0 on A after the failover");
    // What a lossy failover can lose, and the documented limit: a host that never saw the
    // code accepts it once more. redis_replicas (below) is what closes that gap.
    login(&b, &user, &code, None).assert_success("counter 0 on B after a lossy failover");
}

#[test]
fn redis_replicas_refuses_when_the_replica_does_not_acknowledge() {
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(&primary);
    let (user, secret) = hotp_user();
    let args = format!(
        "{} redis_replicas=1 redis_timeout_ms=500",
        primary.socket_args()
    );
    let a = Host::new(&args);
    login(&a, &user, &hotp(&secret, 0), None).assert_success("replica acknowledges");
    replica.signal("STOP");
    let unacknowledged = run_logged(&a.service, &user.name, &hotp(&secret, 1), None);
    replica.signal("CONT");
    unacknowledged
        .outcome
        .assert_failure(AUTHINFO_UNAVAIL, "replica frozen");
    unacknowledged.assert_logged(&["redis", "0 of 1 replicas"], "replica frozen");
    println!(
        "fleet: replica frozen, redis_replicas=1: refused after {:?}",
        unacknowledged.elapsed
    );
    login(&a, &user, &hotp(&secret, 2), None).assert_success("replica back");
}

#[test]
fn the_shipped_acl_user_reaches_only_its_prefix_and_commands() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let a = Host::new(&redis.socket_args());
    login(&a, &user, &hotp(&secret, 0), None).assert_success("the shipped ACL suffices");
    // The module's user cannot read or write other keys, nor run anything else.
    for command in [
        &["SET", "other-key", "x"][..],
        &["GET", "other-key"],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "*"],
        &["EVAL", "return 1", "0"],
    ] {
        let out = redis.cli(command);
        assert!(out.contains("NOPERM"), "{command:?} was allowed: {out}");
    }
    // A prefix outside the ACL's key pattern is refused by Redis, so the login is too.
    let elsewhere = redis.socket_args().replace(&redis.prefix, "not-pam-otp:");
    let b = Host::new(&elsewhere);
    let run = run_logged(&b.service, &user.name, &hotp(&secret, 1), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", "NoPerm"],
        "key outside the ACL",
    );
}

#[test]
fn otp_admin_shows_unlocks_and_resets_the_shared_record() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!("{} max_failures=2", redis.socket_args());
    let a = Host::new(&args);
    let b = Host::new(&args);
    let policy = redis.policy_file(&a.state, "max_failures = 2\n");
    let policy = policy.display().to_string();
    let admin = |args: &[&str]| {
        let mut all = vec!["--policy", policy.as_str()];
        all.extend_from_slice(args);
        otp_admin(&all)
    };
    let attacker = Some("192.0.2.5");
    login(&a, &user, "000000", attacker).assert_failure(AUTH_ERR, "one");
    login(&b, &user, "000000", attacker).assert_failure(AUTH_ERR, "two: locked");

    let status = admin(&["status", &user.name]);
    status.assert_ok("status");
    // The words of the file store's status, from the same state.
    assert!(
        status.stdout.contains("locked source:") && status.stdout.contains("192.0.2.5 until"),
        "{status:#?}"
    );
    assert!(status.stdout.contains(" 2 of 20 (policy"), "{status:#?}");
    assert!(!status.stdout.contains("guard:"), "{status:#?}");
    let json = admin(&["status", "--json", &user.name]);
    json.assert_ok("status --json");
    let json = json.json();
    assert_eq!(json["store"], "redis");
    let sources = json["sources"].as_array().unwrap();
    assert!(
        sources
            .iter()
            .any(|s| s["source"] == "192.0.2.5" && s["locked"] == true),
        "{json:#}"
    );
    assert_eq!(json["failures"], 2);

    admin(&["unlock", &user.name, "--source", "192.0.2.5"]).assert_ok("unlock the source");
    login(&b, &user, &hotp(&secret, 0), attacker).assert_success("the source after unlock");

    // reset drops the record and this host's (A's) floor: counter 0, accepted on B, stays
    // refused on B by B's floor, and works once more on A, which never accepted it.
    let reset = admin(&["reset", &user.name]);
    reset.assert_ok("reset");
    assert!(reset.stdout.contains("WARNING"), "{reset:#?}");
    let status = admin(&["status", &user.name]);
    assert!(status.stdout.contains("no login recorded"), "{status:#?}");
    login(&b, &user, &hotp(&secret, 0), None).assert_failure(AUTH_ERR, "B's floor is B's");
    login(&a, &user, &hotp(&secret, 0), None).assert_success("A after the reset");
}

#[test]
fn without_the_client_object_next_to_the_module_fleet_mode_refuses_and_says_why() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // The module alone in a directory of its own: no pam_otp_redis.so beside it.
    let alone = runnable_copy(&module_path(), "tf-alone");
    let state = crate::support::StateDir::new();
    let service = Service::with_lines(&[format!(
        "auth required {} state_dir={} policy={} {}",
        alone.display(),
        state.path.display(),
        state.policy.display(),
        redis.socket_args()
    )]);
    let run = run_logged(&service, &user.name, &hotp(&secret, 0), None);
    let _ = std::fs::remove_dir_all(alone.parent().unwrap());
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", "needs pam_otp_redis.so next to pam_otp.so"],
        "no client object",
    );
}

#[test]
fn sources_beyond_the_32_remembered_cannot_flush_a_lock() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // Each failure locks its source; no user-wide ceiling, so the overflow rule shows.
    let args = format!(
        "{} max_failures=1 max_failures_user=0 lockout=600",
        redis.socket_args()
    );
    let a = Host::new(&args);
    let b = Host::new(&args);
    for i in 0..32 {
        let host = if i % 2 == 0 { &a } else { &b };
        let source = format!("198.18.0.{i}");
        login(host, &user, "000000", Some(&source)).assert_failure(AUTH_ERR, &source);
    }
    // Every remembered source is locked: a 33rd is not remembered (no lock is forgotten
    // to make room) and counts with the other newcomers, which then share one lockout.
    login(&a, &user, "000000", Some("198.18.1.1")).assert_failure(AUTH_ERR, "33rd source");
    login(&b, &user, &hotp(&secret, 0), Some("198.18.1.2")).assert_failure(
        LOCKED,
        "a 34th source, right code, after the newcomers' lockout",
    );
    login(&b, &user, &hotp(&secret, 0), Some("198.18.0.0"))
        .assert_failure(LOCKED, "the first source is still locked");
    let (_, record) = redis.record(user.uid).expect("a shared record");
    assert_eq!(record.all.sources.len(), 32, "sources remembered");
}

#[test]
fn try_first_pass_counts_a_code_shaped_password_once_in_the_shared_record() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let password = "482913";
    assert_ne!(hotp(&secret, 0), password);
    let out =
        crate::support::user_db_with_input(&["chpasswd"], &format!("{}:{password}\n", user.name));
    assert!(out.status.success(), "chpasswd failed");
    let state = crate::support::StateDir::new();
    let service = Service::with_lines(&[
        "auth requisite pam_unix.so".to_string(),
        crate::support::otp_line(&state, &format!("{} try_first_pass", redis.socket_args())),
    ]);
    let host = Host { state, service };
    let policy = redis.policy_file(&host.state, "");
    let failures = || {
        let status = otp_admin(&[
            "--policy",
            &policy.display().to_string(),
            "status",
            "--json",
            &user.name,
        ]);
        status.assert_ok("status --json");
        status.json()["failures"].clone()
    };
    // The password was tried as a code and missed (one failure), then the code was asked.
    let wrong = login(&host, &user, &format!("{password}\n000000"), None);
    wrong.assert_failure(AUTH_ERR, "password, then a wrong code");
    assert!(wrong.prompted("Verification code: "), "{wrong:?}");
    assert_eq!(failures(), 2, "both answers were checked and counted");
    let right = login(
        &host,
        &user,
        &format!("{password}\n{}", hotp(&secret, 0)),
        None,
    );
    right.assert_success("password, then the right code");
    assert_eq!(failures(), 0, "the success cleared the user-wide tally");
}

#[test]
fn a_success_with_the_users_own_file_does_not_reset_the_stores_lockout_in_the_shared_record() {
    // As on one host: wrong guesses at the store's code, a right code from the user's own
    // file (which malware running as the user can write) after every two, over Redis.
    let redis = RedisServer::start();
    let (user, home_secret) = hotp_user();
    let store_secret = new_secret();
    let _stored = StoreSecret::write(
        &user.name,
        &format!("type = \"hotp\"\nsecret = \"{store_secret}\"\n"),
    );
    let args = format!("{} max_failures=3 lockout=60", redis.socket_args());
    let home = Host::new(&args);
    let store = Service::otp(&home.state, &format!("{args} {STORE_SECRET}"));
    let wrong = "000000";
    assert_ne!(hotp(&store_secret, 0), wrong);
    let mut counter = 0;
    for round in 1..=3 {
        for guess in 1..=2 {
            let out = finish(
                spawn(&pamtester_argv(&store, &user.name, None, None)),
                wrong,
            );
            assert!(
                out.failed_with(AUTH_ERR) || out.failed_with(LOCKED),
                "round {round}, wrong store code {guess}: {out:?}"
            );
        }
        login(&home, &user, &hotp(&home_secret, counter), None)
            .assert_success(&format!("round {round}, the user's own file"));
        counter += 1;
    }
    let locked = finish(
        spawn(&pamtester_argv(&store, &user.name, None, None)),
        &hotp(&store_secret, 0),
    );
    locked.assert_failure(
        LOCKED,
        "the right store code while the store's lockout holds",
    );
    login(&home, &user, &hotp(&home_secret, counter), None)
        .assert_success("the user's own file after the store locked");
}
