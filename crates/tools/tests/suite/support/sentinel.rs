//! The Sentinel layout on one machine, started from the shipped files
//! (`config/redis/pam-otp.conf`, `pam-otp-ha.conf`, `sentinel.conf`) with this test's
//! paths, ports and passwords put in: a master, two replicas and three sentinels, all
//! over TLS with client certificates and the shipped ACL users. Servers are killed and
//! restarted by pid.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::clients::{read_shipped, require_program};
use crate::support::redis::{
    checked, redis_cli, sha256_hex, wait_until, Pki, ACL_USER, REDIS_SERVER,
};
use crate::support::{assert_root, free_port, hex, random_bytes, scratch_path, unique, StateDir};

pub const REDIS_SENTINEL: &str = "/usr/bin/redis-sentinel";
/// The name the shipped sentinel.conf monitors the master under.
pub const MASTER_NAME: &str = "pam-otp";
/// The tests' all-powerful user on every server and sentinel (not in the shipped files).
const ADMIN: &str = "admin";

/// One redis-server or redis-sentinel of the rig.
pub struct Node {
    pub port: u16,
    pub dir: PathBuf,
    /// The server's unix socket (servers only), for the tests' admin commands.
    pub socket: Option<PathBuf>,
    program: &'static str,
    child: Option<Child>,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join(if self.socket.is_some() {
            "redis.conf"
        } else {
            "sentinel.conf"
        })
    }

    fn launch(&mut self) {
        let child = Command::new(self.program)
            .arg(self.config())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program));
        self.child = Some(child);
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the running process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        checked(
            "kill",
            Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]),
        );
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A master, two replicas and three sentinels.
pub struct SentinelRig {
    pub dir: PathBuf,
    pub pki: Pki,
    pub servers: Vec<Node>,
    pub sentinels: Vec<Node>,
    pub password: String,
    pub password_file: PathBuf,
    pub prefix: String,
    pub down_after_ms: u64,
}

impl SentinelRig {
    /// Starts the servers (server 0 the master), waits until both replicas are in sync,
    /// then the sentinels, and waits until each sees both replicas and both other sentinels.
    pub fn start(down_after_ms: u64) -> SentinelRig {
        assert_root();
        require_program(REDIS_SERVER, "redis-server");
        require_program(REDIS_SENTINEL, "redis-sentinel");
        let dir = scratch_path("ts-rig");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let pki = Pki::new(&dir);
        let password = hex(&random_bytes(16));
        let password_file = dir.join("password");
        fs::write(&password_file, format!("{password}\n")).unwrap();
        fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600)).unwrap();
        let mut rig = SentinelRig {
            pki,
            servers: Vec::new(),
            sentinels: Vec::new(),
            password,
            password_file,
            prefix: format!("pam-otp:{}:", unique("ts")),
            down_after_ms,
            dir,
        };
        let replica_password = hex(&random_bytes(16));
        let sentinel_password = hex(&random_bytes(16));
        let module_hash = sha256_hex(&rig.password);
        let tls_dir = format!("{}/", rig.pki.dir.display());
        let substitute = |text: String| -> String {
            // Longest placeholders first: PASSWORD_SHA256 ends the other two.
            text.replace("REPLICA_PASSWORD_SHA256", &sha256_hex(&replica_password))
                .replace("SENTINEL_PASSWORD_SHA256", &sha256_hex(&sentinel_password))
                .replace("REPLICA_PASSWORD", &replica_password)
                .replace("SENTINEL_PASSWORD", &sentinel_password)
                .replace("PASSWORD_SHA256", &module_hash)
                .replace("MASTER_HOST", "127.0.0.1")
                .replace("bind 0.0.0.0 -::*", "bind 127.0.0.1")
                .replace("/etc/redis/tls/", &tls_dir)
        };
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for (index, &port) in ports.iter().enumerate() {
            let node_dir = rig.dir.join(format!("server{index}"));
            fs::create_dir_all(node_dir.join("data")).unwrap();
            let base = node_dir.join("pam-otp.conf");
            fs::write(
                &base,
                substitute(read_shipped("redis/pam-otp.conf"))
                    .replace("tls-port 6380", &format!("tls-port {port}"))
                    .replace(
                        "dir /var/lib/redis/pam-otp",
                        &format!("dir {}", node_dir.join("data").display()),
                    ),
            )
            .unwrap();
            let mut text = substitute(read_shipped("redis/pam-otp-ha.conf"))
                .replace(
                    "include /etc/redis/pam-otp.conf",
                    &format!("include {}", base.display()),
                )
                .replace("127.0.0.1 6380", &format!("127.0.0.1 {}", ports[0]));
            if index > 0 {
                text = text.replace("# replicaof ", "replicaof ");
            }
            let socket = node_dir.join("redis.sock");
            text.push_str(&format!(
                "\n# added by the tests\nunixsocket {}\nunixsocketperm 700\nlogfile {}\ndaemonize no\nuser {ADMIN} on >{} ~* &* +@all\n",
                socket.display(),
                node_dir.join("log").display(),
                rig.password,
            ));
            fs::write(node_dir.join("redis.conf"), text).unwrap();
            let mut node = Node {
                port,
                dir: node_dir,
                socket: Some(socket),
                program: REDIS_SERVER,
                child: None,
            };
            node.launch();
            servers.push(node);
        }
        rig.servers = servers;
        for index in 0..3 {
            rig.wait_until_up(index);
        }
        for index in 1..3 {
            rig.wait_until_synced(index);
        }
        let mut sentinels = Vec::new();
        for index in 0..3 {
            let port = free_port();
            let node_dir = rig.dir.join(format!("sentinel{index}"));
            fs::create_dir(&node_dir).unwrap();
            let mut text = substitute(read_shipped("redis/sentinel.conf"))
                .replace("tls-port 26380", &format!("tls-port {port}"))
                .replace("127.0.0.1 6380", &format!("127.0.0.1 {}", ports[0]))
                .replace(
                    "down-after-milliseconds pam-otp 5000",
                    &format!("down-after-milliseconds pam-otp {down_after_ms}"),
                )
                .replace(
                    "failover-timeout pam-otp 60000",
                    "failover-timeout pam-otp 5000",
                );
            text.push_str(&format!(
                "\n# added by the tests\ndir {}\nlogfile {}\ndaemonize no\nuser {ADMIN} on >{} ~* &* +@all\n",
                node_dir.display(),
                node_dir.join("log").display(),
                rig.password,
            ));
            fs::write(node_dir.join("sentinel.conf"), text).unwrap();
            let mut node = Node {
                port,
                dir: node_dir,
                socket: None,
                program: REDIS_SENTINEL,
                child: None,
            };
            node.launch();
            sentinels.push(node);
        }
        rig.sentinels = sentinels;
        rig.wait_until_sentinels_agree();
        rig
    }

    /// `redis-cli` as the tests' admin on server `index`'s socket.
    pub fn server_admin(&self, index: usize, args: &[&str]) -> String {
        let socket = self.servers[index].socket.as_ref().unwrap();
        let socket = socket.display().to_string();
        redis_cli(&["-s", &socket], ADMIN, &self.password, args)
    }

    /// `redis-cli` over TLS as `user` to sentinel `index`.
    pub fn sentinel_cli(&self, index: usize, user: &str, args: &[&str]) -> String {
        let file = |name: &str| self.pki.path(name).display().to_string();
        let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
        let port = self.sentinels[index].port.to_string();
        let connection = [
            "--tls",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-h",
            "127.0.0.1",
            "-p",
            &port,
        ];
        redis_cli(&connection, user, &self.password, args)
    }

    /// The master's port as sentinel `index` (asked as the modules' user) says it.
    pub fn master_port(&self, index: usize) -> Option<u16> {
        let answer = self.sentinel_cli(
            index,
            ACL_USER,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }

    /// Which server is at `port`.
    pub fn server_at(&self, port: u16) -> usize {
        self.servers
            .iter()
            .position(|s| s.port == port)
            .expect("a server of the rig")
    }

    /// `ROLE`'s first line on server `index` ("master" or "slave").
    pub fn role(&self, index: usize) -> String {
        let answer = self.server_admin(index, &["ROLE"]);
        answer.lines().next().unwrap_or("").trim().to_string()
    }

    fn wait_until_up(&self, index: usize) {
        self.wait_for(&format!("server {index} up"), || {
            self.server_admin(index, &["PING"]).trim() == "PONG"
        });
    }

    /// Waits until server `index` is a replica in sync with its master.
    pub fn wait_until_synced(&self, index: usize) {
        self.wait_for(&format!("server {index} in sync"), || {
            self.server_admin(index, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
    }

    fn wait_until_sentinels_agree(&self) {
        for index in 0..self.sentinels.len() {
            self.wait_for(&format!("sentinel {index} sees the layout"), || {
                let master = self.sentinel_cli(index, ADMIN, &["SENTINEL", "MASTER", MASTER_NAME]);
                let lines: Vec<&str> = master.lines().map(str::trim).collect();
                let field = |name: &str| {
                    lines
                        .iter()
                        .position(|l| *l == name)
                        .and_then(|i| lines.get(i + 1).copied())
                };
                field("num-slaves") == Some("2") && field("num-other-sentinels") == Some("2")
            });
        }
    }

    /// Polls `ready` until it holds (at most 60 s: a returning master is demoted only
    /// after the sentinels' next check of it), else fails with every log of the rig.
    pub fn wait_for(&self, what: &str, ready: impl FnMut() -> bool) {
        wait_until(what, Duration::from_secs(60), ready, || self.logs());
    }

    /// The last lines of every node's log.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for (kind, nodes) in [("server", &self.servers), ("sentinel", &self.sentinels)] {
            for (index, node) in nodes.iter().enumerate() {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                all.push_str(&format!("--- {kind} {index} (port {})\n", node.port));
                for line in tail.iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// Restarts server `index` on its configuration and data.
    pub fn restart_server(&mut self, index: usize) {
        self.servers[index].kill();
        self.servers[index].launch();
        self.wait_until_up(index);
    }

    /// A root-only policy file saying what `module_args` says, for `otp-admin --policy`.
    pub fn policy_file(&self, state: &StateDir) -> PathBuf {
        let path = self.dir.join(format!("{}.toml", unique("policy")));
        let mut text = format!("state_dir = \"{}\"\n", state.path.display());
        for argument in self.module_args().split(' ') {
            let (key, value) = argument.split_once('=').expect("key=value");
            text.push_str(&format!("{key} = \"{value}\"\n"));
        }
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Module arguments that reach the master through the three sentinels over TLS.
    pub fn module_args(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "store=redis redis_sentinels={} redis_master={MASTER_NAME} redis_user={ACL_USER} redis_password_file={} redis_ca_file={} redis_cert_file={} redis_key_file={} redis_prefix={}",
            sentinels.join(","),
            self.password_file.display(),
            self.pki.path("ca.crt").display(),
            self.pki.path("client.crt").display(),
            self.pki.path("client.key").display(),
            self.prefix
        )
    }
}

impl Drop for SentinelRig {
    fn drop(&mut self) {
        for node in self.sentinels.iter_mut().chain(self.servers.iter_mut()) {
            node.kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
