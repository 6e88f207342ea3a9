//! The administrator's policy: module arguments and the policy file, merged and validated.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::account::is_safe_user_name;
use crate::safe_path::open_root_owned_file;
use pam_otp_core::decision::{Limits, MAX_WINDOW};

pub const DEFAULT_POLICY_FILE: &str = "/etc/security/pam_otp.toml";
pub const DEFAULT_SECRET: &str = "~/.otp.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pam-otp";
/// The administrator's secret store (`otp-admin enroll`): root-owned files the module
/// reads as root, inside the default state directory.
pub const STORE_SECRET: &str = "/var/lib/pam-otp/secrets/%u.toml";
pub const DEFAULT_PROMPT: &str = "Verification code: ";
pub const DEFAULT_SPLIT_PROMPT: &str = "Password and verification code: ";
const MAX_POLICY_FILE_BYTES: u64 = 64 * 1024;

/// Where the code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PassMode {
    /// Ask for the code.
    #[default]
    Prompt,
    /// Use PAM_AUTHTOK from an earlier module if it is a code, else ask.
    TryFirstPass,
    /// Use PAM_AUTHTOK from an earlier module; never ask.
    UseFirstPass,
    /// Ask once for password followed by code, pass the password on as PAM_AUTHTOK and
    /// keep the code, unchecked, for a later `UseSplitCode` line; change no state.
    SplitPass,
    /// Check the code a `SplitPass` line kept (run after the password module); never ask.
    UseSplitCode,
}

/// Everything the module was told to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub secret: String,
    pub state_dir: PathBuf,
    pub limits: Limits,
    pub nullok: bool,
    /// From this moment on a user with no enrollment is refused; before it such a user
    /// passes and is reminded (`enforce_after`).
    pub enforce_after: Option<Deadline>,
    pub prompt: Option<String>,
    pub pass_mode: PassMode,
    pub debug: bool,
    /// Where replay guards and lockouts are kept.
    pub store: Store,
}

/// Where the login state lives.
// One per login, built once: boxing the Redis settings would save nothing worth the
// indirection at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Store {
    /// One file per user under `state_dir` (single hosts; the default).
    #[default]
    File,
    /// One shared record per user in Redis, with the host's file state as a floor.
    Redis(RedisSettings),
}

/// The roll-out deadline: the moment codes become required of users with no enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// Unix time of the deadline.
    pub at: u64,
    /// The deadline as people read it: `2026-12-13` (UTC midnight) or `2026-12-13 08:30 UTC`
    /// (with seconds when they are not zero).
    pub text: String,
}

const SECONDS_PER_DAY: u64 = 86_400;

impl Deadline {
    /// The exact moment as `enforce_after` takes it (`YYYY-MM-DDTHH:MM:SSZ`), for handing
    /// the deadline on to the setuid checker: parsing it gives back this very deadline,
    /// seconds and text included.
    pub fn argument(&self) -> String {
        let (year, month, day, seconds) = civil(self.at);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )
    }

    /// Whole days left before the deadline at `now`, counting a started day as one
    /// (a deadline a week ahead says 7 all day long); `None` once it has passed.
    pub fn days_left(&self, now: u64) -> Option<u64> {
        (now < self.at).then(|| (self.at - now).div_ceil(SECONDS_PER_DAY))
    }

    /// Parses `YYYY-MM-DD` (UTC midnight) or a date with a time, `YYYY-MM-DDTHH:MM[:SS]`
    /// (a space may stand for the `T`), in UTC unless it carries an offset (`Z`, `+02:00`).
    pub fn parse(value: &str) -> Result<Deadline, String> {
        let why = || format!("{value:?} is not a date YYYY-MM-DD (optionally with a time HH:MM)");
        let parsed: toml::value::Datetime = value.trim().parse().map_err(|_| why())?;
        let date = parsed.date.ok_or_else(why)?;
        let days = days_since_epoch(date.year.into(), date.month.into(), date.day.into());
        let seconds_of_day = parsed.time.map_or(0, |time| {
            i64::from(time.hour) * 3600
                + i64::from(time.minute) * 60
                + i64::from(time.second.unwrap_or(0))
        });
        let offset = match parsed.offset {
            None | Some(toml::value::Offset::Z) => 0,
            Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes) * 60,
        };
        let at = days * SECONDS_PER_DAY as i64 + seconds_of_day - offset;
        let at = u64::try_from(at).map_err(|_| format!("{value:?} is before 1970"))?;
        // Shown in UTC, as the module counts it, whatever offset it was written with.
        let text = utc_text(at);
        Ok(Deadline { at, text })
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (the civil-from-days
/// inverse of Howard Hinnant's algorithm; the date is already checked by the parser).
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A Unix time as people read a deadline: `YYYY-MM-DD` at UTC midnight, else
/// `YYYY-MM-DD HH:MM UTC` (with `:SS` when the seconds are not zero).
fn utc_text(at: u64) -> String {
    let (year, month, day, seconds) = civil(at);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let (hour, minute, second) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (seconds, second) {
        (0, _) => date,
        (_, 0) => format!("{date} {hour:02}:{minute:02} UTC"),
        _ => format!("{date} {hour:02}:{minute:02}:{second:02} UTC"),
    }
}

/// The UTC calendar date of a Unix time and the seconds into that day (the
/// days-from-civil inverse of [`days_since_epoch`]).
fn civil(at: u64) -> (i64, i64, i64, u64) {
    let days = (at / SECONDS_PER_DAY) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day, at % SECONDS_PER_DAY)
}

pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_REDIS_PREFIX: &str = "pam-otp:";
/// The account Debian's `redis-server` runs as.
pub const DEFAULT_REDIS_SERVER_USER: &str = "redis";

/// How to reach the fleet's Redis (`redis_*` keys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisSettings {
    /// `redis://HOST:PORT` (loopback only), `rediss://HOST:PORT` (TLS) or `unix:///PATH`;
    /// `None` when the sentinels name the server.
    pub url: Option<String>,
    /// The sentinels that name the server instead, when `url` is `None`.
    pub sentinels: Option<Box<Sentinels>>,
    /// TLS to the server and the sentinels: a `rediss://` URL, or with sentinels a CA
    /// or client certificate given.
    pub tls: bool,
    /// The account the server runs as: a unix socket must be its or root's.
    pub server_user: String,
    /// The ACL user; `None`: the connection's default user.
    pub user: Option<String>,
    /// Root-owned, mode 0600 file holding the password (never on a module line).
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates that sign the server's certificate (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers with `tls-auth-clients yes`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Bound of each step (connect, TLS and AUTH; each script call; WAIT).
    pub timeout_ms: u64,
    /// Replicas that must acknowledge an accepted code (`WAIT`) before it counts.
    pub replicas: u32,
    /// Start of every key, so fleets can share one Redis.
    pub prefix: String,
}

/// Redis Sentinel: who to ask for the master's address, at every login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentinels {
    /// The sentinels, `HOST:PORT` (`redis_sentinels`).
    pub nodes: Vec<String>,
    /// The name they monitor the master under (`redis_master`).
    pub master: String,
}

impl RedisSettings {
    /// Where the server is, for messages: its URL, or the sentinels and the master's name.
    pub fn location(&self) -> String {
        match (&self.url, &self.sentinels) {
            (Some(url), _) => url.clone(),
            (None, Some(sentinels)) => format!(
                "master {:?} of sentinels {}",
                sentinels.master,
                sentinels.nodes.join(",")
            ),
            (None, None) => "no server".into(),
        }
    }
}

/// An address that only this machine can answer: `127.0.0.0/8` or `::1`, written as such
/// (a name could resolve elsewhere, and its lookup is not bounded by the timeout).
pub fn is_loopback_literal(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A URL's authority (`[USER@]HOST[:PORT]`), from what follows its scheme's `://`.
fn authority_of(after_scheme: &str) -> &str {
    after_scheme.split(['/', '?', '#']).next().unwrap_or("")
}

/// A URL's host, from what follows its scheme's `://` (`HOST[:PORT][/…]`).
pub fn url_host(after_scheme: &str) -> &str {
    let authority = authority_of(after_scheme);
    split_host_port(authority).map_or(authority, |(host, _)| host)
}

/// Splits `HOST:PORT` (`[V6]:PORT` for IPv6) into host and port.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return None;
    }
    Some((host, port))
}

impl Policy {
    /// The prompt to show: the administrator's, else one that fits the mode.
    pub fn prompt_text(&self) -> &str {
        match (&self.prompt, self.pass_mode) {
            (Some(p), _) => p,
            (None, PassMode::SplitPass) => DEFAULT_SPLIT_PROMPT,
            (None, _) => DEFAULT_PROMPT,
        }
    }
}

/// A setting that could not be accepted; the module fails closed with PAM_SERVICE_ERR.
#[derive(Debug, PartialEq, Eq)]
pub enum PolicyError {
    UnknownArgument(String),
    BadValue {
        key: String,
        why: String,
    },
    ConflictingPassModes,
    /// `nullok` lets users with no enrollment pass for ever, `enforce_after` only until
    /// its date: set in the same place (both on the line, or both in the policy file)
    /// they contradict each other.
    NullokWithDeadline,
    PolicyFile {
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::UnknownArgument(arg) => write!(f, "unknown module argument {arg:?}"),
            PolicyError::BadValue { key, why } => write!(f, "bad value for {key}: {why}"),
            PolicyError::ConflictingPassModes => write!(
                f,
                "only one of try_first_pass, use_first_pass, split_pass and use_split_code may be given"
            ),
            PolicyError::NullokWithDeadline => write!(
                f,
                "nullok and enforce_after are both set in the same place: nullok lets users \
                 with no enrollment in for ever, enforce_after only until its date; for a \
                 roll-out keep enforce_after and remove nullok (or set nullok=false on this \
                 line)"
            ),
            PolicyError::PolicyFile { path, why } => {
                write!(f, "policy file {}: {why}", path.display())
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// Settings from one source; `None` means "not said here".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    secret: Option<String>,
    state_dir: Option<String>,
    window: Option<u64>,
    hotp_lookahead: Option<u64>,
    max_failures: Option<u32>,
    max_failures_user: Option<u32>,
    lockout: Option<u64>,
    max_lockout: Option<u64>,
    nullok: Option<bool>,
    enforce_after: Option<String>,
    prompt: Option<String>,
    try_first_pass: Option<bool>,
    use_first_pass: Option<bool>,
    debug: Option<bool>,
    store: Option<String>,
    redis_url: Option<String>,
    redis_user: Option<String>,
    redis_password_file: Option<String>,
    redis_ca_file: Option<String>,
    redis_cert_file: Option<String>,
    redis_key_file: Option<String>,
    redis_timeout_ms: Option<u64>,
    redis_replicas: Option<u32>,
    redis_prefix: Option<String>,
    redis_sentinels: Option<String>,
    redis_master: Option<String>,
    redis_server_user: Option<String>,
    #[serde(skip)]
    policy: Option<String>,
    // Module arguments only: in the policy file they would apply to every pam_otp line,
    // and a stack whose every line only splits never checks a code.
    #[serde(skip)]
    split_pass: Option<bool>,
    #[serde(skip)]
    use_split_code: Option<bool>,
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<Option<T>, PolicyError> {
    value.parse().map(Some).map_err(|_| PolicyError::BadValue {
        key: key.into(),
        why: format!("{value:?} is not a whole number"),
    })
}

/// A flag's explicit value on the module line (`nullok=false`), so that one service can
/// turn off what the policy file turns on.
fn flag(key: &str, value: &str) -> Result<Option<bool>, PolicyError> {
    match value {
        "1" | "true" | "yes" => Ok(Some(true)),
        "0" | "false" | "no" => Ok(Some(false)),
        _ => Err(PolicyError::BadValue {
            key: key.into(),
            why: format!("{value:?} is not one of true, false, yes, no, 1, 0"),
        }),
    }
}

fn parse_args(args: &[&str]) -> Result<Settings, PolicyError> {
    let mut s = Settings::default();
    for &arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg, None),
        };
        match (key, value) {
            ("nullok", None) => s.nullok = Some(true),
            ("debug", None) => s.debug = Some(true),
            ("try_first_pass", None) => s.try_first_pass = Some(true),
            ("use_first_pass", None) => s.use_first_pass = Some(true),
            ("nullok", Some(v)) => s.nullok = flag(key, v)?,
            ("debug", Some(v)) => s.debug = flag(key, v)?,
            ("try_first_pass", Some(v)) => s.try_first_pass = flag(key, v)?,
            ("use_first_pass", Some(v)) => s.use_first_pass = flag(key, v)?,
            ("split_pass", None) => s.split_pass = Some(true),
            ("use_split_code", None) => s.use_split_code = Some(true),
            ("split_pass", Some(v)) => s.split_pass = flag(key, v)?,
            ("use_split_code", Some(v)) => s.use_split_code = flag(key, v)?,
            ("enforce_after", Some(v)) => s.enforce_after = Some(v.into()),
            ("secret", Some(v)) => s.secret = Some(v.into()),
            ("state_dir", Some(v)) => s.state_dir = Some(v.into()),
            ("prompt", Some(v)) => s.prompt = Some(v.into()),
            ("policy", Some(v)) => s.policy = Some(v.into()),
            ("window", Some(v)) => s.window = number(key, v)?,
            ("hotp_lookahead", Some(v)) => s.hotp_lookahead = number(key, v)?,
            ("max_failures", Some(v)) => s.max_failures = number(key, v)?,
            ("max_failures_user", Some(v)) => s.max_failures_user = number(key, v)?,
            ("store", Some(v)) => s.store = Some(v.into()),
            ("redis_url", Some(v)) => s.redis_url = Some(v.into()),
            ("redis_user", Some(v)) => s.redis_user = Some(v.into()),
            ("redis_password_file", Some(v)) => s.redis_password_file = Some(v.into()),
            ("redis_ca_file", Some(v)) => s.redis_ca_file = Some(v.into()),
            ("redis_cert_file", Some(v)) => s.redis_cert_file = Some(v.into()),
            ("redis_key_file", Some(v)) => s.redis_key_file = Some(v.into()),
            ("redis_timeout_ms", Some(v)) => s.redis_timeout_ms = number(key, v)?,
            ("redis_replicas", Some(v)) => s.redis_replicas = number(key, v)?,
            ("redis_prefix", Some(v)) => s.redis_prefix = Some(v.into()),
            ("redis_sentinels", Some(v)) => s.redis_sentinels = Some(v.into()),
            ("redis_master", Some(v)) => s.redis_master = Some(v.into()),
            ("redis_server_user", Some(v)) => s.redis_server_user = Some(v.into()),
            ("lockout", Some(v)) => s.lockout = number(key, v)?,
            ("max_lockout", Some(v)) => s.max_lockout = number(key, v)?,
            _ => return Err(PolicyError::UnknownArgument(arg.into())),
        }
    }
    Ok(s)
}

fn parse_policy_text(path: &Path, text: &str) -> Result<Settings, PolicyError> {
    toml::from_str(text).map_err(|e| PolicyError::PolicyFile {
        path: path.into(),
        why: e.message().into(),
    })
}

/// Module arguments win over the policy file, which wins over the defaults.
fn merge(file: Settings, args: Settings) -> Result<Policy, PolicyError> {
    macro_rules! pick {
        ($field:ident) => {
            args.$field.clone().or(file.$field.clone())
        };
    }
    let bad = |key: &str, why: String| PolicyError::BadValue {
        key: key.into(),
        why,
    };
    let defaults = Limits::default();
    let limits = Limits {
        window: pick!(window).unwrap_or(defaults.window),
        hotp_lookahead: pick!(hotp_lookahead).unwrap_or(defaults.hotp_lookahead),
        max_failures: pick!(max_failures).unwrap_or(defaults.max_failures),
        max_failures_user: pick!(max_failures_user).unwrap_or(defaults.max_failures_user),
        lockout: pick!(lockout).unwrap_or(defaults.lockout),
        max_lockout: pick!(max_lockout).unwrap_or(defaults.max_lockout),
    };
    if limits.window > MAX_WINDOW {
        return Err(bad(
            "window",
            format!("{} is over {MAX_WINDOW} steps", limits.window),
        ));
    }
    if limits.hotp_lookahead > 1000 {
        return Err(bad(
            "hotp_lookahead",
            format!("{} is over 1000", limits.hotp_lookahead),
        ));
    }
    if !(1..=31_536_000).contains(&limits.lockout) {
        return Err(bad(
            "lockout",
            format!("{} is not 1 to 31536000 seconds", limits.lockout),
        ));
    }
    if !(limits.lockout..=31_536_000).contains(&limits.max_lockout) {
        return Err(bad(
            "max_lockout",
            format!(
                "{} is not between lockout ({}) and 31536000 seconds",
                limits.max_lockout, limits.lockout
            ),
        ));
    }
    let chosen = |flag: Option<bool>| flag.unwrap_or(false);
    let modes = [
        (chosen(pick!(try_first_pass)), PassMode::TryFirstPass),
        (chosen(pick!(use_first_pass)), PassMode::UseFirstPass),
        (chosen(pick!(split_pass)), PassMode::SplitPass),
        (chosen(pick!(use_split_code)), PassMode::UseSplitCode),
    ];
    let mut selected = modes.iter().filter(|(on, _)| *on).map(|(_, mode)| *mode);
    let pass_mode = selected.next().unwrap_or_default();
    if selected.next().is_some() {
        return Err(PolicyError::ConflictingPassModes);
    }
    let state_dir = PathBuf::from(pick!(state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.into()));
    if !state_dir.is_absolute() {
        return Err(bad(
            "state_dir",
            format!("{} is not an absolute path", state_dir.display()),
        ));
    }
    let secret = pick!(secret).unwrap_or_else(|| DEFAULT_SECRET.into());
    if !(secret.starts_with('/') || secret.starts_with('~') || secret.starts_with("%h")) {
        return Err(bad(
            "secret",
            format!("{secret:?} must start with /, ~ or %h"),
        ));
    }
    let prompt = pick!(prompt);
    if let Some(p) = &prompt {
        if p.is_empty() || p.len() > 200 || p.contains('\0') {
            return Err(bad("prompt", "must be 1 to 200 characters".into()));
        }
    }
    let store = match pick!(store).as_deref() {
        None | Some("file") => Store::File,
        Some("redis") => Store::Redis(redis_settings(&file, &args)?),
        Some(other) => {
            return Err(bad(
                "store",
                format!("{other:?} is not \"file\" or \"redis\""),
            ))
        }
    };
    let nullok = chosen(pick!(nullok));
    let enforce_after = match pick!(enforce_after) {
        None => None,
        Some(text) => Some(Deadline::parse(&text).map_err(|why| bad("enforce_after", why))?),
    };
    // The module line wins over the policy file, as for every key: a service with nullok
    // on its line keeps it (the file's deadline is for the other services, such as those
    // the pam-auth-update profile leaves with nullok), and a deadline on the line wins
    // over the file's nullok. Both in the same place contradict each other.
    let (nullok, enforce_after) = match (nullok, enforce_after) {
        (true, Some(deadline)) => {
            let nullok_on_line = args.nullok == Some(true);
            let deadline_on_line = args.enforce_after.is_some();
            match (nullok_on_line, deadline_on_line) {
                (true, false) => (true, None),
                (false, true) => (false, Some(deadline)),
                _ => return Err(PolicyError::NullokWithDeadline),
            }
        }
        other => other,
    };
    Ok(Policy {
        secret,
        state_dir,
        limits,
        nullok,
        enforce_after,
        prompt,
        pass_mode,
        debug: chosen(pick!(debug)),
        store,
    })
}

/// The `redis_*` keys, checked: a URL of a known scheme with no password in it (plain TCP
/// only to loopback), or sentinels with the master's name; absolute file paths,
/// certificate and key together, TLS files only with TLS.
fn redis_settings(file: &Settings, args: &Settings) -> Result<RedisSettings, PolicyError> {
    macro_rules! pick {
        ($field:ident) => {
            args.$field.clone().or(file.$field.clone())
        };
    }
    let bad = |key: &str, why: String| PolicyError::BadValue {
        key: key.into(),
        why,
    };
    let url = pick!(redis_url);
    let sentinels: Vec<String> = pick!(redis_sentinels)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let master = pick!(redis_master);
    let scheme = match (&url, sentinels.is_empty(), &master) {
        (Some(_), false, _) => {
            return Err(bad(
                "redis_sentinels",
                "give either redis_url or redis_sentinels, not both".into(),
            ))
        }
        (None, true, _) => {
            return Err(bad(
                "redis_url",
                "store = \"redis\" needs redis_url, or redis_sentinels with redis_master".into(),
            ))
        }
        (None, false, None) => {
            return Err(bad(
                "redis_master",
                "redis_sentinels needs the name the sentinels monitor the master under".into(),
            ))
        }
        (None, false, Some(_)) => None,
        (Some(url), true, _) => Some(check_redis_url(url).map_err(|why| bad("redis_url", why))?),
    };
    if let Some(name) = &master {
        let fits = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !fits {
            return Err(bad(
                "redis_master",
                format!("{name:?} is not 1 to 64 letters, digits, '-', '_' or '.'"),
            ));
        }
        if sentinels.is_empty() {
            return Err(bad("redis_master", "goes with redis_sentinels".into()));
        }
    }
    for sentinel in &sentinels {
        if split_host_port(sentinel).is_none() {
            return Err(bad(
                "redis_sentinels",
                format!("{sentinel:?} is not HOST:PORT"),
            ));
        }
    }
    let path = |key: &str, value: Option<String>| -> Result<Option<PathBuf>, PolicyError> {
        match value.map(PathBuf::from) {
            Some(p) if !p.is_absolute() => {
                Err(bad(key, format!("{} is not an absolute path", p.display())))
            }
            other => Ok(other),
        }
    };
    let mut settings = RedisSettings {
        user: pick!(redis_user),
        password_file: path("redis_password_file", pick!(redis_password_file))?,
        ca_file: path("redis_ca_file", pick!(redis_ca_file))?,
        cert_file: path("redis_cert_file", pick!(redis_cert_file))?,
        key_file: path("redis_key_file", pick!(redis_key_file))?,
        timeout_ms: pick!(redis_timeout_ms).unwrap_or(DEFAULT_REDIS_TIMEOUT_MS),
        replicas: pick!(redis_replicas).unwrap_or(0),
        prefix: pick!(redis_prefix).unwrap_or_else(|| DEFAULT_REDIS_PREFIX.into()),
        server_user: pick!(redis_server_user).unwrap_or_else(|| DEFAULT_REDIS_SERVER_USER.into()),
        tls: false,
        sentinels: match (url.is_none(), master) {
            (true, Some(master)) => Some(Box::new(Sentinels {
                nodes: sentinels,
                master,
            })),
            _ => None,
        },
        url,
    };
    if settings.cert_file.is_some() != settings.key_file.is_some() {
        return Err(bad(
            "redis_cert_file",
            "redis_cert_file and redis_key_file go together".into(),
        ));
    }
    let tls_files = settings.ca_file.is_some() || settings.cert_file.is_some();
    settings.tls = match scheme {
        Some(scheme) if tls_files && scheme != "rediss://" => {
            return Err(bad(
                "redis_url",
                "redis_ca_file, redis_cert_file and redis_key_file need a rediss:// URL".into(),
            ))
        }
        Some(scheme) => scheme == "rediss://",
        None => tls_files,
    };
    if !settings.tls {
        // Anyone on the network path could answer plain TCP and read the password.
        let remote = settings
            .sentinels
            .iter()
            .flat_map(|s| s.nodes.iter())
            .filter_map(|s| split_host_port(s))
            .map(|(host, _)| host)
            .find(|host| !is_loopback_literal(host));
        if let Some(host) = remote {
            return Err(bad(
                "redis_sentinels",
                format!(
                    "{host} is not a loopback address: without TLS (redis_ca_file) sentinels \
                     must be on 127.0.0.1 or ::1"
                ),
            ));
        }
    }
    if !settings.server_user.is_empty() && !crate::account::is_safe_user_name(&settings.server_user)
    {
        return Err(bad(
            "redis_server_user",
            format!("{:?} is not a user name", settings.server_user),
        ));
    }
    if !(1..=60_000).contains(&settings.timeout_ms) {
        return Err(bad(
            "redis_timeout_ms",
            format!("{} is not 1 to 60000", settings.timeout_ms),
        ));
    }
    if settings.replicas > 64 {
        return Err(bad(
            "redis_replicas",
            format!("{} is over 64", settings.replicas),
        ));
    }
    if !pam_otp_core::fleet::is_valid_prefix(&settings.prefix) {
        return Err(bad(
            "redis_prefix",
            "must be at most 64 printable characters without spaces or braces".into(),
        ));
    }
    Ok(settings)
}

/// A `redis_url`'s scheme, once it is known to carry no credentials and, without TLS, to
/// reach only this machine.
fn check_redis_url(url: &str) -> Result<&'static str, String> {
    let scheme = ["redis://", "rediss://", "unix://"]
        .into_iter()
        .find(|scheme| url.starts_with(scheme))
        .ok_or_else(|| format!("{url:?} is not redis://, rediss:// or unix://"))?;
    let rest = &url[scheme.len()..];
    if authority_of(rest).contains('@') || rest.contains("password=") {
        return Err("must not carry credentials: use redis_user and redis_password_file".into());
    }
    if scheme == "redis://" && !is_loopback_literal(url_host(rest)) {
        return Err(format!(
            "{url:?}: plain TCP (redis://) only to 127.0.0.1 or ::1, as anyone on the \
             network path could read the password; use rediss:// (TLS) or unix://"
        ));
    }
    Ok(scheme)
}

/// Reads the policy file: a regular root-owned file, writable by no one else, with every
/// directory above it root-owned, writable by no one else and no symbolic link on the way.
/// The default file may be absent; one named by `policy=` must exist.
fn read_policy_file(path: &Path, required: bool) -> Result<Option<String>, PolicyError> {
    let fail = |why: String| PolicyError::PolicyFile {
        path: path.into(),
        why,
    };
    let file = match open_root_owned_file(path) {
        Ok(file) => file,
        Err(e) if e.is_not_found() && !required => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_POLICY_FILE_BYTES {
        return Err(fail("larger than 64 KiB".into()));
    }
    let mut text = String::new();
    file.take(MAX_POLICY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    Ok(Some(text))
}

/// Parses module arguments (already split by libpam; `[a b]` arrives as `a b`)
/// and the policy file they name (or the default one).
pub fn load(args: &[&str]) -> Result<Policy, PolicyError> {
    let from_args = parse_args(args)?;
    let (path, required) = match &from_args.policy {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_POLICY_FILE), false),
    };
    let from_file = match read_policy_file(&path, required)? {
        Some(text) => parse_policy_text(&path, &text)?,
        None => Settings::default(),
    };
    merge(from_file, from_args)
}

/// Parses module arguments and a policy file's text without touching the file system.
pub fn parse(args: &[&str], policy_text: Option<&str>) -> Result<Policy, PolicyError> {
    let from_args = parse_args(args)?;
    let from_file = match policy_text {
        Some(text) => parse_policy_text(Path::new(DEFAULT_POLICY_FILE), text)?,
        None => Settings::default(),
    };
    merge(from_file, from_args)
}

/// Expands `~` (at the start), `%h` (home) and `%u` (user name) in the `secret=` template.
pub fn expand_secret_path(template: &str, user: &str, home: &Path) -> Result<PathBuf, PolicyError> {
    let bad = |why: String| PolicyError::BadValue {
        key: "secret".into(),
        why,
    };
    if !is_safe_user_name(user) {
        return Err(bad(format!("user name {user:?} cannot be used in a path")));
    }
    let home = home
        .to_str()
        .ok_or_else(|| bad("home directory is not UTF-8".into()))?;
    let rest = template.strip_prefix('~').map(|r| format!("{home}{r}"));
    let expanded = rest
        .unwrap_or_else(|| template.to_string())
        .replace("%h", home)
        .replace("%u", user);
    let path = PathBuf::from(&expanded);
    if !path.is_absolute() {
        return Err(bad(format!("{expanded:?} is not an absolute path")));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(format!("{expanded:?} contains \"..\"")));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec() {
        let p = parse(&[], None).unwrap();
        assert_eq!(p.secret, "~/.otp.toml");
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/pam-otp"));
        assert_eq!(
            p.limits,
            Limits {
                window: 1,
                hotp_lookahead: 10,
                max_failures: 5,
                max_failures_user: 20,
                lockout: 60,
                max_lockout: 86400
            }
        );
        assert!(!p.nullok && !p.debug);
        assert_eq!(p.pass_mode, PassMode::Prompt);
        assert_eq!(p.prompt_text(), "Verification code: ");
    }

    #[test]
    fn every_argument_is_understood() {
        let p = parse(
            &[
                "secret=/etc/otp/%u.toml",
                "state_dir=/run/otp",
                "window=3",
                "hotp_lookahead=20",
                "max_failures=0",
                "max_failures_user=7",
                "lockout=10",
                "max_lockout=100",
                "nullok",
                "prompt=Code please: ",
                "use_first_pass",
                "debug",
            ],
            None,
        )
        .unwrap();
        assert_eq!(p.secret, "/etc/otp/%u.toml");
        assert_eq!(p.state_dir, PathBuf::from("/run/otp"));
        assert_eq!(
            p.limits,
            Limits {
                window: 3,
                hotp_lookahead: 20,
                max_failures: 0,
                max_failures_user: 7,
                lockout: 10,
                max_lockout: 100
            }
        );
        assert!(p.nullok && p.debug);
        assert_eq!(p.pass_mode, PassMode::UseFirstPass);
        assert_eq!(p.prompt_text(), "Code please: ");
        assert_eq!(
            parse(&["try_first_pass"], None).unwrap().pass_mode,
            PassMode::TryFirstPass
        );
        let split = parse(&["split_pass"], None).unwrap();
        assert_eq!(split.pass_mode, PassMode::SplitPass);
        assert_eq!(split.prompt_text(), DEFAULT_SPLIT_PROMPT);
        let verify = parse(&["use_split_code"], None).unwrap();
        assert_eq!(verify.pass_mode, PassMode::UseSplitCode);
    }

    #[test]
    fn split_modes_are_module_arguments_only() {
        // One policy-file key would turn every pam_otp line of every service into a
        // splitter that never checks a code.
        for text in ["split_pass = true", "use_split_code = true"] {
            assert!(
                matches!(parse(&[], Some(text)), Err(PolicyError::PolicyFile { .. })),
                "{text:?}"
            );
        }
        // And they exclude the other modes, in either source.
        assert_eq!(
            parse(&["split_pass"], Some("try_first_pass = true")),
            Err(PolicyError::ConflictingPassModes)
        );
    }

    #[test]
    fn arguments_win_over_the_policy_file() {
        let file = "window = 4\nmax_failures = 9\nmax_failures_user = 30\nnullok = true\n";
        let p = parse(&["window=2", "max_failures_user=0"], Some(file)).unwrap();
        assert_eq!(p.limits.window, 2);
        assert_eq!(p.limits.max_failures, 9);
        assert_eq!(p.limits.max_failures_user, 0);
        assert!(p.nullok);
    }

    #[test]
    fn flags_on_the_line_turn_the_policy_files_off() {
        let file = "nullok = true\ndebug = true\ntry_first_pass = true\n";
        for off in ["false", "no", "0"] {
            let args = [
                format!("nullok={off}"),
                format!("debug={off}"),
                format!("try_first_pass={off}"),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let p = parse(&args, Some(file)).unwrap();
            assert!(!p.nullok && !p.debug, "{off}");
            assert_eq!(p.pass_mode, PassMode::Prompt, "{off}");
        }
        for on in ["true", "yes", "1"] {
            let p = parse(&[&format!("nullok={on}")], None).unwrap();
            assert!(p.nullok, "{on}");
        }
        // Switching the file's pass mode off makes room for another on the line.
        let p = parse(&["try_first_pass=false", "use_first_pass"], Some(file)).unwrap();
        assert_eq!(p.pass_mode, PassMode::UseFirstPass);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let cases: &[&[&str]] = &[
            &["bogus"],
            &["nullok=maybe"],
            &["nullok="],
            &["debug=2"],
            &["use_first_pass=off"],
            &["window"],
            &["window=-1"],
            &["window=abc"],
            &["window=101"],
            &["hotp_lookahead=1001"],
            &["lockout=0"],
            &["lockout=100", "max_lockout=50"],
            &["state_dir=relative/dir"],
            &["secret=relative.toml"],
            &["prompt="],
            &["try_first_pass", "use_first_pass"],
            &["split_pass", "use_split_code"],
            &["max_failures=99999999999"],
            &["max_failures_user=-1"],
            &["max_failures_user"],
        ];
        for args in cases {
            assert!(parse(args, None).is_err(), "{args:?}");
        }
    }

    #[test]
    fn forward_pass_is_an_unknown_argument() {
        // It checked the code before the password; split_pass + use_split_code replace it.
        for arg in ["forward_pass", "forward_pass=true", "forward_pass=false"] {
            assert_eq!(
                parse(&[arg], None),
                Err(PolicyError::UnknownArgument(arg.into())),
                "{arg}"
            );
        }
        assert!(matches!(
            parse(&[], Some("forward_pass = true")),
            Err(PolicyError::PolicyFile { .. })
        ));
    }

    #[test]
    fn bad_policy_files_are_refused() {
        for text in [
            "window = \"1\"",
            "unknown = 1",
            "policy = \"/x\"",
            "garbage",
        ] {
            assert!(
                matches!(parse(&[], Some(text)), Err(PolicyError::PolicyFile { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn enforce_after_is_a_utc_moment() {
        let day = |text: &str| parse(&[&format!("enforce_after={text}")], None);
        // `date -u -d 2026-12-13 +%s` = 1797120000.
        let deadline = day("2026-12-13").unwrap().enforce_after.unwrap();
        assert_eq!(deadline.at, 1_797_120_000);
        assert_eq!(deadline.text, "2026-12-13");
        let timed = day("2026-12-13T08:30").unwrap().enforce_after.unwrap();
        assert_eq!(timed.at, 1_797_120_000 + 8 * 3600 + 30 * 60);
        assert_eq!(timed.text, "2026-12-13 08:30 UTC");
        // The bracket form of a PAM line keeps the space.
        assert_eq!(day("2026-12-13 08:30").unwrap().enforce_after, Some(timed));
        let offset = day("2026-12-13T10:30+02:00")
            .unwrap()
            .enforce_after
            .unwrap();
        assert_eq!(offset.at, 1_797_120_000 + 8 * 3600 + 30 * 60);
        assert_eq!(offset.text, "2026-12-13 08:30 UTC");
        // Leap days and the first of March, 2000 and 2100 (`date -u -d ... +%s`).
        assert_eq!(
            day("2000-02-29").unwrap().enforce_after.unwrap().at,
            951_782_400
        );
        assert_eq!(
            day("2100-03-01").unwrap().enforce_after.unwrap().at,
            4_107_542_400
        );
        assert_eq!(day("1970-01-01").unwrap().enforce_after.unwrap().at, 0);
        let from_file = parse(&[], Some("enforce_after = \"2026-12-13\"\n")).unwrap();
        assert_eq!(from_file.enforce_after.unwrap().at, 1_797_120_000);
        for bad in [
            "",
            "tomorrow",
            "2026-13-01",
            "2026-02-30",
            "13/12/2026",
            "08:30",
            "1969-12-31",
        ] {
            assert!(
                matches!(day(bad), Err(PolicyError::BadValue { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn days_left_counts_a_started_day_as_one() {
        let deadline = Deadline::parse("2026-12-13").unwrap();
        let week_before = deadline.at - 7 * 86_400;
        assert_eq!(deadline.days_left(week_before), Some(7));
        assert_eq!(deadline.days_left(week_before + 1), Some(7));
        assert_eq!(deadline.days_left(week_before + 86_399), Some(7));
        assert_eq!(deadline.days_left(week_before + 86_401), Some(6));
        assert_eq!(deadline.days_left(deadline.at - 1), Some(1));
        assert_eq!(deadline.days_left(deadline.at), None);
        assert_eq!(deadline.days_left(deadline.at + 1), None);
    }

    #[test]
    fn a_deadline_handed_on_as_its_argument_is_the_same_deadline() {
        for written in [
            "2026-12-13",
            "2026-12-13 08:30",
            "2026-12-13T08:30:45",
            "2026-12-13T08:30:45+02:00",
            "2000-02-29T23:59:59Z",
        ] {
            let deadline = Deadline::parse(written).unwrap();
            let again = Deadline::parse(&deadline.argument()).unwrap();
            assert_eq!(again, deadline, "{written} -> {}", deadline.argument());
        }
        assert_eq!(Deadline::parse("2026-12-13").unwrap().text, "2026-12-13");
        assert_eq!(
            Deadline::parse("2026-12-13T08:30:45").unwrap().text,
            "2026-12-13 08:30:45 UTC"
        );
        assert_eq!(
            Deadline::parse("2026-12-13T08:30:45").unwrap().argument(),
            "2026-12-13T08:30:45Z"
        );
    }

    #[test]
    fn nullok_and_a_deadline_contradict_each_other() {
        let both = parse(&["nullok", "enforce_after=2026-12-13"], None);
        assert_eq!(both, Err(PolicyError::NullokWithDeadline));
        assert!(both.unwrap_err().to_string().contains("remove nullok"));
        // Both in the policy file: the same.
        assert_eq!(
            parse(&[], Some("nullok = true\nenforce_after = \"2026-12-13\"")),
            Err(PolicyError::NullokWithDeadline)
        );
        // One on the line, one in the file: the line wins, as for every key.
        let line_deadline = parse(&["enforce_after=2026-12-13"], Some("nullok = true")).unwrap();
        assert!(!line_deadline.nullok && line_deadline.enforce_after.is_some());
        let line_nullok = parse(&["nullok"], Some("enforce_after = \"2026-12-13\"")).unwrap();
        assert!(line_nullok.nullok && line_nullok.enforce_after.is_none());
        assert!(parse(
            &["nullok=false", "enforce_after=2026-12-13"],
            Some("nullok = true")
        )
        .is_ok());
    }

    #[test]
    fn secret_templates_expand() {
        let home = Path::new("/home/alice");
        assert_eq!(
            expand_secret_path("~/.otp.toml", "alice", home).unwrap(),
            PathBuf::from("/home/alice/.otp.toml")
        );
        assert_eq!(
            expand_secret_path("%h/x/%u.toml", "alice", home).unwrap(),
            PathBuf::from("/home/alice/x/alice.toml")
        );
        assert_eq!(
            expand_secret_path("/etc/otp/%u", "alice", home).unwrap(),
            PathBuf::from("/etc/otp/alice")
        );
    }

    #[test]
    fn user_names_that_escape_are_refused() {
        let home = Path::new("/home/x");
        for name in [
            "../root",
            "a/b",
            "..",
            ".",
            "",
            "a\0b",
            "a\nb",
            &"x".repeat(201),
        ] {
            assert!(!is_safe_user_name(name), "{name:?}");
            assert!(
                expand_secret_path("/etc/otp/%u", name, home).is_err(),
                "{name:?}"
            );
        }
        assert!(is_safe_user_name("alice.smith-2"));
        assert!(expand_secret_path("/etc/otp/../%u", "alice", home).is_err());
    }

    fn redis(args: &[&str]) -> Result<RedisSettings, PolicyError> {
        let mut all = vec!["store=redis"];
        all.extend_from_slice(args);
        match parse(&all, None)?.store {
            Store::Redis(settings) => Ok(settings),
            Store::File => panic!("store=redis gave the file store"),
        }
    }

    fn refused_key(args: &[&str]) -> String {
        match redis(args) {
            Err(PolicyError::BadValue { key, .. }) => key,
            other => panic!("{args:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_tcp_only_to_loopback_addresses() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://[::1]:6379",
            "redis://127.0.0.2",
        ] {
            let settings = redis(&[&format!("redis_url={url}")]).unwrap();
            assert!(!settings.tls, "{url}");
        }
        for url in [
            "redis://10.0.0.1:6379",
            "redis://localhost:6379",
            "redis://0.0.0.0:6379",
            "redis://redis.example:6379",
        ] {
            assert_eq!(
                refused_key(&[&format!("redis_url={url}")]),
                "redis_url",
                "{url}"
            );
        }
        let tls = redis(&["redis_url=rediss://redis.example:6380"]).unwrap();
        assert!(tls.tls);
        assert_eq!(tls.server_user, "redis");
    }

    #[test]
    fn sentinels_need_a_master_name_and_tls_off_this_machine() {
        let settings = redis(&[
            "redis_sentinels=10.0.0.1:26380,10.0.0.2:26380,[fd00::3]:26380",
            "redis_master=pam-otp",
            "redis_ca_file=/etc/redis/tls/ca.crt",
        ])
        .unwrap();
        assert_eq!(settings.url, None);
        let sentinels = settings.sentinels.as_deref().unwrap();
        assert_eq!(sentinels.nodes.len(), 3);
        assert_eq!(sentinels.master, "pam-otp");
        assert!(settings.tls);
        assert!(settings.location().contains("pam-otp"));
        let local = redis(&["redis_sentinels=127.0.0.1:26379", "redis_master=m"]).unwrap();
        assert!(!local.tls);
        assert_eq!(
            refused_key(&["redis_sentinels=10.0.0.1:26379", "redis_master=m"]),
            "redis_sentinels"
        );
        assert_eq!(
            refused_key(&["redis_sentinels=127.0.0.1:26379"]),
            "redis_master"
        );
        assert_eq!(
            refused_key(&["redis_sentinels=127.0.0.1", "redis_master=m"]),
            "redis_sentinels"
        );
        assert_eq!(
            refused_key(&[
                "redis_sentinels=127.0.0.1:26379",
                "redis_master=m",
                "redis_url=redis://127.0.0.1:6379"
            ]),
            "redis_sentinels"
        );
        assert_eq!(refused_key(&["redis_master=m"]), "redis_url");
        assert_eq!(
            refused_key(&["redis_sentinels=127.0.0.1:26379", "redis_master=a b"]),
            "redis_master"
        );
        let other_user = redis(&[
            "redis_url=unix:///run/redis/r.sock",
            "redis_server_user=valkey",
        ]);
        assert_eq!(other_user.unwrap().server_user, "valkey");
    }
}
