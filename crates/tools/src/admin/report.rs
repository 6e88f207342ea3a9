//! `otp-admin report`: every account that can log in, whether it is enrolled, its state,
//! and what each PAM service using pam_otp would do with it today. Reads only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::{cli_policy, error_line, existing_store, utc, AdminError, Cli, EXIT_REFUSED, PAM_DIR};
use crate::admin::state_dirs::{is_include_file, pam_otp_lines_of_services};
use crate::admin::ways_in;
use pam_otp_core::enrollment::Kind;
use pam_otp_core::printable::escape;
use pam_otp_core::state::State;
use pam_otp_sys::account::Account;
use pam_otp_sys::clock::unix_now;
use pam_otp_sys::policy::{
    self, expand_secret_path, PassMode, Policy, DEFAULT_SECRET, STORE_SECRET,
};
use pam_otp_sys::user_file::{read_enrollment_as, UserFileError};
use std::collections::BTreeMap;

/// Longest user-written value shown (names, shells).
const MAX_SHOWN_CHARS: usize = 64;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// One JSON array on stdout, for scripts
    #[arg(long)]
    json: bool,
    /// Only the accounts with no enrollment; exit status 1 if there are any
    #[arg(long)]
    not_enrolled: bool,
}

/// One account that can log in.
#[derive(Debug, Serialize)]
struct Line {
    user: String,
    uid: u32,
    /// "yes", "no" or "broken" (the module refuses it until fixed).
    enrolled: &'static str,
    /// Where enrollments were found: "home" (~/.otp.toml), "store" (the administrator's).
    #[serde(rename = "where")]
    found_in: Vec<&'static str>,
    #[serde(rename = "type")]
    kind: Option<&'static str>,
    last_code: Option<u64>,
    last_code_utc: Option<String>,
    failures: u32,
    locked: bool,
    /// Per PAM service using pam_otp: "asked", "passes", "passes until DATE", "refused
    /// (WHY)".
    services: BTreeMap<String, String>,
}

pub fn main(cli: &Cli, args: &ReportArgs) -> ExitCode {
    let policy = match cli_policy(cli) {
        Ok(policy) => policy,
        Err(e) => {
            eprintln!("otp-admin: {}", error_line(&e));
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let now = unix_now();
    let services = otp_services(Path::new(PAM_DIR));
    let lines: Vec<Line> = login_accounts()
        .iter()
        .map(|account| line(account, &policy, &services, now))
        .filter(|line| !args.not_enrolled || line.enrolled != "yes")
        .collect();
    let text = if args.json {
        match serde_json::to_string_pretty(&lines) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("otp-admin: cannot write the output: {e}");
                return ExitCode::from(EXIT_REFUSED);
            }
        }
    } else {
        as_text(&lines)
    };
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        eprintln!("otp-admin: {}", error_line(&AdminError::Output(e)));
        return ExitCode::from(EXIT_REFUSED);
    }
    if args.not_enrolled && !lines.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every service in `pam_dir` with a pam_otp line that checks a code, with the policy
/// of its first such line (or why the module refuses its settings). Include files are
/// counted in the services that include them, not on their own.
fn otp_services(pam_dir: &Path) -> Vec<(String, Result<Policy, String>)> {
    let mut found: Vec<_> = pam_otp_lines_of_services(pam_dir)
        .into_iter()
        .filter(|(service, _)| !is_include_file(service))
        .filter_map(|(service, lines)| {
            let mut policies = lines.into_iter().map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                policy::load(&args).map_err(|e| e.to_string())
            });
            let checking =
                policies.find(|p| !matches!(p, Ok(p) if p.pass_mode == PassMode::SplitPass));
            checking.map(|policy| (service, policy))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The accounts that can log in: a login shell (the rule doctor uses), and a usable
/// password (in /etc/shadow: not locked with `!` or `*`; an empty one counts, as Debian's
/// common-auth takes it) or a non-empty authorized keys file (sshd's default
/// `~/.ssh/authorized_keys` or `authorized_keys2`). Local accounts only (/etc/passwd).
fn login_accounts() -> Vec<Account> {
    ways_in::login_shell_users()
        .iter()
        .filter_map(|name| Account::lookup(name).ok().flatten())
        .filter(|account| {
            let ways = ways_in::ways_in(account, None);
            ways.password || ways.ssh_key
        })
        .collect()
}

/// The person's state in `state_dir`, if any can be read (never created).
fn state_in(state_dir: &Path, uid: u32) -> Option<State> {
    let store = existing_store(state_dir).ok().flatten()?;
    Some(store.peek(uid).ok().flatten()?.state)
}

fn line(
    account: &Account,
    policy: &Policy,
    services: &[(String, Result<Policy, String>)],
    now: u64,
) -> Line {
    let places = [("home", DEFAULT_SECRET), ("store", STORE_SECRET)];
    let mut found_in = Vec::new();
    let mut kind = None;
    let mut broken = false;
    for (place, template) in places {
        let Ok(path) = expand_secret_path(template, &account.name, &account.home) else {
            continue;
        };
        match read_enrollment_as(&path, account) {
            Ok((enrollment, _)) => {
                found_in.push(place);
                kind.get_or_insert(match enrollment.kind {
                    Kind::Totp { .. } => "totp",
                    Kind::Hotp { .. } => "hotp",
                });
            }
            Err(UserFileError::NotEnrolled) => {}
            Err(_) => {
                found_in.push(place);
                broken = true;
            }
        }
    }
    // Each state directory is read once for this account: most services share one.
    let mut states: BTreeMap<PathBuf, Option<State>> = BTreeMap::new();
    let mut state_at = |dir: &Path| {
        states
            .entry(dir.to_path_buf())
            .or_insert_with(|| state_in(dir, account.uid))
            .clone()
    };
    let state = state_at(&policy.state_dir);
    let last_code = state.as_ref().map(|s| s.last_success).filter(|t| *t > 0);
    let locked = state.as_ref().is_some_and(|s| s.any_locked(now));
    Line {
        user: escape(&account.name, MAX_SHOWN_CHARS),
        uid: account.uid,
        enrolled: match (kind.is_some(), broken) {
            (true, _) => "yes",
            (false, true) => "broken",
            (false, false) => "no",
        },
        found_in,
        kind,
        last_code,
        last_code_utc: last_code.map(utc),
        failures: state.as_ref().map_or(0, |s| s.all.user.failures),
        locked,
        services: services
            .iter()
            .map(|(service, policy)| {
                let verdict = match policy {
                    Err(why) => format!("refused (settings refused: {})", escape(why, 200)),
                    Ok(policy) => {
                        // Locked from everywhere: no source gets the prompt.
                        let locked = state_at(&policy.state_dir).is_some_and(|s| {
                            s.all.user.is_locked(now) || s.protected.user.is_locked(now)
                        });
                        verdict(account, policy, locked, now)
                    }
                };
                (escape(service, MAX_SHOWN_CHARS), verdict)
            })
            .collect(),
    }
}

/// What `policy`'s pam_otp line does with `account` today.
fn verdict(account: &Account, policy: &Policy, locked: bool, now: u64) -> String {
    let Ok(path) = expand_secret_path(&policy.secret, &account.name, &account.home) else {
        return "refused (the secret= path cannot be made for this name)".into();
    };
    match read_enrollment_as(&path, account) {
        Ok(_) if locked => "refused (locked)".into(),
        Ok(_) => "asked".into(),
        Err(UserFileError::NotEnrolled) if policy.nullok => "passes (nullok)".into(),
        Err(UserFileError::NotEnrolled) => match &policy.enforce_after {
            Some(deadline) => match deadline.days_left(now) {
                Some(days) => format!("passes until {} ({days} days)", deadline.text),
                None => format!("refused (not enrolled; deadline {} passed)", deadline.text),
            },
            None => "refused (not enrolled)".into(),
        },
        Err(_) => "refused (broken enrollment file)".into(),
    }
}

fn as_text(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        let services: Vec<String> = line
            .services
            .iter()
            .map(|(service, verdict)| format!("{service}: {verdict}"))
            .collect();
        out.push_str(&format!(
            "{} (uid {}): enrolled={} where={} type={} last_code={} failures={} locked={} | {}\n",
            line.user,
            line.uid,
            line.enrolled,
            if line.found_in.is_empty() {
                "-".into()
            } else {
                line.found_in.join("+")
            },
            line.kind.unwrap_or("-"),
            line.last_code_utc.as_deref().unwrap_or("never"),
            line.failures,
            if line.locked { "yes" } else { "no" },
            if services.is_empty() {
                "no service uses pam_otp".into()
            } else {
                services.join("; ")
            },
        ));
    }
    out
}
