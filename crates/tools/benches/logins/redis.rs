//! A throw-away `redis-server` for the fleet-store contenders: a unix socket and a TLS port
//! (a private CA and a client certificate made with `openssl`), an ACL user with a
//! password, and the append-only file fsync'd at every write on the real disk, as the
//! shipped config/redis/pam-otp.conf has it. Credentials live under /run (root-only path,
//! as the module demands); the data under the disk directory.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::fixture::run;

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
pub const USER: &str = "pamotp";

pub struct Redis {
    child: Child,
    pub credentials: PathBuf,
    socket: PathBuf,
    pub tls_port: u16,
    pub password: String,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    run(Command::new("openssl").args(args).current_dir(dir)).map(|_| ())
}

/// A P-256 key and a certificate signed by `ca` (or self-signed when `ca` is None).
fn certificate(dir: &Path, name: &str, ca: Option<&str>, ext: &str) -> Result<(), String> {
    let key = format!("{name}.key");
    let crt = format!("{name}.crt");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    )?;
    fs::write(dir.join(format!("{name}.ext")), ext).map_err(|e| e.to_string())?;
    let subject = format!("/CN=pam-otp bench {name}");
    match ca {
        None => openssl(
            dir,
            &[
                "req", "-x509", "-new", "-key", &key, "-subj", &subject, "-days", "2", "-out", &crt,
            ],
        ),
        Some(ca) => {
            let csr = format!("{name}.csr");
            openssl(
                dir,
                &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &crt,
                ],
            )
        }
    }
}

/// Polls `ready` every 50 ms for up to 20 s.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("{what} did not come up"));
        }
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Redis {
    /// Starts the server; `data` is on the disk being measured, `tag` names the run.
    pub fn start(data: &Path, tag: &str) -> Result<Redis, String> {
        let credentials = PathBuf::from(format!("/run/pam-otp-bench-{tag}"));
        let _ = fs::remove_dir_all(&credentials);
        fs::create_dir(&credentials).map_err(|e| e.to_string())?;
        fs::set_permissions(&credentials, fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        certificate(&credentials, "ca", None, "")?;
        let san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
        certificate(
            &credentials,
            "redis",
            Some("ca"),
            &format!("extendedKeyUsage=serverAuth\n{san}"),
        )?;
        certificate(
            &credentials,
            "client",
            Some("ca"),
            &format!("extendedKeyUsage=clientAuth\n{san}"),
        )?;
        for key in ["ca.key", "redis.key", "client.key"] {
            fs::set_permissions(credentials.join(key), fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        let password = data_encoding::HEXLOWER.encode(&crate::fixture::random_secret()?);
        fs::write(credentials.join("password"), format!("{password}\n"))
            .map_err(|e| e.to_string())?;
        fs::set_permissions(
            credentials.join("password"),
            fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        let tls_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let socket = credentials.join("redis.sock");
        let path = |name: &str| credentials.join(name).display().to_string();
        let child = Command::new(REDIS_SERVER)
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--tls-port",
                &tls_port.to_string(),
            ])
            .args([
                "--tls-cert-file",
                &path("redis.crt"),
                "--tls-key-file",
                &path("redis.key"),
            ])
            .args([
                "--tls-ca-cert-file",
                &path("ca.crt"),
                "--tls-auth-clients",
                "yes",
            ])
            .args([
                "--unixsocket",
                &socket.display().to_string(),
                "--unixsocketperm",
                "700",
            ])
            .args(["--dir", &data.display().to_string(), "--save", ""])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ])
            .args(["--logfile", &path("redis.log")])
            .args(["--user", "default", "off", "~*", "&*", "+@all"])
            .args([
                "--user",
                USER,
                "on",
                &format!(">{password}"),
                "resetkeys",
                "~pam-otp:*",
            ])
            .args([
                "resetchannels",
                "-@all",
                "+evalsha",
                "+script|load",
                "+wait",
                "+time",
            ])
            .args([
                "+hget", "+hmget", "+hset", "+hlen", "+del", "+ping", "+role",
            ])
            // What a sentinel needs (the sentinel contender).
            .args(["--user", "sentinel", "on", &format!(">{password}")])
            .args(["allchannels", "+@all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {REDIS_SERVER}: {e}"))?;
        let redis = Redis {
            child,
            credentials,
            socket,
            tls_port,
            password,
        };
        let ping = || {
            let out = Command::new("redis-cli")
                .arg("-s")
                .arg(&redis.socket)
                .args(["--user", USER, "--pass", &redis.password])
                .args(["--no-auth-warning", "PING"])
                .output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        };
        wait_until("redis-server", ping)?;
        Ok(redis)
    }

    fn common_args(&self, prefix: &str) -> String {
        format!(
            "store=redis redis_user={USER} redis_password_file={} redis_prefix=pam-otp:{prefix}:",
            self.credentials.join("password").display()
        )
    }

    /// Module arguments for the unix socket; `prefix` keeps contenders' records apart.
    pub fn unix_args(&self, prefix: &str) -> String {
        format!(
            "{} redis_url=unix://{}",
            self.common_args(prefix),
            self.socket.display()
        )
    }

    /// Module arguments for TLS with the client certificate (a new connection per login).
    pub fn tls_args(&self, prefix: &str) -> String {
        let path = |name: &str| self.credentials.join(name).display().to_string();
        format!(
            "{} redis_url=rediss://127.0.0.1:{} redis_ca_file={} redis_cert_file={} redis_key_file={}",
            self.common_args(prefix),
            self.tls_port,
            path("ca.crt"),
            path("client.crt"),
            path("client.key")
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.credentials);
    }
}
