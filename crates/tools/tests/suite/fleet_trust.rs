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

/// The number of whole Redis commands (`*N` arrays of `$L` bulk strings) at the start of
/// `bytes`.
fn whole_commands(bytes: &[u8]) -> usize {
    fn line(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&bytes[at..end], end + 2))
    }
    fn number(text: &[u8]) -> Option<usize> {
        std::str::from_utf8(text).ok()?.parse().ok()
    }
    let (mut at, mut commands) = (0, 0);
    while let Some((header, next)) = line(bytes, at) {
        let Some(arguments) = header.strip_prefix(b"*").and_then(number) else {
            break;
        };
        at = next;
        for _ in 0..arguments {
            let Some((length, next)) = line(bytes, at) else {
                return commands;
            };
            let Some(length) = length.strip_prefix(b"$").and_then(number) else {
                return commands;
            };
            at = next + length + 2;
        }
        if at > bytes.len() {
            break;
        }
        commands += 1;
    }
    commands
}

/// A TLS server with the test CA's server certificate that answers the first commands a
/// client sends with `+OK` and then resets the connection, as a Redis server killed with
/// bytes still unread does: the client's next write fails with `EPIPE`. Returns what it
/// was sent.
fn reset_after_first_answer(listener: std::net::TcpListener, pki: &Pki) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let certificates = CertificateDer::pem_file_iter(pki.path("redis.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("redis.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connection = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut received = Vec::new();
    while whole_commands(&received) == 0 {
        let mut buffer = [0u8; 4096];
        match tls.read(&mut buffer) {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let answers = "+OK\r\n".repeat(whole_commands(&received));
    tls.write_all(answers.as_bytes()).unwrap();
    tls.flush().unwrap();
    // Closing with a zero linger time sends a reset instead of an orderly end.
    let reset = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket of ours, and an option value of the size given.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&tls.sock),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&reset as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    received
}

#[test]
fn a_server_that_resets_between_two_commands_refuses_the_login_and_kills_no_program() {
    let redis = RedisServer::start();
    let (user, secret) = hotp_user();
    // Whether the reset arrives before the client's next write is a race the reset wins
    // most times: a few rounds make sure it was won.
    for round in 0..5 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pki = Pki {
            dir: redis.pki.dir.clone(),
        };
        let server = std::thread::spawn(move || reset_after_first_answer(listener, &pki));
        let args = redis.tls_args().replace(
            &format!("127.0.0.1:{}", redis.tls_port),
            &format!("127.0.0.1:{port}"),
        );
        let host = Host::new(&args);

        // pamtester, like sudo and most PAM programs, leaves SIGPIPE at its default: death.
        let run = run_logged(&host.service, &user.name, &hotp(&secret, 0), None);
        let received = server.join().unwrap();
        assert!(
            String::from_utf8_lossy(&received).contains("AUTH"),
            "round {round}: the fake server was not sent AUTH first: {:?}",
            String::from_utf8_lossy(&received)
        );
        assert!(
            run.outcome.status.is_some(),
            "round {round}: the program running the login was killed: {:?}",
            run.outcome
        );
        let what = format!("round {round}: a server that resets between two commands");
        run.outcome.assert_failure(AUTHINFO_UNAVAIL, &what);
        run.assert_logged(&["redis"], &what);
        println!("{what}: {:?}", run.module_lines());
    }

    // Nothing was spent: the same code works against the real server.
    let host = Host::new(&redis.tls_args());
    run_logged(&host.service, &user.name, &hotp(&secret, 0), None)
        .outcome
        .assert_success("the real server after the resets");
}
