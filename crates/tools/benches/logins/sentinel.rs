//! A `redis-sentinel` watching the bench's `redis-server`, for the "through Sentinel"
//! contender: every login asks it for the master (TLS, the module's ACL user), connects to
//! the answer and checks `ROLE`, as a fleet with Sentinel does. One sentinel (quorum 1)
//! is enough to measure a login; failover is the test suite's business.

use std::fs;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use crate::redis::{wait_until, Redis, USER};

pub const REDIS_SENTINEL: &str = "/usr/bin/redis-sentinel";
const MASTER: &str = "pam-otp-bench";

pub struct Sentinel {
    child: Child,
    port: u16,
}

impl Sentinel {
    /// Starts a sentinel for `redis` with its configuration (which Sentinel rewrites) in
    /// the server's root-only credentials directory.
    pub fn start(redis: &Redis) -> Result<Sentinel, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let path = |name: &str| redis.credentials.join(name).display().to_string();
        let config = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {}\ntls-key-file {}\n\
             tls-client-cert-file {}\ntls-client-key-file {}\ntls-ca-cert-file {}\n\
             tls-auth-clients yes\ntls-replication yes\ndir {}\nlogfile {}\n\
             sentinel monitor {MASTER} 127.0.0.1 {} 1\n\
             sentinel auth-user {MASTER} sentinel\nsentinel auth-pass {MASTER} {}\n\
             user default off\nuser {USER} on >{} resetchannels -@all +sentinel|get-master-addr-by-name\n",
            path("redis.crt"),
            path("redis.key"),
            path("client.crt"),
            path("client.key"),
            path("ca.crt"),
            redis.credentials.display(),
            path("sentinel.log"),
            redis.tls_port,
            redis.password,
            redis.password,
        );
        let config_path = redis.credentials.join("sentinel.conf");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let child = Command::new(REDIS_SENTINEL)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {REDIS_SENTINEL}: {e}"))?;
        let sentinel = Sentinel { child, port };
        let knows_the_master = || {
            let answer = Command::new("redis-cli")
                .args(["--tls", "--cacert", &path("ca.crt")])
                .args(["--cert", &path("client.crt"), "--key", &path("client.key")])
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args([
                    "--user",
                    USER,
                    "--pass",
                    &redis.password,
                    "--no-auth-warning",
                ])
                .args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER])
                .output();
            let text = answer.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            text.is_ok_and(|t| t.contains(&redis.tls_port.to_string()))
        };
        wait_until("redis-sentinel", knows_the_master)?;
        Ok(sentinel)
    }

    /// Module arguments that find the master through this sentinel, over TLS.
    pub fn args(&self, redis: &Redis, prefix: &str) -> String {
        redis.tls_args(prefix).replace(
            &format!("redis_url=rediss://127.0.0.1:{}", redis.tls_port),
            &format!(
                "redis_sentinels=127.0.0.1:{} redis_master={MASTER}",
                self.port
            ),
        )
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
