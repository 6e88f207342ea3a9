//! `otp-admin`: root's view and repair of one user's login state (status, unlock, reset),
//! through the module's own state store and lock, so it is safe while logins run.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

mod fleet;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::core::enrollment::{Enrollment, Kind};
use crate::core::state::State;
use crate::sys::clock::unix_now;
use crate::sys::log::Logger;
use crate::sys::policy::{self, expand_secret_path, Policy, PolicyError, Store};
use crate::sys::redis_store::RedisStoreError;
use crate::sys::store::{LockedState, StateStore, StoreError};
use crate::sys::user_file::{read_enrollment, Account, AccountError, UserFileError};

/// Exit status of every refusal: bad usage, unknown user, no state, not root, broken state.
pub const EXIT_REFUSED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "otp-admin",
    version,
    about = "Inspect and repair pam-otp login state (run as root)",
    after_help = "Settings come from the policy file (/etc/security/pam_otp.toml) unless \
                  overridden; they must match the module arguments of the PAM service in use.\n\
                  Exit status: 0 done, 2 refused (nothing was changed)."
)]
pub struct Cli {
    /// State directory (default: the policy file's state_dir, else /var/lib/pam-otp)
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<String>,
    /// Enrollment file, as the module's secret= (default: the policy file's, else ~/.otp.toml)
    #[arg(long, value_name = "TEMPLATE", global = true)]
    secret: Option<String>,
    /// Policy file to read [default: /etc/security/pam_otp.toml]
    #[arg(long, value_name = "FILE", global = true)]
    policy: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a user's enrollment and login state (never the secret)
    Status {
        user: String,
        /// One JSON object on stdout, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Clear a user's failures and lockout
    Unlock {
        user: String,
        /// Fleet mode: only this source's (an address, as PAM_RHOST gives it)
        #[arg(long, value_name = "ADDR")]
        source: Option<String>,
    },
    /// Drop a user's state: the HOTP counter, replay guard and spent recovery codes start over
    Reset { user: String },
}

/// Why otp-admin refused; every one exits with status 2 and changes nothing.
#[derive(Debug)]
pub enum AdminError {
    NotRoot,
    Policy(PolicyError),
    UnknownUser(String),
    Account(AccountError),
    NoState {
        user: String,
        dir: PathBuf,
    },
    StateDir {
        dir: PathBuf,
        error: io::Error,
    },
    Store(StoreError),
    Fleet(RedisStoreError),
    /// An option only the fleet store understands.
    FleetOnly(&'static str),
    Output(io::Error),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotRoot => write!(f, "must be run as root"),
            AdminError::Policy(e) => write!(f, "{e}"),
            AdminError::UnknownUser(user) => write!(f, "no such user: {user:?}"),
            AdminError::Account(e) => write!(f, "{e}"),
            AdminError::NoState { user, dir } => write!(
                f,
                "no state for {user} in {}: nothing to do (no login recorded yet)",
                dir.display()
            ),
            AdminError::StateDir { dir, error } => {
                write!(f, "state directory {}: {error}", dir.display())
            }
            AdminError::Store(e) => write!(f, "{e}"),
            AdminError::Fleet(e) => write!(f, "{e}"),
            AdminError::FleetOnly(option) => {
                write!(f, "{option} needs store = \"redis\" (fleet mode)")
            }
            AdminError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        AdminError::Store(e)
    }
}

/// Runs otp-admin with these arguments (the first is the program name).
pub fn main<I: IntoIterator<Item = OsString>>(args: I) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version print and exit 0; usage errors exit 2, as clap decides.
        Err(e) => e.exit(),
    };
    match run(&cli, unix_now()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otp-admin: {}", crate::sys::log::sanitize(&e.to_string()));
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// What the command found: the policy it applies and the account it is about.
struct Target {
    policy: Policy,
    account: Account,
}

fn target(cli: &Cli, user: &str) -> Result<Target, AdminError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(AdminError::NotRoot);
    }
    // The overrides go through the module's own argument parser, so they are checked alike.
    let mut args = Vec::new();
    if let Some(dir) = &cli.state_dir {
        args.push(format!("state_dir={dir}"));
    }
    if let Some(secret) = &cli.secret {
        args.push(format!("secret={secret}"));
    }
    if let Some(file) = &cli.policy {
        args.push(format!("policy={file}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let policy = policy::load(&args).map_err(AdminError::Policy)?;
    let account = match Account::lookup(user) {
        Ok(Some(account)) => account,
        Ok(None) | Err(AccountError::UnsafeName(_)) => {
            return Err(AdminError::UnknownUser(user.into()))
        }
        Err(e) => return Err(AdminError::Account(e)),
    };
    Ok(Target { policy, account })
}

/// The state store, or `None` if the directory does not exist yet (no login ever ran).
/// Never creates the directory, unlike a login.
fn existing_store(dir: &Path) -> Result<Option<StateStore>, AdminError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(AdminError::StateDir {
            dir: dir.into(),
            error,
        }),
        Ok(_) => Ok(Some(StateStore::open(dir)?)),
    }
}

fn run(cli: &Cli, now: u64) -> Result<String, AdminError> {
    match &cli.command {
        Command::Status { user, json } => {
            let target = target(cli, user)?;
            if let Store::Redis(settings) = &target.policy.store {
                return fleet::status(&target, settings, *json);
            }
            let status = status(&target, now)?;
            if *json {
                let mut text = serde_json::to_string_pretty(&status)
                    .map_err(|e| AdminError::Output(e.into()))?;
                text.push('\n');
                Ok(text)
            } else {
                Ok(status.to_text())
            }
        }
        Command::Unlock { user, source } => {
            let target = target(cli, user)?;
            match (&target.policy.store, source) {
                (Store::Redis(settings), _) => fleet::unlock(&target, settings, source.as_deref()),
                (Store::File, Some(_)) => Err(AdminError::FleetOnly("--source")),
                (Store::File, None) => unlock(&target, now),
            }
        }
        Command::Reset { user } => {
            let target = target(cli, user)?;
            match &target.policy.store {
                Store::Redis(settings) => fleet::reset(&target, settings),
                Store::File => reset(&target),
            }
        }
    }
}

/// The user's state under its lock, or `None` if there is none. Where there is no state
/// file, nothing is created: not the directory, not a lock file.
fn locked_state(target: &Target) -> Result<Option<(LockedState, Option<State>)>, AdminError> {
    let Some(store) = existing_store(&target.policy.state_dir)? else {
        return Ok(None);
    };
    let path = store.state_path(&target.account.name)?;
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // Anything else is for the store to judge (and report) under the lock.
        _ => {}
    }
    let locked = store.lock(&target.account.name)?;
    let state = locked.load()?;
    Ok(Some((locked, state)))
}

fn no_state(target: &Target) -> AdminError {
    AdminError::NoState {
        user: target.account.name.clone(),
        dir: target.policy.state_dir.clone(),
    }
}

fn audit(target: &Target, message: &str) {
    let mut log = Logger::syslog("otp-admin");
    log.set_user(&target.account.name);
    log.warning(message);
}

fn unlock(target: &Target, now: u64) -> Result<String, AdminError> {
    let user = &target.account.name;
    let Some((locked, Some(mut state))) = locked_state(target)? else {
        return Err(no_state(target));
    };
    let was_locked = state.is_locked(now);
    let was = format!(
        "{} failure(s), {} lockout(s){}",
        state.failures,
        state.lockouts,
        if was_locked {
            format!(", locked until {}", utc(state.locked_until))
        } else {
            String::new()
        }
    );
    if state.failures == 0 && state.lockouts == 0 && state.locked_until == 0 {
        return Ok(format!(
            "{user}: not locked and no failures; nothing changed\n"
        ));
    }
    state.failures = 0;
    state.lockouts = 0;
    state.locked_until = 0;
    locked.save(&state)?;
    drop(locked);
    audit(target, &format!("unlocked by otp-admin (was: {was})"));
    let verb = if was_locked {
        "unlocked"
    } else {
        "not locked; failures cleared"
    };
    Ok(format!("{user}: {verb} (was: {was})\n"))
}

fn reset(target: &Target) -> Result<String, AdminError> {
    let user = &target.account.name;
    let store = existing_store(&target.policy.state_dir)?.ok_or_else(|| no_state(target))?;
    let path = store.state_path(user)?;
    if matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound) {
        return Err(no_state(target));
    }
    let locked = store.lock(user)?;
    // A broken state file is exactly what reset is for (the module's error says so):
    // it is removed too, and the report names what was wrong with it.
    let broken = match locked.load() {
        Ok(Some(_)) => None,
        Ok(None) => return Err(no_state(target)),
        Err(e @ (StoreError::Corrupt { .. } | StoreError::Insecure { .. })) => Some(e),
        Err(e) => return Err(e.into()),
    };
    if !locked.remove()? {
        return Err(no_state(target));
    }
    drop(locked);
    audit(target, "state reset by otp-admin");
    let mut out = String::new();
    if let Some(e) = broken {
        let _ = writeln!(out, "{user}: removed a broken state file ({e})");
    }
    let _ = writeln!(out, "{user}: state removed ({})", path.display());
    let _ = writeln!(
        out,
        "WARNING: {user}'s login state starts over: the HOTP counter goes back to the one in \
         the enrollment file, TOTP codes already used may be accepted once more, spent \
         recovery codes work again, and failures and lockouts are forgotten. If old codes \
         may be known to someone else, have {user} enroll again (otp-setup --force)."
    );
    Ok(out)
}

/// The enrollment as far as it could be read.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    Enrolled,
    NotEnrolled,
    /// The module refuses this user's logins until the file is fixed.
    Broken,
}

/// What `status` reports; `--json` prints exactly these fields. Never the secret.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    pub user: String,
    pub enrollment_file: String,
    pub enrollment: EnrollmentStatus,
    /// Why the enrollment file is refused (`enrollment` = `broken`).
    pub enrollment_error: Option<String>,
    /// "totp" or "hotp".
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    pub algorithm: Option<&'static str>,
    pub digits: Option<u32>,
    /// TOTP seconds per step.
    pub period: Option<u64>,
    pub state_file: String,
    /// Whether a state file exists (no login recorded yet if not).
    pub has_state: bool,
    /// False if the state belongs to an earlier enrollment: the next login starts fresh,
    /// and the figures below are then those of the fresh state.
    pub state_matches_enrollment: Option<bool>,
    /// Unix time of the last accepted code.
    pub last_login: Option<u64>,
    pub last_login_utc: Option<String>,
    pub last_totp_step: Option<u64>,
    pub next_hotp_counter: Option<u64>,
    pub failures: u32,
    /// Failures that start a lockout (0: lockout is off).
    pub max_failures: u32,
    pub lockouts: u32,
    pub locked: bool,
    pub locked_until: Option<u64>,
    pub locked_until_utc: Option<String>,
    pub recovery_codes_left: Option<usize>,
    pub recovery_codes_total: Option<usize>,
}

fn status(target: &Target, now: u64) -> Result<Status, AdminError> {
    let account = &target.account;
    let path = expand_secret_path(&target.policy.secret, &account.name, &account.home)
        .map_err(AdminError::Policy)?;
    let enrollment = read_enrollment(&path, account);
    let (state_path, stored) = match existing_store(&target.policy.state_dir)? {
        None => (
            target
                .policy
                .state_dir
                .join(format!("{}.state", account.name)),
            None,
        ),
        Some(store) => {
            let path = store.state_path(&account.name)?;
            let stored = locked_state(target)?.and_then(|(_lock, state)| state);
            (path, stored)
        }
    };
    Ok(describe(
        account,
        &path,
        &state_path,
        &enrollment,
        stored,
        target.policy.limits.max_failures,
        now,
    ))
}

fn utc(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// The pure part of `status`: what the module would make of this enrollment and state.
fn describe(
    account: &Account,
    enrollment_path: &Path,
    state_path: &Path,
    enrollment: &Result<Enrollment, UserFileError>,
    stored: Option<State>,
    max_failures: u32,
    now: u64,
) -> Status {
    let has_state = stored.is_some();
    let (status, error, enrolled) = match enrollment {
        Ok(e) => (EnrollmentStatus::Enrolled, None, Some(e)),
        Err(UserFileError::NotEnrolled) => (EnrollmentStatus::NotEnrolled, None, None),
        Err(e) => (EnrollmentStatus::Broken, Some(e.to_string()), None),
    };
    // What the next login will use: a state of an earlier enrollment counts as fresh.
    let (state, matches) = match (enrolled, stored) {
        (Some(e), stored) => {
            let matches = stored.as_ref().map(|s| s.fingerprint == e.fingerprint());
            (Some(State::for_enrollment(stored, e)), matches)
        }
        (None, stored) => (stored, None),
    };
    let state = state.unwrap_or_default();
    let locked = state.is_locked(now);
    let (kind, period) = match enrolled.map(|e| e.kind) {
        Some(Kind::Totp { period }) => (Some("totp"), Some(period)),
        Some(Kind::Hotp { .. }) => (Some("hotp"), None),
        None => (None, None),
    };
    let recovery_total = enrolled.map(|e| e.recovery_codes.len());
    let recovery_left = recovery_total.map(|total| {
        (0..total)
            .filter(|i| !state.spent_recovery_codes.contains(&(*i as u32)))
            .count()
    });
    let last_login = (state.last_success > 0).then_some(state.last_success);
    Status {
        user: account.name.clone(),
        enrollment_file: enrollment_path.display().to_string(),
        enrollment: status,
        enrollment_error: error,
        kind,
        algorithm: enrolled.map(|e| e.algorithm.name()),
        digits: enrolled.map(|e| e.digits),
        period,
        state_file: state_path.display().to_string(),
        has_state,
        state_matches_enrollment: matches,
        last_login,
        last_login_utc: last_login.map(utc),
        last_totp_step: state.last_totp_step,
        next_hotp_counter: state.next_hotp_counter,
        failures: state.failures,
        max_failures,
        lockouts: state.lockouts,
        locked,
        locked_until: locked.then_some(state.locked_until),
        locked_until_utc: locked.then(|| utc(state.locked_until)),
        recovery_codes_left: recovery_left,
        recovery_codes_total: recovery_total,
    }
}

impl Status {
    /// The human-readable form: one `label: value` line per fact.
    pub fn to_text(&self) -> String {
        let mut lines: Vec<(&str, String)> = vec![("user", self.user.clone())];
        let enrollment = match (&self.enrollment, self.kind) {
            (EnrollmentStatus::Enrolled, Some(kind)) => {
                let mut what = format!(
                    "{}, {}, {} digits",
                    kind.to_uppercase(),
                    self.algorithm.unwrap_or("?"),
                    self.digits.unwrap_or(0)
                );
                if let Some(period) = self.period {
                    let _ = write!(what, ", {period} s period");
                }
                format!("{what} ({})", self.enrollment_file)
            }
            (EnrollmentStatus::Broken, _) => format!(
                "BROKEN, logins refused: {}: {}",
                self.enrollment_file,
                self.enrollment_error.as_deref().unwrap_or("?")
            ),
            _ => format!("not enrolled ({} does not exist)", self.enrollment_file),
        };
        lines.push(("enrollment", enrollment));
        let state = match (self.has_state, self.state_matches_enrollment) {
            (false, _) => format!("none yet ({}): no login recorded", self.state_file),
            (true, Some(false)) => format!(
                "{} (from an earlier enrollment: the next login starts fresh)",
                self.state_file
            ),
            (true, _) => self.state_file.clone(),
        };
        lines.push(("state", state));
        let mut last = match (&self.last_login_utc, self.last_login) {
            (Some(time), Some(unix)) => format!("{time} ({unix})"),
            _ => "never".into(),
        };
        if let Some(step) = self.last_totp_step {
            let _ = write!(last, ", TOTP step {step}");
        }
        lines.push(("last login", last));
        if let Some(counter) = self.next_hotp_counter {
            lines.push(("next HOTP counter", counter.to_string()));
        }
        let failures = if self.max_failures == 0 {
            format!(
                "{} (policy: lockout is OFF, max_failures = 0)",
                self.failures
            )
        } else {
            format!(
                "{} (policy: lockout after {})",
                self.failures, self.max_failures
            )
        };
        lines.push(("failures", failures));
        let locked = match (&self.locked_until_utc, self.locked_until) {
            (Some(time), Some(unix)) => format!(
                "YES, until {time} ({unix}); {} lockout(s) since the last success",
                self.lockouts
            ),
            _ => format!("no ({} lockout(s) since the last success)", self.lockouts),
        };
        lines.push(("locked", locked));
        let recovery = match (self.recovery_codes_left, self.recovery_codes_total) {
            (Some(left), Some(total)) => format!("{left} of {total} left"),
            _ => "unknown (no readable enrollment)".into(),
        };
        lines.push(("recovery codes", recovery));
        let width = lines
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0)
            + 1;
        let mut out = String::new();
        for (label, value) in lines {
            let _ = writeln!(out, "{:<width$} {}", format!("{label}:"), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::recovery::RecoveryHash;

    fn account() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
        }
    }

    fn enrollment(kind: &str, recovery: usize) -> Enrollment {
        let mut e = Enrollment::parse(&format!(
            "type = \"{kind}\"\ncounter = 3\nsecret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\""
        ))
        .unwrap();
        e.recovery_codes = (0..recovery)
            .map(|i| RecoveryHash::new(&format!("code{i}"), [i as u8; 16]))
            .collect();
        e
    }

    fn describe_with(e: &Result<Enrollment, UserFileError>, stored: Option<State>) -> Status {
        describe(
            &account(),
            Path::new("/home/alice/.otp.toml"),
            Path::new("/var/lib/pam-otp/alice.state"),
            e,
            stored,
            5,
            1_000_000,
        )
    }

    #[test]
    fn a_locked_user_shows_the_lock_and_never_the_secret() {
        let e = enrollment("totp", 5);
        let state = State {
            failures: 5,
            lockouts: 1,
            locked_until: 1_000_060,
            last_totp_step: Some(33_000),
            last_success: 990_000,
            spent_recovery_codes: vec![1, 3],
            ..State::fresh(&e)
        };
        let status = describe_with(&Ok(e), Some(state));
        assert!(status.locked);
        assert_eq!(status.locked_until, Some(1_000_060));
        assert_eq!(
            status.locked_until_utc.as_deref(),
            Some("1970-01-12T13:47:40Z")
        );
        assert_eq!(status.recovery_codes_left, Some(3));
        assert_eq!(status.kind, Some("totp"));
        assert_eq!(status.state_matches_enrollment, Some(true));
        let text = status.to_text();
        assert!(text.contains("locked:"), "{text}");
        assert!(text.contains("YES, until 1970-01-12T13:47:40Z"), "{text}");
        assert!(text.contains("3 of 5 left"), "{text}");
        assert!(text.contains("TOTP step 33000"), "{text}");
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"locked\":true"), "{json}");
        for shown in [text, json] {
            assert!(!shown.contains("JBSWY3DP"), "secret shown: {shown}");
        }
    }

    #[test]
    fn an_expired_lock_is_not_a_lock() {
        let e = enrollment("totp", 0);
        let state = State {
            failures: 0,
            lockouts: 1,
            locked_until: 999_999,
            ..State::fresh(&e)
        };
        let status = describe_with(&Ok(e), Some(state));
        assert!(!status.locked);
        assert_eq!(status.locked_until, None);
        assert!(status.to_text().contains("locked:         no"));
    }

    #[test]
    fn state_of_an_earlier_enrollment_counts_as_fresh() {
        let old = enrollment("hotp", 0);
        let state = State {
            failures: 5,
            locked_until: 2_000_000,
            next_hotp_counter: Some(40),
            ..State::fresh(&old)
        };
        let status = describe_with(&Ok(enrollment("totp", 2)), Some(state));
        assert_eq!(status.state_matches_enrollment, Some(false));
        assert!(!status.locked);
        assert_eq!(status.failures, 0);
        assert_eq!(status.next_hotp_counter, None);
        assert!(status.to_text().contains("next login starts fresh"));
    }

    #[test]
    fn hotp_shows_the_next_counter() {
        let e = enrollment("hotp", 0);
        let status = describe_with(&Ok(e), None);
        assert!(!status.has_state);
        assert_eq!(status.next_hotp_counter, Some(3));
        assert_eq!(status.kind, Some("hotp"));
        let text = status.to_text();
        assert!(text.contains("next HOTP counter: 3"), "{text}");
        assert!(text.contains("no login recorded"), "{text}");
    }

    #[test]
    fn missing_and_broken_enrollments_are_named() {
        let status = describe_with(&Err(UserFileError::NotEnrolled), None);
        assert_eq!(status.enrollment, EnrollmentStatus::NotEnrolled);
        assert!(status.to_text().contains("not enrolled"));
        let broken = Err(UserFileError::Insecure(
            "group or others have access".into(),
        ));
        let status = describe_with(&broken, None);
        assert_eq!(status.enrollment, EnrollmentStatus::Broken);
        assert!(status.to_text().contains("BROKEN, logins refused"));
        assert!(status.to_text().contains("group or others have access"));
    }

    #[test]
    fn arguments_parse_as_documented() {
        let cli = Cli::try_parse_from([
            "otp-admin",
            "status",
            "bob",
            "--json",
            "--state-dir",
            "/tmp/s",
        ])
        .unwrap();
        assert_eq!(cli.state_dir.as_deref(), Some("/tmp/s"));
        assert!(matches!(cli.command, Command::Status { ref user, json: true } if user == "bob"));
        assert!(Cli::try_parse_from(["otp-admin", "unlock"]).is_err());
        assert!(Cli::try_parse_from(["otp-admin", "frobnicate", "bob"]).is_err());
        assert!(Cli::try_parse_from(["otp-admin", "--secret", "/x/%u", "reset", "bob"]).is_ok());
    }
}
