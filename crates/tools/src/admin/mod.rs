//! `otp-admin`: root's view and repair of one user's login state (status, unlock, reset),
//! through the module's own state store and lock, so it is safe while logins run; and
//! enrollments into the administrator's secret store (`enroll`).

mod enroll;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

mod doctor;
mod fleet;
mod report;

use clap::{Parser, Subcommand};
use serde::Serialize;

mod state_dirs;
mod ways_in;

use pam_otp_core::enrollment::{Enrollment, Kind};
use pam_otp_core::printable::{escape, visible};
use pam_otp_core::source::Source;
use pam_otp_core::state::{
    Custody, EnrollmentRef, State, Tallies, Tally, Unlock, MAX_ENROLLMENTS, MAX_SOURCES,
};
use pam_otp_sys::account::{Account, AccountError};
use pam_otp_sys::clock::unix_now;
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::{self, expand_secret_path, Policy, PolicyError, Store};
use pam_otp_sys::redis_protocol::RedisStoreError;
use pam_otp_sys::store::{Durability, LockedState, StateStore, StoreError};
use pam_otp_sys::user_file::{read_enrollment_as, ReadAs, UserFileError};

/// Longest value `status` shows on one line (a parse error quotes a line of the file).
const MAX_STATUS_VALUE_CHARS: usize = 2000;

/// Where the PAM services are configured.
const PAM_DIR: &str = "/etc/pam.d";

/// Exit status of every refusal: bad usage, unknown user, not root, broken state.
pub const EXIT_REFUSED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "otp-admin",
    version,
    about = "Inspect and repair pam-otp login state (run as root)",
    after_help = "Settings come from the policy file (/etc/security/pam_otp.toml) unless \
                  overridden; they must match the module arguments of the PAM service in use.\n\
                  Exit status: 0 done, or nothing to do (said so; unlock or reset of a user \
                  with no state); 2 refused (nothing was changed); enroll: 1 not confirmed \
                  (nothing was written)."
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
    /// Clear a user's failures and lockouts: everywhere, or (with --source) what a success
    /// from that address would clear: its own tally and the user-wide one
    Unlock {
        user: String,
        /// The address or host name as PAM_RHOST gives it ("local" for none); an IPv6
        /// address stands for its /64
        #[arg(long, value_name = "ADDR")]
        source: Option<String>,
    },
    /// Drop a user's state: the HOTP counter, replay guard and spent recovery codes start over
    Reset { user: String },
    /// Check the PAM services, sshd, the policy file, the state directory and the
    /// enrollments for what would skip the code or lock users out (exit 0 clean,
    /// 1 warnings, 2 errors)
    Doctor(doctor::DoctorArgs),
    /// One line per account that can log in: enrolled or not, where, type, last code,
    /// failures, locked, and what each PAM service using pam_otp does with it today
    /// (exit 0; with --not-enrolled, 1 if any is listed)
    Report(report::ReportArgs),
    /// Enroll a user into the administrator's secret store (a root-owned file the user's
    /// own processes cannot read): QR code on this screen, a code from the user's app,
    /// recovery codes shown once
    #[command(mut_arg("file", |arg| arg.help(
        "File to write [default: /var/lib/pam-otp/secrets/USER.toml]; every directory \
         from / down must be root's and writable by no one else")))]
    #[command(mut_arg("issuer", |arg| arg.help(
        "Provider name shown in the app [default: the host name followed by \" sudo\", \
         so that it is not mistaken for otp-setup's entry]")))]
    Enroll {
        user: String,
        #[command(flatten)]
        choices: crate::setup::Choices,
    },
}

/// Why otp-admin refused; every one exits with status 2 and changes nothing.
#[derive(Debug)]
pub enum AdminError {
    NotRoot,
    Policy(PolicyError),
    UnknownUser(String),
    Account(AccountError),
    StateDir { dir: PathBuf, error: io::Error },
    Store(StoreError),
    Fleet(RedisStoreError),
    Output(io::Error),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotRoot => write!(f, "must be run as root"),
            AdminError::Policy(e) => write!(f, "{e}"),
            AdminError::UnknownUser(user) => write!(
                f,
                "no such user: \"{}\"",
                escape(user, MAX_STATUS_VALUE_CHARS)
            ),
            AdminError::Account(e) => write!(f, "{e}"),
            AdminError::StateDir { dir, error } => {
                write!(f, "state directory {}: {error}", dir.display())
            }
            AdminError::Store(e) => write!(f, "{e}"),
            AdminError::Fleet(e) => write!(f, "{e}"),
            AdminError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::NotRoot | AdminError::UnknownUser(_) => None,
            AdminError::Policy(e) => Some(e),
            AdminError::Account(e) => Some(e),
            AdminError::StateDir { error, .. } => Some(error),
            AdminError::Store(e) => Some(e),
            AdminError::Fleet(e) => Some(e),
            AdminError::Output(e) => Some(e),
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
    // doctor has exit statuses of its own (clean, warnings, errors).
    if let Command::Doctor(args) = &cli.command {
        return doctor::main(args);
    }
    if let Command::Report(args) = &cli.command {
        return report::main(&cli, args);
    }
    if let Command::Enroll { user, choices } = &cli.command {
        return enroll::main(&cli, user, choices);
    }
    match run(&cli, unix_now()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otp-admin: {}", error_line(&e));
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

/// An error as one line on root's terminal. The values in it were quoted and escaped
/// when the message was composed, so only what could still move the cursor or break the
/// line is escaped here: escaping the whole message again would put a backslash before
/// every one of those quotes.
fn error_line(e: &dyn fmt::Display) -> String {
    let text = e.to_string();
    let mut shown: String = text.chars().take(MAX_STATUS_VALUE_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    visible(&shown)
}

/// What the command found: the policy it applies and the account it is about.
struct Target {
    policy: Policy,
    account: Account,
}

fn target(cli: &Cli, user: &str) -> Result<Target, AdminError> {
    let policy = cli_policy(cli)?;
    let account = match Account::lookup(user) {
        Ok(Some(account)) => account,
        Ok(None) | Err(AccountError::UnsafeName(_)) => {
            return Err(AdminError::UnknownUser(user.into()))
        }
        Err(e) => return Err(AdminError::Account(e)),
    };
    Ok(Target { policy, account })
}

/// The policy otp-admin applies: the policy file with the command line's overrides.
fn cli_policy(cli: &Cli) -> Result<Policy, AdminError> {
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
    policy::load(&args).map_err(AdminError::Policy)
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
            let status = match &target.policy.store {
                Store::Redis(settings) => fleet::status(&target, settings)?,
                Store::File => status(&target, now)?,
            };
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
            let source = source.as_deref().map(Source::from_rhost);
            match &target.policy.store {
                Store::Redis(settings) => fleet::unlock(&target, settings, source.as_ref()),
                Store::File => unlock(&target, source.as_ref(), now),
            }
        }
        Command::Reset { user } => {
            let target = target(cli, user)?;
            match &target.policy.store {
                Store::Redis(settings) => fleet::reset(&target, settings),
                Store::File => reset(&target),
            }
        }
        Command::Doctor(_) => unreachable!("main runs doctor itself"),
        Command::Report(_) => unreachable!("main runs report itself"),
        // Interactive: handled by `main` before `run`.
        Command::Enroll { .. } => unreachable!("otp-admin enroll runs from main"),
    }
}

/// The user's state under its lock, or `None` if there is none. Where there is no state
/// file, nothing is created: not the directory, not a lock file.
fn locked_state(target: &Target) -> Result<Option<(LockedState, Option<State>)>, AdminError> {
    let Some(store) = existing_store(&target.policy.state_dir)? else {
        return Ok(None);
    };
    let account = &target.account;
    let missing = |path: &Path| matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound);
    // Anything but "not found" is for the store to judge (and report) under the lock.
    if missing(&store.state_path(account.uid)) {
        return Ok(None);
    }
    let locked = store.lock(account.uid)?;
    let state = locked.load()?;
    Ok(Some((locked, state)))
}

/// What unlock and reset say when there is no state: no login recorded yet leaves
/// nothing to clear, which is not an error (exit 0), so that a script going through a
/// list of users does not stop at one who never logged in.
fn nothing_to_do(target: &Target) -> String {
    format!(
        "{}: no state in {} (no login recorded yet); nothing changed\n",
        target.account.name,
        target.policy.state_dir.display()
    )
}

fn audit(target: &Target, message: &str) {
    let mut log = Logger::syslog("otp-admin");
    log.set_user(&target.account.name);
    log.warning(message);
}

/// One line on a tally: failures, lockouts and the lock in force, if any.
fn tally_text(tally: &Tally, now: u64) -> String {
    let mut text = format!(
        "{} failure(s), {} lockout(s)",
        tally.failures, tally.lockouts
    );
    if tally.is_locked(now) {
        let _ = write!(text, ", locked until {}", utc(tally.locked_until));
    }
    text
}

/// What the state says about the scopes `what` clears.
fn unlock_scope_text(state: &State, what: Unlock, now: u64) -> String {
    let mut parts = vec![format!("user-wide {}", tally_text(&state.all.user, now))];
    if state.protected.user != Tally::default() {
        parts.push(format!(
            "with the store's enrollment {}",
            tally_text(&state.protected.user, now)
        ));
    }
    let mut source_part = |key: &str, tally: &Tally| {
        parts.push(format!(
            "source {}: {}",
            escape(key, MAX_STATUS_VALUE_CHARS),
            tally_text(tally, now)
        ))
    };
    match what {
        Unlock::Source(source) | Unlock::Success(source, _) => {
            for tallies in [&state.all, &state.protected] {
                if let Some(tally) = tallies.sources.get(source.as_str()) {
                    source_part(source.as_str(), tally);
                }
            }
        }
        Unlock::Everything => {
            for tallies in [&state.all, &state.protected] {
                for (key, tally) in &tallies.sources {
                    source_part(key, tally);
                }
                if tallies.overflow != Tally::default() {
                    source_part("(other sources)", &tallies.overflow);
                }
            }
        }
    }
    parts.join("; ")
}

fn unlock(target: &Target, source: Option<&Source>, now: u64) -> Result<String, AdminError> {
    let Some((locked, Some(mut state))) = locked_state(target)? else {
        return Ok(nothing_to_do(target));
    };
    let unlocked = unlock_state(target, &mut state, source, now);
    if unlocked.changed {
        locked.save(&state, Durability::Synced)?;
        drop(locked);
        audit(target, &unlocked.audit);
    }
    Ok(unlocked.message)
}

/// What `unlock` did to a state: whether it changed, what to say and what to log.
struct Unlocked {
    changed: bool,
    message: String,
    audit: String,
}

/// Unlocks `state` (of the target's person) at `now`: everything, or what a success from
/// `source` would clear. The same words for every store.
fn unlock_state(target: &Target, state: &mut State, source: Option<&Source>, now: u64) -> Unlocked {
    let user = &target.account.name;
    let what = match source {
        Some(source) => Unlock::Source(source),
        None => Unlock::Everything,
    };
    let was_locked = match source {
        Some(source) => state
            .lock_for(source, Custody::Administrator, now)
            .is_some(),
        None => state.any_locked(now),
    };
    let was = unlock_scope_text(state, what, now);
    let scope = match source {
        Some(source) => format!(" from {}", escape(source.as_str(), MAX_STATUS_VALUE_CHARS)),
        None => String::new(),
    };
    // The same function a successful login uses: one rule for what "unlocked" means.
    if !state.unlock(what) {
        return Unlocked {
            changed: false,
            message: format!("{user}{scope}: not locked and no failures; nothing changed\n"),
            audit: String::new(),
        };
    }
    let verb = if was_locked {
        "unlocked"
    } else {
        "not locked; failures cleared"
    };
    Unlocked {
        changed: true,
        message: format!("{user}{scope}: {verb} (was: {was})\n"),
        audit: format!("unlocked{scope} by otp-admin (was: {was})"),
    }
}

fn reset(target: &Target) -> Result<String, AdminError> {
    let user = &target.account.name;
    let Some(store) = existing_store(&target.policy.state_dir)? else {
        return Ok(nothing_to_do(target));
    };
    let path = store.state_path(target.account.uid);
    if matches!(fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound) {
        return Ok(nothing_to_do(target));
    }
    let locked = store.lock(target.account.uid)?;
    // A broken state file is exactly what reset is for (the module's error says so):
    // it is removed too, and the report names what was wrong with it.
    let broken = match locked.load() {
        Ok(Some(_)) => None,
        Ok(None) => return Ok(nothing_to_do(target)),
        Err(e @ (StoreError::Corrupt { .. } | StoreError::Insecure { .. })) => Some(e),
        Err(e) => return Err(e.into()),
    };
    if !locked.remove()? {
        return Ok(nothing_to_do(target));
    }
    drop(locked);
    audit(target, "state reset by otp-admin");
    let mut out = String::new();
    if let Some(e) = broken {
        let _ = writeln!(out, "{user}: removed a broken state file ({e})");
    }
    let _ = writeln!(out, "{user}: state removed ({})", path.display());
    out.push_str(&reset_warning(user));
    Ok(out)
}

/// What `reset` warns of, for every store.
fn reset_warning(user: &str) -> String {
    format!(
        "WARNING: {user}'s login state starts over: the HOTP counter goes back to the one in \
         the enrollment file, TOTP codes already used may be accepted once more, spent \
         recovery codes work again, and failures and lockouts are forgotten. If old codes \
         may be known to someone else, enroll {user} again (otp-setup --force as {user}, or \
         otp-admin enroll {user} --force for the administrator's store).\n"
    )
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

/// One remembered source in `status`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SourceStatus {
    /// The source key: an IPv4 address, an IPv6 /64, a host name, or "local".
    pub source: String,
    /// Failures since the source's last success or lockout.
    pub failures: u32,
    /// Lockouts since the last success from it.
    pub lockouts: u32,
    pub locked: bool,
    pub locked_until: Option<u64>,
    pub locked_until_utc: Option<String>,
}

/// What `status` reports; `--json` prints exactly these fields. Never the secret.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    pub user: String,
    pub uid: u32,
    pub enrollment_file: String,
    pub enrollment: EnrollmentStatus,
    /// Why the enrollment file is refused (`enrollment` = `broken`).
    pub enrollment_error: Option<String>,
    /// Whose rights a login reads the file with: "root" (the administrator's store: the
    /// user's own processes cannot read it) or "user" (the user's own file).
    pub enrollment_read_as: Option<&'static str>,
    /// "totp" or "hotp".
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    pub algorithm: Option<&'static str>,
    pub digits: Option<u32>,
    /// TOTP seconds per step.
    pub period: Option<u64>,
    /// Where the person's state is kept: "file" (the state file) or "redis" (the fleet's
    /// shared record).
    pub store: &'static str,
    /// The person's state file (one per UID, shared by every account with that UID), or
    /// the fleet's shared record and where it is.
    pub state_file: String,
    /// Whether a state file exists (no login recorded yet if not).
    pub has_state: bool,
    /// Whether the state holds a record of this enrollment (false: its next login starts
    /// its replay guard, counter and recovery codes afresh; failures and locks stay).
    pub enrollment_used: Option<bool>,
    /// Enrollment records kept for this person (at most 8).
    pub enrollments_kept: usize,
    /// Unix time of the last accepted code, whichever enrollment.
    pub last_login: Option<u64>,
    pub last_login_utc: Option<String>,
    pub last_totp_step: Option<u64>,
    pub next_hotp_counter: Option<u64>,
    /// Failures from all sources since the last success or user-wide lockout.
    pub failures: u32,
    /// Failures from one source that lock it (0: lockout is off).
    pub max_failures: u32,
    /// Failures from all sources that lock the user everywhere (0: no ceiling).
    pub max_failures_user: u32,
    /// User-wide lockouts since the last success.
    pub lockouts: u32,
    /// Locked from everywhere (the user-wide ceiling).
    pub user_locked: bool,
    /// Locked somewhere: everywhere, or from at least one source.
    pub locked: bool,
    /// The latest end of a lock in force.
    pub locked_until: Option<u64>,
    pub locked_until_utc: Option<String>,
    /// Every remembered source (at most 32), locked ones first.
    pub sources: Vec<SourceStatus>,
    /// Failures counted for sources that found every table entry locked.
    pub other_sources: Option<SourceStatus>,
    /// The failures with the administrator's store's enrollment, which only a code from
    /// it (or unlock) clears; `None` while there are none.
    pub store_enrollment: Option<StoreTallies>,
    pub recovery_codes_left: Option<usize>,
    pub recovery_codes_total: Option<usize>,
    /// PAM services by the state directory they use, when they use more than one: each
    /// directory keeps its own replay guard and guess budget. Empty when all agree.
    pub split_state_dirs: BTreeMap<String, Vec<String>>,
}

/// The state file of the target's person under the state directory.
fn state_path(target: &Target) -> PathBuf {
    target
        .policy
        .state_dir
        .join(pam_otp_sys::store::state_file_name(target.account.uid))
}

fn status(target: &Target, now: u64) -> Result<Status, AdminError> {
    let stored = match existing_store(&target.policy.state_dir)? {
        None => None,
        Some(_) => locked_state(target)?.and_then(|(_lock, state)| state),
    };
    status_of(
        target,
        "file",
        &state_path(target).display().to_string(),
        stored,
        now,
    )
}

/// `status` of the state `stored` (kept in `location` by `store`), judged at `now`.
fn status_of(
    target: &Target,
    store: &'static str,
    location: &str,
    stored: Option<State>,
    now: u64,
) -> Result<Status, AdminError> {
    let account = &target.account;
    let path = expand_secret_path(&target.policy.secret, &account.name, &account.home)
        .map_err(AdminError::Policy)?;
    let (enrollment, read_as) = match read_enrollment_as(&path, account) {
        Ok((enrollment, read_as)) => (Ok(enrollment), Some(read_as)),
        Err(e) => (Err(e), None),
    };
    let mut status = describe(
        account,
        &path,
        Path::new(location),
        &enrollment,
        stored,
        &target.policy.limits,
        now,
    );
    status.store = store;
    let groups = state_dirs::split_guard(&state_dirs::state_dirs_of_services(Path::new(PAM_DIR)));
    status.split_state_dirs = groups
        .into_iter()
        .map(|(dir, services)| (dir.display().to_string(), services))
        .collect();
    status.enrollment_read_as = read_as.map(|read_as| match read_as {
        ReadAs::Root => "root",
        ReadAs::User => "user",
    });
    Ok(status)
}

fn utc(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn source_status(source: &str, tally: &Tally, now: u64) -> SourceStatus {
    let locked = tally.is_locked(now);
    SourceStatus {
        source: source.to_string(),
        failures: tally.failures,
        lockouts: tally.lockouts,
        locked,
        locked_until: locked.then_some(tally.locked_until),
        locked_until_utc: locked.then(|| utc(tally.locked_until)),
    }
}

/// The tallies that guard the administrator's store's enrollment, as `status` shows them.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct StoreTallies {
    /// Failures from all sources since the last success with the store's enrollment.
    pub failures: u32,
    /// User-wide lockouts since then.
    pub lockouts: u32,
    /// The latest end of a lock in force on these tallies (user-wide or a source's).
    pub locked_until: Option<u64>,
    pub locked_until_utc: Option<String>,
}

/// The pure part of `status`: what the module would make of this enrollment and state.
fn describe(
    account: &Account,
    enrollment_path: &Path,
    state_path: &Path,
    enrollment: &Result<Enrollment, UserFileError>,
    stored: Option<State>,
    limits: &pam_otp_core::decision::Limits,
    now: u64,
) -> Status {
    let has_state = stored.is_some();
    let (status, error, enrolled) = match enrollment {
        Ok(e) => (EnrollmentStatus::Enrolled, None, Some(e)),
        Err(UserFileError::NotEnrolled) => (EnrollmentStatus::NotEnrolled, None, None),
        Err(e) => (EnrollmentStatus::Broken, Some(e.to_string()), None),
    };
    let state = stored.unwrap_or_default();
    // The custody does not change the record found; the enrollment's reader says it.
    let reference =
        enrolled.map(|e| EnrollmentRef::new(e, &enrollment_path.to_string_lossy(), Custody::User));
    let record = reference.as_ref().map(|r| state.record(r));
    let enrollment_used = reference
        .as_ref()
        .map(|r| state.enrollments.contains_key(&r.fingerprint));
    let mut sources: Vec<SourceStatus> = state
        .all
        .sources
        .iter()
        .map(|(key, tally)| source_status(key, tally, now))
        .collect();
    sources.sort_by_key(|s| {
        (
            !s.locked,
            std::cmp::Reverse(s.locked_until),
            s.source.clone(),
        )
    });
    let other_sources = (state.all.overflow != Tally::default())
        .then(|| source_status("(other sources)", &state.all.overflow, now));
    let protected = &state.protected;
    let store_locked_until = protected.latest_lock_end(now);
    let store_enrollment = (*protected != Tallies::default()).then(|| StoreTallies {
        failures: protected.user.failures,
        lockouts: protected.user.lockouts,
        locked_until: store_locked_until,
        locked_until_utc: store_locked_until.map(utc),
    });
    let user_locked = state.all.user.is_locked(now) || protected.user.is_locked(now);
    let user_locked_until = [&state.all.user, &protected.user]
        .into_iter()
        .filter(|t| t.is_locked(now))
        .map(|t| t.locked_until)
        .max();
    let locked_until = sources
        .iter()
        .chain(other_sources.iter())
        .filter_map(|s| s.locked_until)
        .chain(user_locked_until)
        .chain(store_locked_until)
        .max();
    let (kind, period) = match enrolled.map(|e| e.kind) {
        Some(Kind::Totp { period }) => (Some("totp"), Some(period)),
        Some(Kind::Hotp { .. }) => (Some("hotp"), None),
        None => (None, None),
    };
    let recovery_total = enrolled.map(|e| e.recovery_codes.len());
    let recovery_left = recovery_total.zip(record.as_ref()).map(|(total, record)| {
        (0..total)
            .filter(|i| !record.spent_recovery_codes.contains(&(*i as u32)))
            .count()
    });
    let last_login = (state.last_success > 0).then_some(state.last_success);
    Status {
        user: account.name.clone(),
        uid: account.uid,
        enrollment_file: enrollment_path.display().to_string(),
        enrollment: status,
        enrollment_error: error,
        enrollment_read_as: None,
        kind,
        algorithm: enrolled.map(|e| e.algorithm.name()),
        digits: enrolled.map(|e| e.digits),
        period,
        store: "file",
        state_file: state_path.display().to_string(),
        has_state,
        enrollment_used,
        enrollments_kept: state.enrollments.len(),
        last_login,
        last_login_utc: last_login.map(utc),
        last_totp_step: record.as_ref().and_then(|r| r.last_totp_step),
        next_hotp_counter: record.as_ref().and_then(|r| r.next_hotp_counter),
        failures: state.all.user.failures,
        max_failures: limits.max_failures,
        max_failures_user: limits.max_failures_user,
        lockouts: state.all.user.lockouts,
        user_locked,
        locked: locked_until.is_some(),
        locked_until,
        locked_until_utc: locked_until.map(utc),
        sources,
        other_sources,
        store_enrollment,
        recovery_codes_left: recovery_left,
        recovery_codes_total: recovery_total,
        split_state_dirs: BTreeMap::new(),
    }
}

impl Status {
    /// The human-readable form: one `label: value` line per fact. Everything that came from
    /// a file or the network is escaped (no control character reaches the terminal).
    pub fn to_text(&self) -> String {
        // Values are escaped once, where the lines are written below.
        let sanitize = |text: &str| text.to_string();
        let mut lines: Vec<(&str, String)> = vec![(
            "user",
            format!("{} (uid {})", sanitize(&self.user), self.uid),
        )];
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
                let layout = match self.enrollment_read_as {
                    Some("root") => ": the administrator's store, read as root".to_string(),
                    Some(_) => format!(": {}'s own file, read as {}", self.user, self.user),
                    None => String::new(),
                };
                format!("{what} ({}{layout})", self.enrollment_file)
            }
            (EnrollmentStatus::Broken, _) => format!(
                "BROKEN, logins refused: {}: {}",
                sanitize(&self.enrollment_file),
                sanitize(self.enrollment_error.as_deref().unwrap_or("?"))
            ),
            _ => format!(
                "not enrolled ({} does not exist)",
                sanitize(&self.enrollment_file)
            ),
        };
        lines.push(("enrollment", enrollment));
        let state = match (self.has_state, self.enrollment_used) {
            (false, _) => format!("none yet ({}): no login recorded", self.state_file),
            (true, Some(false)) => format!(
                "{} (this enrollment not used yet: its first login starts its replay guard \
                 afresh; failures and locks stay)",
                self.state_file
            ),
            (true, _) => self.state_file.clone(),
        };
        lines.push(("state", state));
        lines.push((
            "enrollments kept",
            format!("{} (of {MAX_ENROLLMENTS})", self.enrollments_kept),
        ));
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
        let failures = match (self.max_failures, self.max_failures_user) {
            (0, _) => format!(
                "{} (policy: lockout is OFF, max_failures = 0)",
                self.failures
            ),
            (per_source, 0) => format!(
                "{} (policy: a source locks after {per_source}; no user-wide ceiling)",
                self.failures
            ),
            (per_source, user) => format!(
                "{} of {user} (policy: a source locks after {per_source}, the user everywhere after {user})",
                self.failures
            ),
        };
        lines.push(("failures", failures));
        if let Some(store) = &self.store_enrollment {
            let mut text = format!(
                "{} failure(s), {} lockout(s) with the administrator's store's enrollment \
                 (only a code from it, or otp-admin unlock, clears these)",
                store.failures, store.lockouts
            );
            if let Some(until) = &store.locked_until_utc {
                let _ = write!(text, "; LOCKED until {until}");
            }
            lines.push(("store failures", text));
        }
        let locked = if self.user_locked {
            format!(
                "YES, from every source, until {}; {} user-wide lockout(s) since the last success",
                self.locked_until_utc.as_deref().unwrap_or("?"),
                self.lockouts
            )
        } else {
            match (&self.locked_until_utc, self.locked_until) {
                (Some(time), Some(unix)) => {
                    format!("YES, until {time} ({unix}), from the sources below only")
                }
                _ => format!(
                    "no ({} user-wide lockout(s) since the last success)",
                    self.lockouts
                ),
            }
        };
        lines.push(("locked", locked));
        let locked_sources: Vec<&SourceStatus> = self
            .sources
            .iter()
            .chain(self.other_sources.iter())
            .filter(|s| s.locked)
            .collect();
        for source in &locked_sources {
            lines.push((
                "locked source",
                format!(
                    "{} until {} ({} lockout(s))",
                    sanitize(&source.source),
                    source.locked_until_utc.as_deref().unwrap_or("?"),
                    source.lockouts
                ),
            ));
        }
        let failing = self
            .sources
            .iter()
            .filter(|s| !s.locked && s.failures > 0)
            .count();
        lines.push((
            "sources",
            format!(
                "{} remembered (of {MAX_SOURCES}): {} locked, {failing} with failures",
                self.sources.len(),
                locked_sources.len()
            ),
        ));
        let recovery = match (self.recovery_codes_left, self.recovery_codes_total) {
            (Some(left), Some(total)) => format!("{left} of {total} left"),
            _ => "unknown (no readable enrollment)".into(),
        };
        lines.push(("recovery codes", recovery));
        if !self.split_state_dirs.is_empty() {
            let groups: Vec<String> = self
                .split_state_dirs
                .iter()
                .map(|(dir, services)| format!("{dir} ({})", services.join(", ")))
                .collect();
            lines.push((
                "WARNING",
                format!(
                    "PAM services use different state_dir values, so each keeps its own replay \
                     guard and guess budget (a code works once on each): {}",
                    groups.join("; ")
                ),
            ));
        }
        let width = lines
            .iter()
            .map(|(label, _)| label.len())
            .max()
            .unwrap_or(0)
            + 1;
        let mut out = String::new();
        for (label, value) in lines {
            // Values carry what users control (their file's parse errors, file names):
            // escaped, so nothing reaches root's terminal as a control sequence or a line.
            let value = escape(&value, MAX_STATUS_VALUE_CHARS);
            let _ = writeln!(out, "{:<width$} {}", format!("{label}:"), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_otp_core::recovery::RecoveryHash;

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

    const FILE: &str = "/home/alice/.otp.toml";

    fn describe_with(e: &Result<Enrollment, UserFileError>, stored: Option<State>) -> Status {
        describe(
            &account(),
            Path::new(FILE),
            Path::new("/var/lib/pam-otp/uid-1000.state"),
            e,
            stored,
            &pam_otp_core::decision::Limits::default(),
            1_000_000,
        )
    }

    fn locked_tally(until: u64) -> Tally {
        Tally {
            failures: 0,
            lockouts: 1,
            locked_until: until,
            last_failure: until - 60,
        }
    }

    #[test]
    fn a_locked_source_is_listed_and_the_secret_never_shown() {
        let e = enrollment("totp", 5);
        let mut state = State::default();
        let enrolled = EnrollmentRef::new(&e, FILE, Custody::User);
        let record = pam_otp_core::state::EnrollmentRecord {
            last_totp_step: Some(33_000),
            spent_recovery_codes: vec![1, 3],
            ..enrolled.fresh_record()
        };
        assert!(state.accept(&enrolled, record, 990_000));
        state.all.user.failures = 7;
        state
            .all
            .sources
            .insert("127.0.0.2".into(), locked_tally(1_000_060));
        state.all.sources.insert(
            "2001:db8::/64".into(),
            Tally {
                failures: 2,
                last_failure: 999_000,
                ..Tally::default()
            },
        );
        state
            .all
            .sources
            .insert("\u{1b}[2Jevil".into(), locked_tally(1_000_030));
        let status = describe_with(&Ok(e), Some(state));
        assert!(status.locked && !status.user_locked);
        assert_eq!(status.locked_until, Some(1_000_060));
        assert_eq!(status.sources[0].source, "127.0.0.2");
        assert!(status.sources[0].locked);
        assert_eq!(status.recovery_codes_left, Some(3));
        assert_eq!(status.enrollment_used, Some(true));
        let text = status.to_text();
        assert!(
            text.contains("127.0.0.2 until 1970-01-12T13:47:40Z (1 lockout(s))"),
            "{text}"
        );
        assert!(text.contains("from the sources below only"), "{text}");
        assert!(text.contains("7 of 20"), "{text}");
        assert!(
            text.contains("3 remembered (of 32): 2 locked, 1 with failures"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}'),
            "raw escape reached the terminal: {text}"
        );
        assert!(text.contains("3 of 5 left"), "{text}");
        assert!(text.contains("TOTP step 33000"), "{text}");
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"locked\":true"), "{json}");
        for shown in [text, json] {
            assert!(!shown.contains("JBSWY3DP"), "secret shown: {shown}");
        }
    }

    #[test]
    fn a_user_wide_lock_says_every_source() {
        let e = enrollment("totp", 0);
        let state = State {
            all: Tallies {
                user: locked_tally(1_000_500),
                ..Tallies::default()
            },
            ..State::default()
        };
        let status = describe_with(&Ok(e), Some(state));
        assert!(status.user_locked);
        assert!(status
            .to_text()
            .contains("YES, from every source, until 1970-01-12T13:55:00Z"));
    }

    #[test]
    fn an_expired_lock_is_not_a_lock() {
        let e = enrollment("totp", 0);
        let mut state = State::default();
        state
            .all
            .sources
            .insert("local".into(), locked_tally(999_999));
        let status = describe_with(&Ok(e), Some(state));
        assert!(!status.locked);
        assert_eq!(status.locked_until, None);
        let text = status.to_text();
        let locked_line = text.lines().find(|l| l.starts_with("locked:")).unwrap();
        assert!(
            locked_line.ends_with("no (0 user-wide lockout(s) since the last success)"),
            "{text}"
        );
    }

    #[test]
    fn another_enrollment_keeps_the_failures_and_locks() {
        let old = enrollment("hotp", 0);
        let mut state = State::default();
        let enrolled = EnrollmentRef::new(&old, "/etc/otp/alice.toml", Custody::User);
        let record = pam_otp_core::state::EnrollmentRecord {
            next_hotp_counter: Some(40),
            ..enrolled.fresh_record()
        };
        assert!(state.accept(&enrolled, record, 900_000));
        state.all.user = locked_tally(2_000_000);
        state.all.user.failures = 3;
        let status = describe_with(&Ok(enrollment("totp", 2)), Some(state));
        assert_eq!(status.enrollment_used, Some(false));
        assert!(status.locked);
        assert_eq!(status.failures, 3);
        assert_eq!(status.next_hotp_counter, None);
        assert!(status.to_text().contains("this enrollment not used yet"));
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
    fn status_says_whose_rights_the_file_is_read_with() {
        let mut status = describe_with(&Ok(enrollment("totp", 0)), None);
        status.enrollment_read_as = Some("root");
        let text = status.to_text();
        assert!(
            text.contains("(/home/alice/.otp.toml: the administrator's store, read as root)"),
            "{text}"
        );
        status.enrollment_read_as = Some("user");
        let text = status.to_text();
        assert!(
            text.contains(": alice's own file, read as alice)"),
            "{text}"
        );
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"enrollment_read_as\":\"user\""), "{json}");
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
        let cli = Cli::try_parse_from(["otp-admin", "unlock", "bob", "--source", "::1"]).unwrap();
        assert!(
            matches!(cli.command, Command::Unlock { ref source, .. } if source.as_deref() == Some("::1"))
        );
        assert!(Cli::try_parse_from(["otp-admin", "frobnicate", "bob"]).is_err());
        assert!(Cli::try_parse_from(["otp-admin", "--secret", "/x/%u", "reset", "bob"]).is_ok());
        let cli = Cli::try_parse_from([
            "otp-admin",
            "enroll",
            "bob",
            "--type",
            "hotp",
            "--digits",
            "8",
            "--file",
            "/x/b.toml",
            "--qr",
            "none",
            "--no-confirm",
            "--force",
        ])
        .unwrap();
        assert!(
            matches!(&cli.command, Command::Enroll { user, choices } if user == "bob" && choices.digits == Some(8) && choices.force)
        );
        assert!(Cli::try_parse_from(["otp-admin", "enroll", "bob", "--digits", "9"]).is_err());
        assert!(Cli::try_parse_from([
            "otp-admin",
            "enroll",
            "bob",
            "--import-google-authenticator"
        ])
        .is_err());
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_lower_layers_error_is_the_source() {
        use std::error::Error;
        let store = AdminError::Store(StoreError::Io {
            path: "/run/x".into(),
            action: "lock",
            error: io::Error::from(io::ErrorKind::WouldBlock),
        });
        let inner = store
            .source()
            .and_then(|e| e.downcast_ref::<StoreError>())
            .expect("the StoreError");
        assert!(matches!(inner, StoreError::Io { action: "lock", .. }));
        assert_eq!(
            inner
                .source()
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind),
            Some(io::ErrorKind::WouldBlock)
        );
        let policy = AdminError::Policy(PolicyError::ConflictingPassModes);
        assert_eq!(
            policy
                .source()
                .and_then(|e| e.downcast_ref::<PolicyError>()),
            Some(&PolicyError::ConflictingPassModes)
        );
        let output = AdminError::Output(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(output
            .source()
            .and_then(|e| e.downcast_ref::<io::Error>())
            .is_some());
        assert!(AdminError::NotRoot.source().is_none());
    }
}
