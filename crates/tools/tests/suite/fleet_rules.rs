//! Fleet mode keeps the file store's rules: the same bounded record (same-file
//! replacement, no eviction of a spent recovery code), no expiry that forgets a lockout,
//! and under contention every guess counted once and every code accepted once. Against a
//! real `redis-server`, two "hosts" (PAM services with their own state directories), codes
//! from `oathtool`, the record read back by the tests' own decoder.

use std::thread::sleep;
use std::time::Duration;

use crate::support::admin::otp_admin;
use crate::support::hostile::run_logged;
use crate::support::redis::{at_once, hotp_user, Host, RedisServer};
use crate::support::secret_store::{StoreSecret, STORE_SECRET};
use crate::support::state_record::StoredState;
use crate::support::{
    hotp, new_secret, pamtester_argv, recovery_hash, spawn, Outcome, Service, TestUser,
    AUTHINFO_UNAVAIL, AUTH_ERR, LOCKED,
};

const DAY: u64 = 86_400;

fn login(service: &Service, user: &TestUser, answer: &str) -> Outcome {
    crate::support::finish(
        spawn(&pamtester_argv(service, &user.name, None, None)),
        answer,
    )
}

fn count(outcomes: &[Outcome], message: &str) -> usize {
    outcomes.iter().filter(|o| o.failed_with(message)).count()
}

/// The enrollment records the fleet keeps for the person: the record's, or in the older
/// format (five hashes), the fingerprints with a last-use field.
fn enrollments_kept(redis: &RedisServer, uid: u32) -> usize {
    if let Some((_, record)) = redis.record(uid) {
        return record.enrollments.len();
    }
    let old = format!("{}{{uid-{uid}}}:enrollments", redis.prefix);
    redis
        .admin(&["HKEYS", &old])
        .lines()
        .filter(|field| field.ends_with(":used"))
        .count()
}

/// Moves every enrollment's last use back by `seconds`, in whichever format the record is.
fn age_enrollments(redis: &RedisServer, uid: u32, seconds: u64) {
    if let Some((_, mut record)) = redis.record(uid) {
        for enrollment in record.enrollments.values_mut() {
            enrollment.last_used -= seconds;
        }
        redis.put_record(uid, &record);
        return;
    }
    let old = format!("{}{{uid-{uid}}}:enrollments", redis.prefix);
    let fields = redis.admin(&["HGETALL", &old]);
    let fields: Vec<&str> = fields.lines().collect();
    for pair in fields.chunks(2) {
        if let [field, value] = pair {
            if field.ends_with(":used") {
                let aged = value.trim().parse::<u64>().unwrap() - seconds;
                redis.admin(&["HSET", &old, field, &aged.to_string()]);
            }
        }
    }
}

/// The keys of the person's record that Redis would drop by itself (with a time to live).
fn expiring_keys(redis: &RedisServer, uid: u32) -> Vec<String> {
    let pattern = format!("{}{{uid-{uid}}}:*", redis.prefix);
    redis
        .admin(&["--scan", "--pattern", &pattern])
        .lines()
        .filter(|key| redis.admin(&["PTTL", key]).trim() != "-1")
        .map(str::to_string)
        .collect()
}

#[test]
fn rewriting_the_users_own_file_keeps_one_record_in_the_fleet() {
    let redis = RedisServer::start();
    let user = TestUser::new();
    let a = Host::new(&redis.socket_args());
    for rewrite in 0..13 {
        let secret = new_secret();
        user.enroll(&format!(
            "version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"
        ));
        login(&a.service, &user, &hotp(&secret, 0))
            .assert_success(&format!("enrollment {rewrite}"));
    }
    // The file store's rule: a new enrollment in the same file replaces the old record.
    assert_eq!(enrollments_kept(&redis, user.uid), 1, "records kept");
}

#[test]
fn a_spent_recovery_code_stays_spent_however_often_the_users_own_file_is_rewritten() {
    let redis = RedisServer::start();
    let user = TestUser::new();
    let code = "fr-recovery-code-1";
    let store_secret = new_secret();
    let _stored = StoreSecret::write(
        &user.name,
        &format!(
            "type = \"hotp\"\nsecret = \"{store_secret}\"\nrecovery_codes = [\"{}\", \"{}\"]\n",
            recovery_hash(code),
            recovery_hash("fr-recovery-code-2")
        ),
    );
    let args = redis.socket_args();
    let a = Host::new(&args);
    let b = Host::new(&args);
    let sudo_on = |host: &Host| Service::otp(&host.state, &format!("{args} {STORE_SECRET}"));
    let (sudo_a, sudo_b) = (sudo_on(&a), sudo_on(&b));
    let spent = login(&sudo_b, &user, code);
    spent.assert_success("the recovery code on host B");
    assert!(spent.stdout.contains("1 recovery code left"), "{spent:?}");
    // The store's enrollment idle for 8 days, then the user's own file rewritten 9 times
    // on host A, each new enrollment used.
    age_enrollments(&redis, user.uid, 8 * DAY);
    for rewrite in 0..9 {
        let secret = new_secret();
        user.enroll(&format!(
            "version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"
        ));
        login(&a.service, &user, &hotp(&secret, 0))
            .assert_success(&format!("home enrollment {rewrite} on A"));
    }
    let again = login(&sudo_a, &user, code);
    again.assert_failure(AUTH_ERR, "the spent recovery code on host A");
    assert!(
        again
            .stderr
            .contains("This recovery code was already used."),
        "{again:?}"
    );
}

#[test]
fn a_lockout_keeps_doubling_however_long_the_record_sits_idle() {
    let redis = RedisServer::start();
    let (user, _) = hotp_user();
    // Every wrong code locks: 1 s, then 2 s, ... (short, so the test can wait them out).
    let args = format!(
        "{} max_failures=1 max_failures_user=0 lockout=1",
        redis.socket_args()
    );
    let a = Host::new(&args);
    let first = login(&a.service, &user, "000000");
    first.assert_failure(AUTH_ERR, "first wrong code");
    assert!(first.stderr.contains("locked for 1 seconds"), "{first:?}");
    // Nothing of the record goes by itself: a key with a time to live would, after some
    // quiet days, and the next lockout would start at 1 s again. Made to expire now.
    let expiring = expiring_keys(&redis, user.uid);
    for key in &expiring {
        redis.admin(&["DEL", key]);
    }
    sleep(Duration::from_millis(2100));
    let second = login(&a.service, &user, "000000");
    second.assert_failure(AUTH_ERR, "second wrong code, after the first lockout");
    assert!(
        second.stderr.contains("locked for 2 seconds"),
        "the lockout did not double (keys that expire: {expiring:?}): {second:?}"
    );
    assert!(
        expiring.is_empty(),
        "keys with a time to live: {expiring:?}"
    );
}

/// The user-wide failure tally in the shared record.
fn user_failures(redis: &RedisServer, user: &TestUser) -> u32 {
    let (_, record): (u64, StoredState) = redis.record(user.uid).expect("a shared record");
    record.all.user.failures
}

#[test]
fn two_hundred_wrong_codes_at_once_from_two_hosts_are_each_counted_once() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let wrong = "000000";
    assert_ne!(hotp(&secret, 0), wrong);
    let off = format!(
        "{} max_failures=0 redis_timeout_ms=20000",
        redis.socket_args()
    );
    let (a, b) = (Host::new(&off), Host::new(&off));
    let outcomes = at_once(&[&a, &b], &user, wrong, 200);
    assert_eq!(count(&outcomes, AUTH_ERR), 200, "{:#?}", outcomes.first());
    assert_eq!(
        user_failures(&redis, &user),
        200,
        "every guess counted once, none lost to a compare-and-set that gave up"
    );
}

#[test]
fn two_hundred_wrong_codes_at_once_are_checked_only_until_the_lock() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // The default limits, but a lockout the test can wait out (long enough to outlast the
    // 200 logins on a busy machine).
    let args = format!("{} lockout=15 redis_timeout_ms=20000", redis.socket_args());
    let (a, b) = (Host::new(&args), Host::new(&args));
    let outcomes = at_once(&[&a, &b], &user, "000000", 200);
    let checked = count(&outcomes, AUTH_ERR);
    let locked = count(&outcomes, LOCKED);
    println!("fleet: 200 wrong codes at once, default limits: {checked} checked, {locked} refused locked");
    assert_eq!(checked, 5, "max_failures (5) checked before the lock");
    assert_eq!(locked, 195, "none checked after the lock");
    let (_, record) = redis.record(user.uid).expect("a shared record");
    let local = &record.all.sources["local"];
    assert_eq!((local.failures, local.lockouts), (0, 1), "{record:?}");
    assert_eq!(record.all.user.failures, 5);
    // Once the lock ends, the owner's right code works.
    let wait = local
        .locked_until
        .saturating_sub(crate::support::now() as u64)
        + 1;
    sleep(Duration::from_secs(wait));
    login(&a.service, &user, &hotp(&secret, 0)).assert_success("the owner after the lock");
}

#[test]
fn two_hundred_logins_at_once_with_one_right_code_succeed_exactly_once() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let args = format!("{} redis_timeout_ms=20000", redis.socket_args());
    let (a, b) = (Host::new(&args), Host::new(&args));
    let outcomes = at_once(&[&a, &b], &user, &hotp(&secret, 0), 200);
    let accepted = outcomes.iter().filter(|o| o.succeeded()).count();
    let replayed = count(&outcomes, AUTH_ERR);
    println!("fleet: 200 logins at once with one code over 2 hosts: {accepted} accepted, {replayed} refused");
    assert_eq!(accepted, 1);
    assert_eq!(
        replayed,
        199,
        "{:#?}",
        outcomes
            .iter()
            .find(|o| !o.succeeded() && !o.failed_with(AUTH_ERR))
    );
    assert_eq!(user_failures(&redis, &user), 0, "replays are not counted");
}

#[test]
fn a_record_of_the_older_format_is_refused_until_otp_admin_reset_replaces_it() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let a = Host::new(&redis.socket_args());
    // What the module before this format left: a user-wide tally in the "person" hash.
    let old = format!("{}{{uid-{}}}:person", redis.prefix, user.uid);
    redis.admin(&["HSET", &old, "user", "3:0:0:1700000000"]);
    let refused = run_logged(&a.service, &user.name, &hotp(&secret, 0), None);
    refused.assert_refused(
        AUTHINFO_UNAVAIL,
        &["format before", "otp-admin reset"],
        "a record of the older format",
    );
    let policy = redis.policy_file(&a.state, "").display().to_string();
    let admin = |command: &str| otp_admin(&["--policy", &policy, command, &user.name]);
    // unlock cannot clear what it cannot read, and says so rather than "no login recorded".
    let unlock = admin("unlock");
    unlock.assert_refused("unlock of a record of the older format");
    for part in ["format before", "otp-admin reset"] {
        assert!(
            unlock.stderr.contains(part),
            "{part:?} missing: {unlock:#?}"
        );
    }
    assert_eq!(
        redis.admin(&["HGET", &old, "user"]).trim(),
        "3:0:0:1700000000",
        "unlock changed the older record"
    );
    let reset = admin("reset");
    reset.assert_ok("reset");
    assert!(reset.stdout.contains("older record format"), "{reset:#?}");
    assert_eq!(redis.admin(&["EXISTS", &old]).trim(), "0");
    login(&a.service, &user, &hotp(&secret, 0)).assert_success("after the reset");
}

#[test]
fn a_ninth_enrollment_used_within_a_week_is_refused_as_on_one_host() {
    let redis = RedisServer::start();
    let user = TestUser::new();
    let args = redis.socket_args();
    let a = Host::new(&args);
    // Nine enrollment files, each used once: eight are remembered, the ninth has no room.
    for i in 0..9 {
        let secret = new_secret();
        let file = format!(".otp-{i}.toml");
        user.write_file(
            &file,
            format!("version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"),
            0o600,
        );
        let service = Service::otp(&a.state, &format!("{args} secret=~/{file}"));
        let outcome = login(&service, &user, &hotp(&secret, 0));
        if i < 8 {
            outcome.assert_success(&format!("enrollment {i}"));
        } else {
            outcome.assert_failure(AUTHINFO_UNAVAIL, "a ninth enrollment");
        }
    }
    assert_eq!(enrollments_kept(&redis, user.uid), 8, "records kept");
}
