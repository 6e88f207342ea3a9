//! `otp-admin doctor`: reads the PAM services, sshd's effective configuration, the
//! policy file, the state directory and the users' enrollments, and reports what would
//! skip the second factor or lock people out. The checks themselves are pure
//! (`checks`, `pam_stack`); this file gathers the facts.

mod checks;
mod findings;
pub(crate) mod pam_stack;
mod redis;
mod sshd_files;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::admin::ways_in::{self, FirstFactor};
use checks::{EnrollmentCheck, PathFacts, WHY_ONLY_REGULAR_FILES};
use findings::{Finding, Report, Severity};
use pam_stack::{AuthStack, LoadError, Rule};

use crate::admin::state_dirs::{
    is_include_file, pam_otp_lines_of_services, split_guard, ServiceState,
};
use pam_otp_sys::account::Account;
use pam_otp_sys::companion::usable_checker;
use pam_otp_sys::policy::{self, expand_secret_path, Policy, Store, DEFAULT_POLICY_FILE};
use pam_otp_sys::user_file::{read_enrollment, UserFileError};

/// Checked even when they do not use pam_otp (yet): the services README has the
/// administrator edit. Every other service whose stack uses pam_otp (through the shipped
/// pam-auth-update profile's common-auth, say) is found by reading the PAM directory.
const DEFAULT_SERVICES: &[&str] = &["sshd", "sudo", "sudo-i"];

const SSHD: &str = "/usr/sbin/sshd";

/// The arguments of `otp-admin doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// PAM services to check [default: sshd, sudo, sudo-i and every service whose auth
    /// stack uses pam_otp]
    services: Vec<String>,
    /// One JSON object on stdout, for scripts
    #[arg(long)]
    json: bool,
    /// Where the PAM service files are
    #[arg(long, value_name = "DIR", default_value = "/etc/pam.d")]
    pam_dir: PathBuf,
    /// sshd configuration to read with `sshd -T -f FILE` [default: sshd's own]
    #[arg(long, value_name = "FILE")]
    sshd_config: Option<PathBuf>,
    /// Check only this user's enrollment (repeatable) [default: every local user with a
    /// login shell]
    #[arg(long = "user", value_name = "USER")]
    users: Vec<String>,
}

/// Runs the checks and prints the report; exit 0 clean, 1 warnings, 2 errors.
pub fn main(args: &DoctorArgs) -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("otp-admin: doctor must be run as root (it reads every user's enrollment)");
        return ExitCode::from(findings::EXIT_ERRORS);
    }
    let report = examine(args);
    if args.json {
        print!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::from(report.exit_status())
}

fn examine(args: &DoctorArgs) -> Report {
    let now = pam_otp_sys::clock::unix_now();
    let explicit = !args.services.is_empty();
    let services: Vec<String> = if explicit {
        args.services.clone()
    } else {
        default_services(&args.pam_dir)
    };
    // The users to judge, the same for every service: --user, else every local user
    // with a login shell.
    let names = if args.users.is_empty() {
        ways_in::login_shell_users()
    } else {
        args.users.clone()
    };
    let mut found = Vec::new();
    let mut state_dirs: Vec<ServiceState> = Vec::new();
    let mut sshd_settings = None;
    for service in &services {
        let load = |name: &str| load_pam_file(&args.pam_dir, name);
        let stack = match pam_stack::auth_stack(service, &load) {
            Ok(stack) => stack,
            Err(LoadError::Missing) => {
                found.push(missing_service(service, &args.pam_dir, explicit));
                continue;
            }
            Err(LoadError::NotRead(why)) => {
                found.push(unreadable_service(service, &args.pam_dir, &why));
                continue;
            }
        };
        found.extend(checks::stack_findings(service, &stack));
        let is_sshd = service.starts_with("sshd");
        if is_sshd && sshd_settings.is_none() {
            sshd_settings = Some(sshd_effective(args.sshd_config.as_deref()));
        }
        let sshd = match (is_sshd, &sshd_settings) {
            (true, Some(Ok(settings))) => {
                let config = args
                    .sshd_config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(sshd_files::SSHD_CONFIG));
                let origin = |keyword: &str| sshd_files::origin_of(&config, keyword);
                found.extend(checks::sshd_findings(service, settings, &origin));
                Some(settings)
            }
            (true, Some(Err(why))) => {
                found.push(
                    Finding::new(
                        Severity::Error,
                        "sshd-config-unreadable",
                        format!("cannot read sshd's effective configuration: {why}"),
                        "run sshd -t to see what is wrong".into(),
                    )
                    .service(service),
                );
                None
            }
            _ => None,
        };
        // The one-prompt stack has two pam_otp lines reading one enrollment: its users
        // are judged once.
        let mut judged = BTreeSet::new();
        for rule in stack.rules.iter().filter(|r| r.is_pam_otp()) {
            let (more, policy) = examine_otp_rule(service, rule);
            found.extend(more);
            let Some(policy) = policy else { continue };
            if let Store::Redis(settings) = &policy.store {
                found.extend(
                    redis::findings(settings)
                        .into_iter()
                        .map(|f| f.service(service).at(rule.origin.clone())),
                );
            }
            state_dirs.push(ServiceState::of(service, &policy));
            if !judged.insert((policy.secret.clone(), policy.nullok)) {
                continue;
            }
            let first = FirstFactor::of(service, sshd);
            let users = enrollments(&names, &policy, sshd, first);
            found.extend(
                checks::enrollment_findings(
                    service,
                    first,
                    policy.nullok,
                    policy.enforce_after.as_ref(),
                    now,
                    &policy.secret,
                    &users,
                )
                .into_iter()
                .map(|f| f.at(rule.origin.clone())),
            );
        }
        found.extend(stack_notes(service, &stack));
    }
    let dirs: BTreeSet<&Path> = state_dirs.iter().map(|line| line.dir.as_path()).collect();
    for dir in dirs {
        let ancestors: Vec<(PathBuf, PathFacts)> = dir
            .ancestors()
            .skip(1)
            .map(|p| (p.to_path_buf(), path_facts(p, false, true)))
            .collect();
        found.extend(checks::state_dir_findings(
            dir,
            &path_facts(dir, false, true),
            &ancestors,
        ));
    }
    found.extend(checks::state_dir_split_findings(&split_guard(&state_dirs)));
    dedup(&mut found);
    Report::new(services, found)
}

/// README's services, then every other service in `pam_dir` whose auth stack uses
/// pam_otp.
fn default_services(pam_dir: &Path) -> Vec<String> {
    let mut services: Vec<String> = DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect();
    let mut others: Vec<String> = pam_otp_lines_of_services(pam_dir)
        .into_iter()
        .filter(|(name, lines)| {
            !lines.is_empty() && !is_include_file(name) && !services.contains(name)
        })
        .map(|(name, _)| name)
        .collect();
    others.sort();
    services.extend(others);
    services
}

/// The same finding from two services (the policy file, a user) is said once.
fn dedup(found: &mut Vec<Finding>) {
    let mut seen = BTreeSet::new();
    found.retain(|f| {
        let key = (f.id, f.message.clone(), f.users.clone());
        if f.service.is_some() {
            return true;
        }
        seen.insert(key)
    });
}

fn missing_service(service: &str, pam_dir: &Path, explicit: bool) -> Finding {
    let path = pam_dir.join(service);
    if explicit {
        Finding::new(
            Severity::Error,
            "service-missing",
            format!(
                "{} does not exist: libpam uses {} for this service",
                path.display(),
                pam_dir.join("other").display()
            ),
            "check the service name (sshd's is its program name; sudo's may be set by \
             pam_service in sudoers)"
                .into(),
        )
        .service(service)
    } else {
        Finding::new(
            Severity::Info,
            "service-missing",
            format!("{} does not exist: not checked", path.display()),
            String::new(),
        )
        .service(service)
    }
}

fn unreadable_service(service: &str, pam_dir: &Path, why: &str) -> Finding {
    Finding::new(
        Severity::Error,
        "pam-file-unreadable",
        format!("{} {why}: not read", pam_dir.join(service).display()),
        format!("make it a regular file of PAM lines ({WHY_ONLY_REGULAR_FILES})"),
    )
    .service(service)
}

/// Services whose programs call PAM as the user, not as root: the screen lockers. Only
/// the setuid checker can decide their logins.
const CALLERS_NOT_ROOT: &[&str] = &["swaylock", "i3lock", "xscreensaver", "kde"];

/// Notes about the stack that are neither right nor wrong on their own: the module file
/// is there, and for a screen locker, the checker it runs.
fn stack_notes(service: &str, stack: &AuthStack) -> Vec<Finding> {
    stack
        .rules
        .iter()
        .filter(|r| r.is_pam_otp())
        .filter_map(|rule| {
            let Some(module) = module_file(&rule.module) else {
                return Some(
                    Finding::new(
                        Severity::Error,
                        "module-missing",
                        format!(
                            "{} does not exist: every login through this service fails",
                            rule.module
                        ),
                        "install pam-otp (make install or the package), or correct the path".into(),
                    )
                    .service(service)
                    .at(rule.origin.clone()),
                );
            };
            if !CALLERS_NOT_ROOT.contains(&service) {
                return None;
            }
            let module_dir = fs::canonicalize(&module)
                .ok()
                .and_then(|m| m.parent().map(Path::to_path_buf))?;
            let why = usable_checker(&module_dir).err()?;
            Some(
                Finding::new(
                    Severity::Error,
                    "checker-unusable",
                    format!(
                        "{service} calls PAM as the user, not root, so only the setuid checker \
                         pam_otp_check can decide its logins, and {why}: every login through \
                         this service is refused"
                    ),
                    "install pam-otp from the package or with make install, which install \
                     pam_otp_check setuid root (4755 root:root)"
                        .into(),
                )
                .service(service)
                .at(rule.origin.clone()),
            )
        })
        .collect()
}

/// A pam_otp line's settings: the policy file it reads, and whether the module accepts
/// them.
fn examine_otp_rule(service: &str, rule: &Rule) -> (Vec<Finding>, Option<Policy>) {
    let args: Vec<&str> = rule.args.iter().map(String::as_str).collect();
    let named = args.iter().find_map(|a| a.strip_prefix("policy="));
    let policy_path = PathBuf::from(named.unwrap_or(DEFAULT_POLICY_FILE));
    // The module opens the policy file following links: judge what it opens.
    let facts = path_facts(&policy_path, true, false);
    let mut found: Vec<Finding> =
        checks::policy_file_findings(&policy_path, named.is_some(), &facts)
            .into_iter()
            .map(|f| f.service(service).at(rule.origin.clone()))
            .collect();
    match policy::load(&args) {
        Ok(policy) => (found, Some(policy)),
        Err(e) => {
            if found.is_empty() {
                found.push(
                    Finding::new(
                        Severity::Error,
                        "otp-settings-refused",
                        format!(
                            "pam_otp.so refuses its settings: {e}: every login through this \
                             service fails (PAM_SERVICE_ERR)"
                        ),
                        "correct the pam_otp.so arguments or the policy file (man 8 pam_otp)"
                            .into(),
                    )
                    .service(service)
                    .at(rule.origin.clone()),
                );
            }
            (found, None)
        }
    }
}

/// The text of a PAM file named in a stack (relative to `pam_dir`, or absolute) and the
/// path to report it as: the loader of `pam_stack`. Only a regular file is read, and at
/// most [`MAX_PAM_FILE_BYTES`] of it, so that no name in /etc/pam.d can hang doctor or
/// take the memory of the machine it is run to repair.
pub(crate) fn load_pam_file(pam_dir: &Path, name: &str) -> Result<(String, String), LoadError> {
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        pam_dir.join(name)
    };
    // Judged before opening, following links as libpam does: opening a FIFO waits for a
    // writer, and opening a device can act on it (a tape rewinds, a serial line rises).
    let before = fs::metadata(&path).map_err(not_read)?;
    regular_file(&before.file_type())?;
    // Swapped for a FIFO or a device since: O_NONBLOCK returns at once, and the kind is
    // judged again on what was opened.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(not_read)?;
    regular_file(&file.metadata().map_err(not_read)?.file_type())?;
    let mut bytes = Vec::new();
    file.take(MAX_PAM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(not_read)?;
    if bytes.len() as u64 > MAX_PAM_FILE_BYTES {
        return Err(LoadError::NotRead(format!(
            "is larger than {} KiB (a PAM file is a few lines)",
            MAX_PAM_FILE_BYTES / 1024
        )));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok((path.display().to_string(), text))
}

/// The largest PAM file doctor reads; real ones are a few kilobytes.
const MAX_PAM_FILE_BYTES: u64 = 64 * 1024;

fn not_read(e: io::Error) -> LoadError {
    match e.kind() {
        io::ErrorKind::NotFound => LoadError::Missing,
        _ => LoadError::NotRead(format!("cannot be read ({e})")),
    }
}

/// Ok for a regular file; otherwise what it is instead.
fn regular_file(kind: &fs::FileType) -> Result<(), LoadError> {
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(LoadError::NotRead(format!("is {what}, not a regular file")))
}

/// Where libpam finds a module named without a path.
fn module_file(module: &str) -> Option<PathBuf> {
    if module.starts_with('/') {
        return Path::new(module).is_file().then(|| module.into());
    }
    let mut dirs: Vec<PathBuf> = [
        "/lib/security",
        "/lib64/security",
        "/usr/lib/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    // Debian's multiarch directories: /usr/lib/x86_64-linux-gnu/security and the like.
    for lib in ["/usr/lib", "/lib"] {
        if let Ok(entries) = fs::read_dir(lib) {
            dirs.extend(entries.flatten().map(|e| e.path().join("security")));
        }
    }
    dirs.into_iter()
        .map(|dir| dir.join(module))
        .find(|path| path.is_file())
}

/// What the file system says about `path`. `follow`: through a final symbolic link
/// (as the module opens it). `dir`: whether a directory is the right kind.
fn path_facts(path: &Path, follow: bool, dir: bool) -> PathFacts {
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    match meta {
        Err(_) => PathFacts::Missing,
        Ok(m) if m.file_type().is_symlink() => PathFacts::Symlink,
        Ok(m) if m.is_dir() != dir => PathFacts::WrongKind,
        Ok(m) => PathFacts::Present {
            uid: m.uid(),
            mode: m.mode(),
        },
    }
}

/// `sshd -T`: the configuration sshd really applies.
fn sshd_effective(config: Option<&Path>) -> Result<BTreeMap<String, String>, String> {
    let mut command = Command::new(SSHD);
    command.arg("-T");
    if let Some(config) = config {
        command.arg("-f").arg(config);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {SSHD} -T: {e}"))?;
    if !out.status.success() {
        // sshd ends its lines with \r\n; one finding shows them joined.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        return Err(format!(
            "{SSHD} -T failed ({}): {}",
            out.status,
            lines.join("; ")
        ));
    }
    Ok(checks::parse_sshd_effective(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

/// Each of `names`' enrollment as this policy's module would read it.
fn enrollments(
    names: &[String],
    policy: &Policy,
    sshd: Option<&BTreeMap<String, String>>,
    first: FirstFactor,
) -> Vec<(String, EnrollmentCheck)> {
    names
        .iter()
        .filter(|name| sshd.is_none_or(|settings| checks::sshd_lets_in(settings, name)))
        .filter_map(|name| {
            let name = name.clone();
            let account = match Account::lookup(&name) {
                Ok(Some(account)) => account,
                // Gone since /etc/passwd was read (or never there, for --user): no login.
                Ok(None) => return None,
                Err(e) => return Some((name, EnrollmentCheck::Refused(e.to_string()))),
            };
            let check = match expand_secret_path(&policy.secret, &name, &account.home) {
                Err(e) => EnrollmentCheck::Refused(e.to_string()),
                Ok(path) => match read_enrollment(&path, &account) {
                    Ok(_) => EnrollmentCheck::Enrolled,
                    Err(UserFileError::NotEnrolled) => EnrollmentCheck::NotEnrolled {
                        can_log_in: ways_in::can_log_in(&account, first, sshd),
                    },
                    Err(e) => EnrollmentCheck::Refused(format!("{}: {e}", path.display())),
                },
            };
            Some((name, check))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_only_so_much() {
        let dir = std::env::temp_dir().join(format!("doctor-load-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("small"), "auth required pam_otp.so\n").unwrap();
        let big = "# a comment line\n".repeat(MAX_PAM_FILE_BYTES as usize / 16 + 1);
        fs::write(dir.join("big"), big).unwrap();
        fs::create_dir_all(dir.join("sub")).unwrap();

        let (path, text) = load_pam_file(&dir, "small").unwrap();
        assert_eq!(path, dir.join("small").display().to_string());
        assert_eq!(text, "auth required pam_otp.so\n");
        assert_eq!(
            load_pam_file(&dir, "big"),
            Err(LoadError::NotRead(
                "is larger than 64 KiB (a PAM file is a few lines)".into()
            ))
        );
        assert_eq!(
            load_pam_file(&dir, "sub"),
            Err(LoadError::NotRead(
                "is a directory, not a regular file".into()
            ))
        );
        assert_eq!(
            load_pam_file(&dir, "/dev/null"),
            Err(LoadError::NotRead(
                "is a character device, not a regular file".into()
            ))
        );
        assert_eq!(load_pam_file(&dir, "absent"), Err(LoadError::Missing));
        fs::remove_dir_all(&dir).unwrap();
    }
}
