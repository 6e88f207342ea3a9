//! Fleet mode trusts only the real server: a unix socket somewhere a user could have put
//! it, plain TCP off this machine, or a squatter on the TLS port gets nothing from the
//! module (not even `AUTH` with the root-only password), and the login is refused with a
//! log line saying why.

use std::os::unix::fs::PermissionsExt;

use crate::support::hostile::run_logged;
use std::time::Duration;

use crate::support::redis::{
    doctor_findings, finding, hotp_user, wait_until, FakeServer, Host, Pki, RedisServer,
    REDIS_SERVER,
};
use crate::support::{free_port, hotp, scratch_path, unique, AUTHINFO_UNAVAIL, SERVICE_ERR};

/// The module line of `redis` with its socket replaced by `socket`.
fn args_with_socket(redis: &RedisServer, socket: &std::path::Path) -> String {
    redis.socket_args().replace(
        &redis.socket.display().to_string(),
        &socket.display().to_string(),
    )
}

#[test]
fn a_socket_a_user_could_have_put_there_gets_not_a_byte() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    let (attacker, _) = hotp_user();

    // The repro: the attacker's own directory, the attacker's socket.
    let theirs = scratch_path("tt-user-dir");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(attacker.uid), Some(attacker.gid)).unwrap();
    let in_their_dir = theirs.join("redis.sock");
    let fake = FakeServer::unix(&in_their_dir);
    std::os::unix::fs::chown(&in_their_dir, Some(attacker.uid), Some(attacker.gid)).unwrap();
    let host = Host::new(&args_with_socket(&redis, &in_their_dir));
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    let (connections, bytes) = fake.received();
    assert_eq!(
        (connections, bytes.len()),
        (0, 0),
        "the fake server heard from the module: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            "redis",
            "not trusted, nothing sent",
            &theirs.display().to_string(),
        ],
        "socket in a user's directory",
    );
    println!("socket in a user's directory: {:?}", run.module_lines());

    // A root-owned directory that others may write to.
    let shared = scratch_path("tt-shared-dir");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let in_shared = shared.join("redis.sock");
    let fake_shared = FakeServer::unix(&in_shared);
    let host = Host::new(&args_with_socket(&redis, &in_shared));
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", "not trusted, nothing sent", "writable"],
        "socket in a world-writable directory",
    );
    assert_eq!(fake_shared.received(), (0, vec![]));

    // A root-only directory, but the socket is the user's (put there by a careless chown).
    let root_only = scratch_path("tt-root-dir");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o755)).unwrap();
    let users_socket = root_only.join("redis.sock");
    let fake_owned = FakeServer::unix(&users_socket);
    std::os::unix::fs::chown(&users_socket, Some(attacker.uid), None).unwrap();
    let host = Host::new(&args_with_socket(&redis, &users_socket));
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            "redis",
            "not trusted, nothing sent",
            &format!("uid {}", attacker.uid),
        ],
        "a user's socket in a root-only directory",
    );
    assert_eq!(fake_owned.received(), (0, vec![]));

    // Everything on the path root's, but the process listening is the user's: a Redis the
    // user started, whose socket root then moved into a root-only directory and chowned
    // (standing in for a stale path taken over). Only SO_PEERCRED tells.
    // In the user's home: the scratch directories are root's, 0700.
    let users_redis_dir = attacker.home.join("redis");
    std::fs::create_dir(&users_redis_dir).unwrap();
    std::os::unix::fs::chown(&users_redis_dir, Some(attacker.uid), Some(attacker.gid)).unwrap();
    let users_redis_socket = users_redis_dir.join("redis.sock");
    let mut users_redis = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &attacker.uid.to_string(),
            "--regid",
            &attacker.gid.to_string(),
        ])
        .args([
            "--clear-groups",
            "--",
            REDIS_SERVER,
            "--port",
            "0",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--unixsocket"])
        .arg(&users_redis_socket)
        .arg("--dir")
        .arg(&users_redis_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let users_redis_cli = |socket: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .arg("-s")
            .arg(socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(
        "the user's redis-server",
        Duration::from_secs(20),
        || users_redis_cli(&users_redis_socket, &["PING"]).trim() == "PONG",
        String::new,
    );
    // A root-only directory on the same file system as the home, to move the socket into.
    let beside_home = attacker.home.parent().unwrap().join(unique("tt-root"));
    std::fs::create_dir(&beside_home).unwrap();
    std::fs::set_permissions(&beside_home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let moved = beside_home.join("moved.sock");
    std::fs::rename(&users_redis_socket, &moved).unwrap();
    std::os::unix::fs::chown(&moved, Some(0), Some(0)).unwrap();
    let host = Host::new(&args_with_socket(&redis, &moved));
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    let stats = users_redis_cli(&moved, &["INFO", "commandstats"]);
    let _ = users_redis.kill();
    let _ = users_redis.wait();
    assert!(
        !stats.contains("cmdstat_auth") && !stats.contains("cmdstat_evalsha"),
        "the user's redis-server was sent commands: {stats}"
    );
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &[
            "redis",
            "not trusted, nothing sent",
            &format!("runs as uid {}", attacker.uid),
        ],
        "a root-owned socket a user's process listens on",
    );

    // The real server's socket still works, and none of the refusals spent the code.
    let host = Host::new(&redis.socket_args());
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    run.outcome.assert_success("the real server's socket");
    for dir in [theirs, shared, root_only, users_redis_dir, beside_home] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn plain_tcp_off_this_machine_is_refused_by_the_policy_before_connecting() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // 0.0.0.0 reaches this machine's listeners, but it is not a loopback address: the
    // policy must refuse it before anything connects.
    let port = free_port();
    let fake = FakeServer::tcp(&format!("0.0.0.0:{port}"));
    let args = redis.socket_args().replace(
        &format!("redis_url=unix://{}", redis.socket.display()),
        &format!("redis_url=redis://0.0.0.0:{port}"),
    );
    let host = Host::new(&args);
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    run.outcome
        .assert_failure(SERVICE_ERR, "plain TCP to 0.0.0.0");
    run.assert_logged(
        &["redis_url", "plain TCP", "127.0.0.1"],
        "plain TCP to 0.0.0.0",
    );
    assert_eq!(
        fake.received(),
        (0, vec![]),
        "the listener heard from the module"
    );
}

#[test]
fn a_squatter_on_the_tls_port_gets_a_tls_hello_and_no_password() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // Redis is down (or elsewhere) and a local user listens on its TLS port without TLS.
    let port = free_port();
    let squatter = FakeServer::tcp(&format!("127.0.0.1:{port}"));
    let args = redis
        .tls_args()
        .replace(&format!(":{}", redis.tls_port), &format!(":{port}"));
    let host = Host::new(&format!("{args} redis_timeout_ms=300"));
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    println!("squatted TLS port: {:?}", run.module_lines());
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", &port.to_string()],
        "squatted TLS port",
    );
    let (connections, bytes) = squatter.received();
    assert_eq!(connections, 1, "the module did not try the port");
    // A TLS record (0x16: handshake) and nothing readable: no AUTH, no password.
    assert_eq!(bytes.first(), Some(&0x16), "not a TLS hello: {bytes:?}");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(&redis.password) && !text.to_ascii_uppercase().contains("AUTH"),
        "the squatter read the credentials: {text:?}"
    );
}

#[test]
fn a_client_certificate_the_server_refuses_is_named_in_the_log() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // A client certificate from another CA (made by the same shipped script).
    let other = Pki::new(&redis.dir.join("other-ca"));
    let stranger = other.path("client.crt").display().to_string();
    let args = redis
        .tls_args()
        .replace(
            &redis.pki.path("client.crt").display().to_string(),
            &stranger,
        )
        .replace(
            &redis.pki.path("client.key").display().to_string(),
            &other.path("client.key").display().to_string(),
        );
    let host = Host::new(&args);
    let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
    println!("refused client certificate: {:?}", run.module_lines());
    run.assert_refused(
        AUTHINFO_UNAVAIL,
        &["redis", &format!("redis_cert_file={stranger}")],
        "client certificate of another CA",
    );
}

#[test]
fn doctor_reports_untrusted_sockets_unusable_sentinels_and_plain_tcp() {
    let redis = RedisServer::start();
    let (user, _) = hotp_user();
    let redis_findings = |args: &str| {
        let host = Host::new(args);
        let found = doctor_findings(&host.service.name, &user.name);
        found
            .into_iter()
            .filter(|(_, id, message)| id.starts_with("redis") || message.contains("redis"))
            .collect::<Vec<_>>()
    };

    let clean = redis_findings(&redis.socket_args());
    assert!(clean.is_empty(), "the real server's socket: {clean:#?}");

    let theirs = scratch_path("tt-doctor-dir");
    std::fs::create_dir(&theirs).unwrap();
    let (attacker, _) = hotp_user();
    std::os::unix::fs::chown(&theirs, Some(attacker.uid), None).unwrap();
    let socket = theirs.join("redis.sock");
    let fake = FakeServer::unix(&socket);
    let found = redis_findings(&args_with_socket(&redis, &socket));
    let (severity, _, message) = finding(&found, "redis-unusable", "socket in a user's directory");
    assert_eq!(severity, "error");
    assert!(message.contains("not trusted") && message.contains(&theirs.display().to_string()));
    assert_eq!(
        fake.received(),
        (0, vec![]),
        "doctor sent something to the fake server"
    );

    let plain = redis.socket_args().replace(
        &format!("redis_url=unix://{}", redis.socket.display()),
        "redis_url=redis://127.0.0.1:1",
    );
    let found = redis_findings(&plain);
    assert_eq!(
        finding(&found, "redis-plain-tcp", "loopback TCP").0,
        "warning"
    );
    finding(&found, "redis-unusable", "nothing listens on port 1");

    let remote = plain.replace("127.0.0.1:1", "192.0.2.1:6379");
    let found = redis_findings(&remote);
    let (severity, _, message) =
        finding(&found, "otp-settings-refused", "plain TCP off the machine");
    assert_eq!(severity, "error");
    assert!(message.contains("plain TCP"), "{message}");

    // Sentinels: one that is no sentinel (the server itself), one where nothing listens.
    let tls = redis.tls_args();
    let through_sentinels = tls.replace(
        &format!("redis_url=rediss://127.0.0.1:{}", redis.tls_port),
        &format!(
            "redis_sentinels=127.0.0.1:{},127.0.0.1:{} redis_master=pam-otp",
            redis.tls_port,
            free_port()
        ),
    );
    let found = redis_findings(&through_sentinels);
    let sentinels: Vec<_> = found
        .iter()
        .filter(|(s, id, _)| id == "redis-sentinel-unusable" && s == "error")
        .collect();
    assert_eq!(sentinels.len(), 2, "{found:#?}");
    let _ = std::fs::remove_dir_all(theirs);
}
