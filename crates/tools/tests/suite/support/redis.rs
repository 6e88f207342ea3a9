//! Helpers for the fleet tests: a real `redis-server` started from the shipped
//! `config/redis/pam-otp.conf` (TLS with a private CA and client certificates, the ACL
//! user, the append-only file), stopped, frozen and restarted by pid; certificates made
//! with `openssl`; and "hosts", each a PAM service with its own local state directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::clients::{self, read_shipped, require_program, shipped};
use crate::support::state_record::{decode_state, encode_state, StoredState};
use crate::support::{
    assert_root, free_port, hex, new_secret, pamtester_argv, random_bytes, scratch_path, spawn,
    unique, Outcome, Service, StateDir, TestUser,
};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// The ACL user of the shipped configuration.
pub const ACL_USER: &str = "pamotp";

pub fn checked(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    String::from_utf8_lossy(&clients::checked(what, out).stdout).into_owned()
}

/// `redis-cli` reaching a server by `connection` (`-s SOCKET`, or TLS options), as `user`;
/// its output, errors included.
pub fn redis_cli(connection: &[&str], user: &str, password: &str, args: &[&str]) -> String {
    let out = Command::new(REDIS_CLI)
        .args(connection)
        .args(["--user", user, "--pass", password, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Polls `ready` every 50 ms for up to `limit`, then fails showing `logs()`.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "{what}: not after {limit:?}; logs:\n{}",
            logs()
        );
        sleep(Duration::from_millis(50));
    }
}

/// The SHA-256 of `text` in hex, as ACL lines take a password (`#HASH`).
pub fn sha256_hex(text: &str) -> String {
    let out = checked(
        "sha256sum",
        Command::new("sh").args(["-c", &format!("printf %s '{text}' | sha256sum")]),
    );
    out.split_whitespace().next().unwrap().to_string()
}

/// A private CA and certificates it signs, made by the shipped
/// `config/redis/make-certs.sh` (the commands README gives an administrator), so that
/// every fleet test also proves those certificates work.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A CA (`ca.crt`), a server certificate for localhost/127.0.0.1 (`redis.crt`), and a
    /// client certificate (`client.crt`, `client.key`, the key root-only as the module wants).
    pub fn new(dir: &Path) -> Pki {
        require_program("/usr/bin/openssl", "openssl");
        let pki = Pki { dir: dir.into() };
        let script = shipped("redis/make-certs.sh");
        let dir_arg = dir.display().to_string();
        for args in [
            &["ca", &dir_arg][..],
            &["server", &dir_arg, "redis", "DNS:localhost", "IP:127.0.0.1"],
            &["client", &dir_arg, "client"],
        ] {
            checked(
                "config/redis/make-certs.sh",
                Command::new("sh").arg(&script).args(args),
            );
        }
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) {
        checked(
            "openssl",
            Command::new("openssl").args(args).current_dir(&self.dir),
        );
    }

    fn key(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ]);
        fs::set_permissions(
            self.path(&format!("{name}.key")),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }

    /// Another CA, `NAME.crt`, that signed nothing the server shows.
    pub fn make_ca(&self, name: &str) {
        self.key(name);
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN=pam-otp test {name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.crt"),
        ]);
    }
}

/// How a test's server is reached and what it keeps.
pub struct RedisServer {
    /// Holds the configuration, certificates, data, logs and sockets (root, 0700).
    pub dir: PathBuf,
    pub pki: Pki,
    pub tls_port: u16,
    pub socket: PathBuf,
    /// The ACL user's password and the root-only file (0600) the module reads it from.
    pub password: String,
    pub password_file: PathBuf,
    /// The key prefix this test's hosts use (the ACL allows `pam-otp:*`).
    pub prefix: String,
    child: Option<Child>,
    /// `--replicaof 127.0.0.1 <port>` arguments when this is a replica.
    replica_of: Option<u16>,
}

impl RedisServer {
    /// Starts a server from the shipped configuration, with a unix socket added.
    pub fn start() -> RedisServer {
        RedisServer::start_inner(None)
    }

    /// Starts a replica of `primary`, with the same certificates and password.
    pub fn start_replica_of(primary: &RedisServer) -> RedisServer {
        let replica = RedisServer::start_inner(Some(primary));
        replica.wait_until_synced();
        replica
    }

    fn start_inner(primary: Option<&RedisServer>) -> RedisServer {
        assert_root();
        require_program(REDIS_SERVER, "redis-server");
        let dir = scratch_path("tf-redis");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir(dir.join("data")).unwrap();
        let (pki, password) = match primary {
            Some(p) => {
                for file in [
                    "ca.crt",
                    "redis.crt",
                    "redis.key",
                    "client.crt",
                    "client.key",
                ] {
                    fs::copy(p.pki.path(file), dir.join(file)).unwrap();
                }
                (Pki { dir: dir.clone() }, p.password.clone())
            }
            None => (Pki::new(&dir), hex(&random_bytes(16))),
        };
        let password_file = dir.join("password");
        fs::write(&password_file, format!("{password}\n")).unwrap();
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
        let mut server = RedisServer {
            socket: dir.join("redis.sock"),
            pki,
            tls_port: free_port(),
            password,
            password_file,
            prefix: format!("pam-otp:{}:", unique("tf")),
            child: None,
            replica_of: primary.map(|p| p.tls_port),
            dir,
        };
        server.write_config();
        server.launch();
        server
    }

    /// The shipped configuration with this test's paths, port and password put in.
    fn write_config(&self) {
        let shipped_text = read_shipped("redis/pam-otp.conf");
        // Without `dir`, Redis writes its append-only file wherever it was started.
        assert!(
            shipped_text.contains("\ndir /var/lib/redis/pam-otp\n"),
            "config/redis/pam-otp.conf names no data directory"
        );
        let mut text = shipped_text
            .replace("PASSWORD_SHA256", &sha256_hex(&self.password))
            .replace("tls-port 6380", &format!("tls-port {}", self.tls_port))
            .replace("bind 0.0.0.0 -::*", "bind 127.0.0.1")
            .replace(
                "/etc/redis/tls/redis.crt",
                &self.pki.path("redis.crt").display().to_string(),
            )
            .replace(
                "/etc/redis/tls/redis.key",
                &self.pki.path("redis.key").display().to_string(),
            )
            .replace(
                "/etc/redis/tls/ca.crt",
                &self.pki.path("ca.crt").display().to_string(),
            )
            .replace(
                "dir /var/lib/redis/pam-otp",
                &format!("dir {}", self.dir.join("data").display()),
            );
        text.push_str(&format!(
            "\n# added by the tests\nunixsocket {}\nunixsocketperm 700\nlogfile {}\npidfile {}\ndaemonize no\nuser admin on >{} ~* &* +@all\n",
            self.socket.display(),
            self.dir.join("redis.log").display(),
            self.dir.join("redis.pid").display(),
            self.password,
        ));
        if let Some(port) = self.replica_of {
            text.push_str(&format!(
                "replicaof 127.0.0.1 {port}\nmasteruser admin\nmasterauth {}\ntls-client-cert-file {}\ntls-client-key-file {}\n",
                self.password,
                self.pki.path("client.crt").display(),
                self.pki.path("client.key").display()
            ));
        }
        fs::write(self.dir.join("redis.conf"), text).unwrap();
    }

    fn launch(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .arg(self.dir.join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_until(
            "redis-server up",
            Duration::from_secs(20),
            || self.admin(&["PING"]).trim() == "PONG",
            || self.log(),
        );
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// `redis-cli` over the unix socket as the ACL user; its output (errors included).
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_as(ACL_USER, args)
    }

    /// `redis-cli` as the tests' administrator (`admin`, all commands; the shipped file has
    /// no such user), for what the module's user may not do: INFO, REPLICAOF, PING.
    pub fn admin(&self, args: &[&str]) -> String {
        self.cli_as("admin", args)
    }

    fn cli_as(&self, user: &str, args: &[&str]) -> String {
        let socket = self.socket.display().to_string();
        redis_cli(&["-s", &socket], user, &self.password, args)
    }

    /// `redis-cli --raw` as the administrator: the reply's bytes as they are.
    fn admin_raw(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new(REDIS_CLI)
            .arg("-s")
            .arg(&self.socket)
            .args([
                "--user",
                "admin",
                "--pass",
                &self.password,
                "--no-auth-warning",
                "--raw",
            ])
            .args(if input.is_some() {
                &["-x"][..]
            } else {
                &[][..]
            })
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.unwrap_or_default()).unwrap();
        }
        let out = child.wait_with_output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        out.stdout
    }

    /// The key of the shared record of the person with `uid`.
    pub fn record_key(&self, uid: u32) -> String {
        format!("{}{{uid-{uid}}}:record", self.prefix)
    }

    /// The person's shared record, read and decoded by the tests' own code: its version
    /// and state; `None` if there is none.
    pub fn record(&self, uid: u32) -> Option<(u64, StoredState)> {
        let key = self.record_key(uid);
        let version = self.admin(&["HGET", &key, "version"]);
        let version: u64 = version.trim().parse().ok()?;
        let mut bytes = self.admin_raw(&["HGET", &key, "state"], None);
        assert_eq!(
            bytes.pop(),
            Some(b'\n'),
            "redis-cli --raw ends with a newline"
        );
        Some((version, decode_state(&bytes).expect("the record decodes")))
    }

    /// Replaces the person's shared record by `state`, as a host's write does (a newer
    /// version).
    pub fn put_record(&self, uid: u32, state: &StoredState) {
        let key = self.record_key(uid);
        self.admin_raw(&["HSET", &key, "state"], Some(&encode_state(state)));
        assert!(!self
            .admin(&["HINCRBY", &key, "version", "1"])
            .contains("ERR"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn signal(&self, signal: &str) {
        checked(
            "kill",
            Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]),
        );
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same configuration and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn wait_until_synced(&self) {
        wait_until(
            "replica in sync",
            Duration::from_secs(20),
            || {
                self.admin(&["INFO", "replication"])
                    .contains("master_link_status:up")
            },
            || self.log(),
        );
    }

    /// Module arguments that reach this server over its unix socket.
    pub fn socket_args(&self) -> String {
        format!(
            "store=redis redis_url=unix://{} redis_user={ACL_USER} redis_password_file={} redis_prefix={}",
            self.socket.display(),
            self.password_file.display(),
            self.prefix
        )
    }

    /// A root-only policy file (TOML) saying what `socket_args` says, plus `extra` lines,
    /// for `otp-admin --policy`.
    pub fn policy_file(&self, state: &StateDir, extra: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", unique("policy")));
        let text = format!(
            "state_dir = \"{}\"\nstore = \"redis\"\nredis_url = \"unix://{}\"\nredis_user = \"{ACL_USER}\"\nredis_password_file = \"{}\"\nredis_prefix = \"{}\"\n{extra}",
            state.path.display(),
            self.socket.display(),
            self.password_file.display(),
            self.prefix
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Module arguments that reach this server over TLS with the client certificate.
    pub fn tls_args(&self) -> String {
        format!(
            "store=redis redis_url=rediss://127.0.0.1:{} redis_user={ACL_USER} redis_password_file={} redis_ca_file={} redis_cert_file={} redis_key_file={} redis_prefix={}",
            self.tls_port,
            self.password_file.display(),
            self.pki.path("ca.crt").display(),
            self.pki.path("client.crt").display(),
            self.pki.path("client.key").display(),
            self.prefix
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            // SIGKILL ends a stopped process too; continuing it first is only tidiness.
            let _ = Command::new("kill")
                .args(["-CONT", &self.pid().to_string()])
                .status();
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A user enrolled for HOTP (counters make every round's code fresh and time-independent).
pub fn hotp_user() -> (TestUser, String) {
    let user = TestUser::new();
    let secret = new_secret();
    user.enroll(&format!(
        "version = 1\ntype = \"hotp\"\nsecret = \"{secret}\"\n"
    ));
    (user, secret)
}

/// One "host" of a fleet: its own local state directory (the floor) and PAM service.
pub struct Host {
    pub state: StateDir,
    pub service: Service,
}

impl Host {
    /// A host whose module line carries `args` (the store's and any others).
    pub fn new(args: &str) -> Host {
        let state = StateDir::new();
        let service = Service::otp(&state, args);
        Host { state, service }
    }

    /// The same host (same floor) with a new module line, e.g. after a failover.
    pub fn reconfigure(&mut self, args: &str) {
        self.service = Service::otp(&self.state, args);
    }
}

/// `logins` pamtesters, alternating between the hosts, all started and all answered with
/// `answer` before any is waited for: they run at once.
pub fn at_once(hosts: &[&Host], user: &TestUser, answer: &str, logins: usize) -> Vec<Outcome> {
    let mut children: Vec<Child> = (0..logins)
        .map(|i| {
            spawn(&pamtester_argv(
                &hosts[i % hosts.len()].service,
                &user.name,
                None,
                None,
            ))
        })
        .collect();
    for child in &mut children {
        use std::io::Write;
        if let Some(mut stdin) = child.stdin.take() {
            // One that never asks (locked) has closed its end: that is fine.
            let _ = stdin.write_all(format!("{answer}\n").as_bytes());
        }
    }
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait for pamtester");
            Outcome {
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

/// A listener that is not Redis: it answers nothing and records every connection and
/// byte it receives, so a test can show the module sent it nothing (or only a TLS hello).
pub struct FakeServer {
    received: std::sync::Arc<std::sync::Mutex<(usize, Vec<u8>)>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Listens on a unix socket at `path` (the caller owns the directory's fate).
    pub fn unix(path: &Path) -> FakeServer {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeServer::serve(move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Peer>))
    }

    /// Listens on TCP at `address` (e.g. `127.0.0.1:PORT`).
    pub fn tcp(address: &str) -> FakeServer {
        let listener = std::net::TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeServer::serve(move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Peer>))
    }

    fn serve(accept: impl Fn() -> std::io::Result<Box<dyn Peer>> + Send + 'static) -> FakeServer {
        use std::sync::atomic::Ordering;
        let received = std::sync::Arc::new(std::sync::Mutex::new((0, Vec::new())));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut peers: Vec<Box<dyn Peer>> = Vec::new();
            while !s.load(Ordering::SeqCst) {
                if let Ok(peer) = accept() {
                    peer.nonblocking();
                    r.lock().unwrap().0 += 1;
                    peers.push(peer);
                }
                for peer in &mut peers {
                    let mut buffer = [0u8; 4096];
                    if let Ok(n) = peer.read(&mut buffer) {
                        r.lock().unwrap().1.extend_from_slice(&buffer[..n]);
                    }
                }
                sleep(Duration::from_millis(5));
            }
        });
        FakeServer {
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted and the bytes received so far.
    pub fn received(&self) -> (usize, Vec<u8>) {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A stream the fake server reads from.
pub trait Peer: std::io::Read + Send {
    fn nonblocking(&self);
}

impl Peer for std::os::unix::net::UnixStream {
    fn nonblocking(&self) {
        self.set_nonblocking(true).unwrap();
    }
}

impl Peer for std::net::TcpStream {
    fn nonblocking(&self) {
        self.set_nonblocking(true).unwrap();
    }
}

/// `otp-admin doctor --json` on one service: its findings as (severity, id, message).
pub fn doctor_findings(service: &str, user: &str) -> Vec<(String, String, String)> {
    let run =
        crate::support::admin::otp_admin_bounded(&["doctor", "--json", "--user", user, service]);
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {run:#?}"));
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (text(&f["severity"]), text(&f["id"]), text(&f["message"])))
        .collect()
}

/// The one finding with `id`, or a failure listing them all.
pub fn finding<'a>(
    found: &'a [(String, String, String)],
    id: &str,
    what: &str,
) -> &'a (String, String, String) {
    found
        .iter()
        .find(|(_, i, _)| i == id)
        .unwrap_or_else(|| panic!("{what}: no {id} finding in {found:#?}"))
}
