//! The fleet store's server, as the module would reach it: plain TCP (loopback only, and
//! even there a local user can take the port while Redis is down) is a warning; a socket,
//! sentinel or master that fails the module's checks, or does not answer, is an error.
//! Unlike the other checks this one talks to the network: it connects as the module does
//! (nothing is sent to a server that fails the checks).

use pam_otp_redis::sentinel;
use pam_otp_redis::store::RedisStore;
use pam_otp_sys::policy::RedisSettings;

use super::findings::{Finding, Severity};

const FIX_UNTRUSTED: &str = "make the server reachable as the module requires: a unix socket \
    in directories only root (its own: root or redis_server_user) can change, owned with its \
    listening process by root or redis_server_user; plain TCP only to 127.0.0.1/::1; TLS with \
    a certificate the CA in redis_ca_file signed (README, Fleets)";

/// Findings about how `settings` reach the server.
pub fn findings(settings: &RedisSettings) -> Vec<Finding> {
    let mut found = Vec::new();
    if !settings.tls
        && !settings
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("unix://"))
    {
        found.push(Finding::new(
            Severity::Warning,
            "redis-plain-tcp",
            format!(
                "{} is plain TCP on this machine: while Redis is down any local user can listen \
                 on that port and receive the password (redis_password_file)",
                settings.location()
            ),
            "use a unix:// socket, or rediss:// (TLS) with redis_ca_file".into(),
        ));
    }
    if settings.sentinels.is_some() {
        found.extend(sentinel_findings(settings));
        return found;
    }
    if let Err(e) = RedisStore::connect(settings) {
        found.push(Finding::new(
            Severity::Error,
            "redis-unusable",
            format!("{e}: every fleet login through this service is refused"),
            FIX_UNTRUSTED.into(),
        ));
    }
    found
}

/// Each sentinel, and each master they name, on its own: one bad sentinel does not stop
/// logins while another answers, but it is one failure closer to an outage.
fn sentinel_findings(settings: &RedisSettings) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut masters: Vec<(String, u16)> = Vec::new();
    for (node, answer) in sentinel::ask_each(settings) {
        match answer {
            Ok(address) if !masters.contains(&address) => masters.push(address),
            Ok(_) => {}
            Err(why) => found.push(Finding::new(
                Severity::Error,
                "redis-sentinel-unusable",
                format!("sentinel {node} cannot be used: {why}"),
                FIX_UNTRUSTED.into(),
            )),
        }
    }
    if masters.len() > 1 {
        let named: Vec<String> = masters.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        found.push(Finding::new(
            Severity::Warning,
            "redis-sentinels-disagree",
            format!(
                "the sentinels name different masters ({}): a failover is under way or they \
                 do not watch the same servers",
                named.join(", ")
            ),
            "check `SENTINEL MASTER` on each sentinel; they must monitor the same master".into(),
        ));
    }
    for (host, port) in &masters {
        if let Err(why) = sentinel::check_master(settings, host, *port) {
            found.push(Finding::new(
                Severity::Error,
                "redis-master-unusable",
                format!("the master {host}:{port} the sentinels name cannot be used: {why}"),
                FIX_UNTRUSTED.into(),
            ));
        }
    }
    found
}
