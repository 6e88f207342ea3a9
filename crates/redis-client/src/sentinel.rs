//! Finding the master through Redis Sentinel, within one budget: each sentinel is asked
//! `SENTINEL GET-MASTER-ADDR-BY-NAME` over a connection with a timeout (its share of what
//! is left), the address it answers is checked as any server is ([`crate::trust`]) and
//! must say `master` to `ROLE`. Until the budget is spent, a round that found no master
//! is tried again after a short pause (a failover in progress). The address is never
//! remembered: each login asks again. redis-rs's own Sentinel client is not used: its
//! connections to the sentinels have no connect timeout.

use std::thread::sleep;
use std::time::{Duration, Instant};

use pam_otp_sys::policy::{split_host_port, RedisSettings, Sentinels};
use pam_otp_sys::redis_protocol::RedisStoreError;

use crate::store::open;

/// Between two rounds over the sentinels while no master answers.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A connection to the server all this needs: the URL scheme the settings call for.
fn url_of(settings: &RedisSettings, host: &str, port: u16) -> String {
    let scheme = if settings.tls { "rediss" } else { "redis" };
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// Why one step failed, without the "refused" that the whole discovery's error adds.
fn reason(error: RedisStoreError) -> String {
    match error {
        RedisStoreError::Connect { url, why } => format!("{url}: {why}"),
        other => other.to_string(),
    }
}

/// What the sentinel at `address` says the master's address is.
fn ask(
    settings: &RedisSettings,
    master: &str,
    address: &str,
    timeout: Duration,
) -> Result<MasterAddress, String> {
    let (host, port) =
        split_host_port(address).ok_or_else(|| format!("{address:?} is not HOST:PORT"))?;
    let mut sentinel = open(settings, &url_of(settings, host, port), timeout)
        .map_err(|e| format!("sentinel {address}: {}", reason(e)))?;
    let answer: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master)
        .query(&mut sentinel)
        .map_err(|e| format!("sentinel {address}: {e}"))?;
    answer.ok_or_else(|| format!("sentinel {address} monitors no master named {master:?}"))
}

/// Connects to `host:port` and makes sure it is the master now.
fn open_checked_master(
    settings: &RedisSettings,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<redis::Connection, String> {
    let url = url_of(settings, host, port);
    let mut connection = open(settings, &url, timeout).map_err(reason)?;
    let role: Vec<redis::Value> = redis::cmd("ROLE")
        .query(&mut connection)
        .map_err(|e| format!("{url}: ROLE: {e}"))?;
    match role.first() {
        Some(redis::Value::BulkString(name)) if name.as_slice() == b"master" => Ok(connection),
        Some(redis::Value::BulkString(name)) => Err(format!(
            "{url} is a {} now, not the master",
            String::from_utf8_lossy(name)
        )),
        _ => Err(format!("{url}: ROLE gave no role")),
    }
}

/// Whether there is time for another round over the sentinels (after a pause): only
/// while it has a fair chance, as a round squeezed into a few milliseconds fails on its
/// timeouts and hides why the earlier ones failed.
pub(crate) fn worth_another_round(settings: &RedisSettings, deadline: Instant) -> bool {
    let fair_chance = Duration::from_millis(settings.timeout_ms) / 4 + RETRY_PAUSE;
    deadline.saturating_duration_since(Instant::now()) >= fair_chance
}

/// The master's connection, found through the sentinels before `deadline`, or why not.
pub fn open_master(
    settings: &RedisSettings,
    deadline: Instant,
) -> Result<redis::Connection, RedisStoreError> {
    let no_sentinels = Sentinels {
        nodes: Vec::new(),
        master: String::new(),
    };
    let sentinels = settings.sentinels.as_deref().unwrap_or(&no_sentinels);
    let master = sentinels.master.as_str();
    let mut failures: Vec<String> = Vec::new();
    loop {
        let mut round: Vec<String> = Vec::new();
        let mut tried: Vec<MasterAddress> = Vec::new();
        for (index, sentinel) in sentinels.nodes.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / (sentinels.nodes.len() - index) as u32;
            if share.is_zero() {
                break;
            }
            let (host, port) = match ask(settings, master, sentinel, share) {
                Ok(address) => address,
                Err(why) => {
                    round.push(why);
                    continue;
                }
            };
            if tried.contains(&(host.clone(), port)) {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match open_checked_master(settings, &host, port, left) {
                Ok(connection) => return Ok(connection),
                Err(why) => round.push(format!(
                    "master {host}:{port} from sentinel {sentinel}: {why}"
                )),
            }
            tried.push((host, port));
        }
        if failures.is_empty() || !round.is_empty() {
            failures = round;
        }
        if !worth_another_round(settings, deadline) {
            break;
        }
        sleep(RETRY_PAUSE);
    }
    if failures.is_empty() {
        failures.push("no time left to ask the sentinels".into());
    }
    Err(RedisStoreError::Connect {
        url: settings.location(),
        why: format!(
            "no master within redis_timeout_ms={}: {}",
            settings.timeout_ms,
            failures.join("; ")
        ),
    })
}

/// A master's address as a sentinel gave it: host and port.
pub type MasterAddress = (String, u16);

/// What each sentinel answers, for `otp-admin doctor`: the master's address, or why not
/// (each asked with the whole `redis_timeout_ms`).
pub fn ask_each(settings: &RedisSettings) -> Vec<(String, Result<MasterAddress, String>)> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let Some(sentinels) = settings.sentinels.as_deref() else {
        return Vec::new();
    };
    sentinels
        .nodes
        .iter()
        .map(|node| {
            (
                node.clone(),
                ask(settings, &sentinels.master, node, timeout),
            )
        })
        .collect()
}

/// Whether `host:port` passes the checks any server must pass and says it is the master.
pub fn check_master(settings: &RedisSettings, host: &str, port: u16) -> Result<(), String> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    open_checked_master(settings, host, port, timeout).map(|_| ())
}
