//! The checks of `otp-admin doctor`, pure: facts in (an auth stack, sshd's effective
//! configuration, users' enrollments, file metadata), findings out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::findings::{Finding, Severity};
use super::pam_stack::{AuthStack, Control, ProblemKind, Rule};
use crate::admin::ways_in::FirstFactor;
use pam_otp_sys::policy::Deadline;

/// Modules that check a password: `required` before pam_otp, they let a stranger who
/// does not know it still reach pam_otp and spend the user's tries.
const PASSWORD_MODULES: &[&str] = &[
    "pam_unix.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_userdb.so",
    "pam_pwdb.so",
    "pam_radius_auth.so",
];

/// Why a PAM file that is not a regular file is an error, not only a file doctor skips.
pub const WHY_ONLY_REGULAR_FILES: &str =
    "libpam waits on a FIFO for ever and reads a device without end";

/// The auth stack: is pam_otp there, does its failure count, can anything end the stack
/// or jump over it before it runs.
pub fn stack_findings(service: &str, stack: &AuthStack) -> Vec<Finding> {
    let mut out: Vec<Finding> = stack
        .problems
        .iter()
        .map(|p| {
            let (id, message, fix) = match p.kind {
                ProblemKind::Syntax => (
                    "pam-syntax",
                    format!("libpam cannot use this line as written: {}", p.message),
                    "correct or remove the line (libpam fails or skips it)".into(),
                ),
                ProblemKind::Unreadable => (
                    "pam-file-unreadable",
                    p.message.clone(),
                    format!(
                        "name a regular file of PAM lines there, or remove the line \
                         ({WHY_ONLY_REGULAR_FILES})"
                    ),
                ),
                ProblemKind::TooDeep => (
                    "pam-include-depth",
                    p.message.clone(),
                    "remove the loop, or include the files from fewer levels".into(),
                ),
                ProblemKind::TooLarge => (
                    "pam-stack-too-large",
                    p.message.clone(),
                    "include each file once, from fewer levels: libpam reads every include \
                     again at each login"
                        .into(),
                ),
            };
            Finding::new(Severity::Error, id, message, fix)
                .service(service)
                .at(p.origin.clone())
        })
        .collect();
    let otp_positions: Vec<usize> = (0..stack.rules.len())
        .filter(|&i| stack.rules[i].is_pam_otp())
        .collect();
    if otp_positions.is_empty() {
        out.push(
            Finding::new(
                Severity::Error,
                "otp-missing",
                "pam_otp.so is not in the auth stack: the code is never asked for".into(),
                format!(
                    "add \"auth required pam_otp.so\" to /etc/pam.d/{service} (see \
                     /usr/share/doc/pam-otp/examples/pam.d)"
                ),
            )
            .service(service),
        );
    }
    for &k in &otp_positions {
        let otp = &stack.rules[k];
        if !otp.control.failure_counts() {
            out.push(
                Finding::new(
                    Severity::Error,
                    "otp-not-required",
                    format!(
                        "pam_otp.so is \"{}\": a wrong or missing code does not fail the login",
                        otp.control.describe()
                    ),
                    "make it \"auth required pam_otp.so\" (or requisite)".into(),
                )
                .service(service)
                .at(otp.origin.clone()),
            );
        }
        for (i, rule) in stack.rules[..k].iter().enumerate() {
            // A rule deeper in a substack than pam_otp can only end its own substack.
            if rule.substack_depth > otp.substack_depth {
                continue;
            }
            out.extend(before_otp(service, rule, i, k, otp));
        }
        // split_pass only keeps the code for a later use_split_code line: that line is the
        // one that must come after the password.
        if !has_flag(otp, "split_pass") {
            let password_after = stack.rules[k + 1..]
                .iter()
                .find(|rule| PASSWORD_MODULES.contains(&rule.module_name()));
            if let Some(password) = password_after {
                out.push(
                    Finding::new(
                        Severity::Error,
                        "otp-before-password",
                        format!(
                            "pam_otp.so at {} comes before {} at {}: the code is checked and \
                             spent before the password, so after a mistyped password the \
                             owner's retry with the same code is refused as a replay, and \
                             someone without the password learns whether a code is right",
                            otp.origin,
                            password.module_name(),
                            password.origin
                        ),
                        format!(
                            "move the pam_otp.so line after {} (for sudo: after \
                             \"@include common-auth\", as in \
                             /usr/share/doc/pam-otp/examples/pam.d/sudo-otp)",
                            password.module_name()
                        ),
                    )
                    .service(service)
                    .at(otp.origin.clone()),
                );
            }
        }
        let checks_split_code = |rule: &Rule| rule.is_pam_otp() && has_flag(rule, "use_split_code");
        if has_flag(otp, "split_pass") && !stack.rules[k + 1..].iter().any(checks_split_code) {
            out.push(
                Finding::new(
                    Severity::Error,
                    "split-code-unchecked",
                    "pam_otp.so split_pass keeps the code, but no later pam_otp.so \
                     use_split_code checks it: the password alone logs in"
                        .into(),
                    "add \"auth required pam_otp.so use_split_code\" after the password \
                     module (see /usr/share/doc/pam-otp/examples/pam.d/\
                     sshd-password-code-one-prompt)"
                        .into(),
                )
                .service(service)
                .at(otp.origin.clone()),
            );
        }
    }
    out
}

/// Whether a module line turns `name` on (`name`, or `name=` with a true value).
fn has_flag(rule: &Rule, name: &str) -> bool {
    rule.args.iter().any(|arg| match arg.split_once('=') {
        None => arg == name,
        Some((key, value)) => key == name && matches!(value, "true" | "yes" | "1"),
    })
}

/// What one rule before pam_otp (at `i`; pam_otp at `k`) can do to it.
fn before_otp(service: &str, rule: &Rule, i: usize, k: usize, otp: &Rule) -> Option<Finding> {
    let name = rule.module_name();
    let skipped = |how: String| {
        Some(
            Finding::new(
                Severity::Error,
                "otp-skipped",
                format!(
                    "{name} ({}) at {} {how}: users it accepts are never asked for the code \
                     (pam_otp.so is at {})",
                    rule.control.describe(),
                    rule.origin,
                    otp.origin
                ),
                format!(
                    "make {name} end a failure with requisite (or [success=ok default=die]) \
                     instead of ending or skipping on success, or move pam_otp.so before it"
                ),
            )
            .service(service)
            .at(rule.origin.clone()),
        )
    };
    match rule.control.on_success().as_deref() {
        // pam_deny never succeeds, so its "done" never ends the stack.
        Some("done") if name != "pam_deny.so" => {
            return skipped("can end the stack with success first".into())
        }
        Some(jump) => {
            if let Ok(n) = jump.parse::<usize>() {
                if i + n >= k {
                    return skipped(format!("jumps over {n} rule(s), past pam_otp.so,"));
                }
            }
        }
        None => {}
    }
    if PASSWORD_MODULES.contains(&name) && rule.control == Control::Required {
        return Some(
            Finding::new(
                Severity::Warning,
                "password-required-before-otp",
                format!(
                    "{name} is \"required\" before pam_otp.so: after a wrong password the code \
                     is still asked for, so a stranger who knows no password can spend the \
                     user's tries and lock them out"
                ),
                format!("make it \"auth requisite {name}\": a wrong password then ends the login"),
            )
            .service(service)
            .at(rule.origin.clone()),
        );
    }
    None
}

/// sshd's effective configuration, from `sshd -T`: keyword (lower case) to value.
pub fn parse_sshd_effective(text: &str) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.trim().split_once(' ') {
            // sshd -T prints the effective (first) value first; keep that one.
            settings
                .entry(key.to_ascii_lowercase())
                .or_insert_with(|| value.trim().to_string());
        }
    }
    settings
}

/// Whether sshd hands keyboard-interactive to PAM for every way in, and whether the
/// code can be left out. `origin`: the file and line that sets a keyword, if known (sshd
/// keeps the first value it reads, so that line is where a fix goes).
pub fn sshd_findings(
    service: &str,
    settings: &BTreeMap<String, String>,
    origin: &dyn Fn(&str) -> Option<String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let get = |key: &str| settings.get(key).map(|v| v.to_ascii_lowercase());
    let finding = |severity, id, message: String, fix: &str| {
        Finding::new(severity, id, message, fix.into())
            .service(service)
            .at("sshd -T".into())
    };
    if get("usepam").as_deref() == Some("no") {
        out.push(finding(
            Severity::Error,
            "sshd-usepam",
            "sshd has UsePAM no: PAM, and pam_otp with it, is never used".into(),
            "set \"UsePAM yes\" (e.g. in /etc/ssh/sshd_config.d/pam-otp.conf), then sshd -t \
             and reload",
        ));
    }
    let kbd =
        get("kbdinteractiveauthentication").or_else(|| get("challengeresponseauthentication"));
    if kbd.as_deref() == Some("no") {
        out.push(finding(
            Severity::Error,
            "sshd-kbdinteractive",
            "sshd has KbdInteractiveAuthentication no: pam_otp cannot ask for the code".into(),
            "set \"KbdInteractiveAuthentication yes\"",
        ));
    }
    let methods = get("authenticationmethods").unwrap_or_else(|| "any".into());
    let lists: Vec<&str> = methods.split_whitespace().collect();
    if methods == "any" {
        out.push(finding(
            Severity::Error,
            "sshd-no-authmethods",
            "sshd has no AuthenticationMethods: a key or a password alone lets users in, and \
             the code is never asked for"
                .into(),
            "set \"AuthenticationMethods publickey,keyboard-interactive\" (key + code) or \
             \"AuthenticationMethods keyboard-interactive\" (password + code)",
        ));
    } else {
        for list in &lists {
            let has_code = list
                .split(',')
                .any(|m| m.split(':').next() == Some("keyboard-interactive"));
            if !has_code {
                out.push(finding(
                    Severity::Error,
                    "sshd-authmethods-bypass",
                    format!(
                        "AuthenticationMethods allows \"{list}\", which has no \
                         keyboard-interactive step: users get in that way without a code"
                    ),
                    "remove that list, or add \",keyboard-interactive\" to it",
                ));
            }
        }
    }
    let key_and_code = !lists.is_empty()
        && methods != "any"
        && lists.iter().all(|l| l.split(',').any(|m| m == "publickey"));
    if key_and_code && get("passwordauthentication").as_deref() == Some("yes") {
        let set_at = origin("passwordauthentication");
        let fix = match &set_at {
            Some(place) => format!(
                "change it to \"PasswordAuthentication no\" at {place}: sshd keeps the first \
                 value it reads, so that line wins over any later file (pam-otp.conf included)"
            ),
            None => "set \"PasswordAuthentication no\" before any other PasswordAuthentication \
                     line (sshd keeps the first value it reads)"
                .into(),
        };
        out.push(
            Finding::new(
                Severity::Warning,
                "sshd-password-authentication",
                "PasswordAuthentication yes while every AuthenticationMethods list wants a key: \
                 it is never used, and if AuthenticationMethods is ever relaxed, a password \
                 alone gets in"
                    .into(),
                fix,
            )
            .service(service)
            .at(set_at.unwrap_or_else(|| "sshd -T".into())),
        );
    }
    out
}

/// Who reaches sshd's PAM stack at all. Root only with `PermitRootLogin yes`: every other
/// value (`prohibit-password`, `forced-commands-only`, `no`) turns keyboard-interactive
/// off for root, so root never gets to pam_otp.
pub fn sshd_lets_in(settings: &BTreeMap<String, String>, user: &str) -> bool {
    user != "root"
        || settings
            .get("permitrootlogin")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
}

/// A user's enrollment, as the module would read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrollmentCheck {
    Enrolled,
    /// No enrollment; `can_log_in`: whether the account gets past the service's first
    /// factor today (a usable password or key; for sudo, rights in sudoers too).
    NotEnrolled {
        can_log_in: bool,
    },
    /// The module refuses this user's logins; why.
    Refused(String),
}

/// Whether a `secret=` template names a file in the user's home, which the user writes
/// with `otp-setup`; any other path is root's to write, with `otp-admin enroll`.
fn in_users_home(secret: &str) -> bool {
    secret.starts_with('~') || secret.starts_with("%h")
}

/// How an unenrolled user gets enrolled for a service reading `secret` (its `secret=`
/// template): the user's own file by `otp-setup`, the administrator's store by root.
fn how_to_enroll(secret: &str) -> String {
    if in_users_home(secret) {
        "have them run otp-setup".into()
    } else if secret == pam_otp_sys::policy::STORE_SECRET {
        "enroll them as root with `otp-admin enroll USER`".into()
    } else {
        format!("enroll them as root with `otp-admin enroll USER --file {secret}`")
    }
}

/// Users with a login shell against `nullok`: who gets in without a code, who is
/// locked out, whose file the module refuses. `secret`: the service's `secret=` template.
///
/// With a roll-out deadline (`enforce_after`) still ahead at `now`, the accounts that
/// would be refused pass (and are told to enroll) until then: a warning naming the date,
/// not the error it becomes once the date has passed.
pub fn enrollment_findings(
    service: &str,
    first: FirstFactor,
    nullok: bool,
    deadline: Option<&Deadline>,
    now: u64,
    secret: &str,
    users: &[(String, EnrollmentCheck)],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut locked_out = Vec::new();
    let mut no_way_in = Vec::new();
    for (user, check) in users {
        match check {
            EnrollmentCheck::Enrolled => {}
            EnrollmentCheck::NotEnrolled { can_log_in: true } => locked_out.push(user.clone()),
            EnrollmentCheck::NotEnrolled { can_log_in: false } => no_way_in.push(user.clone()),
            EnrollmentCheck::Refused(why) => out.push(
                Finding::new(
                    Severity::Error,
                    "enrollment-refused",
                    format!("{user}'s enrollment is refused, so {user} cannot log in: {why}"),
                    if in_users_home(secret) {
                        format!(
                            "have {user} run otp-setup --force, or fix the file's owner ({user}), \
                             mode (0600) and contents; `otp-admin status {user}` shows the same"
                        )
                    } else {
                        format!(
                            "enroll {user} again as root (`otp-admin enroll {user} --force`, with \
                             --file for a file outside the store), or fix the file's owner, mode \
                             and contents; `otp-admin status {user}` shows the same"
                        )
                    },
                )
                .service(service)
                .users(vec![user.clone()]),
            ),
        }
    }
    if nullok {
        let not_enrolled: Vec<String> = locked_out.into_iter().chain(no_way_in).collect();
        if !not_enrolled.is_empty() {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "nullok-unenrolled",
                    format!(
                        "nullok is on and {} user(s) with a login shell have no enrollment: \
                         they log in without a code",
                        not_enrolled.len()
                    ),
                    format!(
                        "{}; for a roll-out use a deadline instead of nullok: \
                         enforce_after=YYYY-MM-DD on the pam_otp line (until then they get in \
                         and are told to enroll; `otp-admin report --not-enrolled` lists who is \
                         left); never nullok for sudo",
                        how_to_enroll(secret)
                    ),
                )
                .service(service)
                .users(not_enrolled),
            );
        }
        return out;
    }
    let until = deadline.and_then(|d| d.days_left(now).map(|days| (d, days)));
    if let (Some((deadline, days)), false) = (until, locked_out.is_empty()) {
        out.push(
            Finding::new(
                Severity::Warning,
                "unenrolled-until-deadline",
                format!(
                    "{} account(s) that can log in today ({}) have no enrollment: they get in \
                     without a code, and are told to enroll, until {} ({days} day(s) left); \
                     from then on this service refuses them",
                    locked_out.len(),
                    first.describe(),
                    deadline.text
                ),
                format!(
                    "{} before {}; `otp-admin report --not-enrolled` lists who is left",
                    how_to_enroll(secret),
                    deadline.text
                ),
            )
            .service(service)
            .users(std::mem::take(&mut locked_out)),
        );
    }
    if !locked_out.is_empty() {
        // An error, not a warning: the account gets in today and would be refused the
        // moment this stack is live, with nothing on its screen but "Permission denied".
        out.push(
            Finding::new(
                Severity::Error,
                "unenrolled-locked-out",
                format!(
                    "{} account(s) that can log in today ({}) have no enrollment and no \
                     nullok: this service refuses them after their first factor",
                    locked_out.len(),
                    first.describe()
                ),
                format!(
                    "{} before this stack is live (or, for a roll-out, give the pam_otp line a \
                     deadline, enforce_after=YYYY-MM-DD: until then they get in and are told to \
                     enroll; not nullok, which never tells them and never ends)",
                    how_to_enroll(secret)
                ),
            )
            .service(service)
            .users(locked_out),
        );
    }
    if !no_way_in.is_empty() {
        out.push(
            Finding::new(
                Severity::Info,
                "unenrolled-no-way-in",
                format!(
                    "{} account(s) with a login shell have no enrollment, and cannot log in \
                     today either (this service needs {}): nothing changes for them",
                    no_way_in.len(),
                    first.describe()
                ),
                format!("{} if they are to log in", how_to_enroll(secret)),
            )
            .service(service)
            .users(no_way_in),
        );
    }
    out
}

/// What `lstat` says about a path the module relies on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathFacts {
    Missing,
    Symlink,
    /// Not the kind expected (a file where a directory belongs, or the other way).
    WrongKind,
    Present {
        uid: u32,
        mode: u32,
    },
}

/// Owned by root and writable by no one else; `None` if so, else why not.
fn unsafe_because(facts: &PathFacts) -> Option<String> {
    match facts {
        PathFacts::Missing => None,
        PathFacts::Symlink => Some("is a symbolic link".into()),
        PathFacts::WrongKind => Some("is not the right kind of file".into()),
        PathFacts::Present { uid, .. } if *uid != 0 => {
            Some(format!("is owned by uid {uid}, not root"))
        }
        PathFacts::Present { mode, .. } if mode & 0o022 != 0 => Some(format!(
            "is writable by group or others (mode {:04o})",
            mode & 0o7777
        )),
        PathFacts::Present { .. } => None,
    }
}

/// The state directory and the directories above it.
pub fn state_dir_findings(
    dir: &Path,
    facts: &PathFacts,
    ancestors: &[(PathBuf, PathFacts)],
) -> Vec<Finding> {
    let mut out = Vec::new();
    let shown = dir.display();
    if *facts == PathFacts::Missing {
        out.push(Finding::new(
            Severity::Info,
            "state-dir-missing",
            format!("state directory {shown} does not exist yet: the first login creates it (root, 0700)"),
            format!("nothing to do; or make it now: install -d -m 0700 -o root -g root {shown}"),
        ));
    } else if let Some(why) = unsafe_because(facts) {
        out.push(Finding::new(
            Severity::Error,
            "state-dir-unsafe",
            format!("state directory {shown} {why}: the module refuses it, and every login with it"),
            format!("chown root:root {shown} && chmod 0700 {shown} (or point state_dir at such a directory)"),
        ));
    }
    let open: Vec<String> = ancestors
        .iter()
        .filter_map(|(path, facts)| {
            // A symbolic link on the way is followed like any other; judge what it names.
            unsafe_because(facts)
                .filter(|_| *facts != PathFacts::Symlink)
                .map(|why| format!("{} {why}", path.display()))
        })
        .collect();
    if !open.is_empty() {
        out.push(Finding::new(
            Severity::Warning,
            "state-dir-parents",
            format!(
                "a directory above the state directory {shown} is not root's alone: {}; \
                 whoever can write there can replace the state (replay guard, lockouts)",
                open.join("; ")
            ),
            "keep state_dir under root-owned directories no one else can write to (the \
             default /var/lib/pam-otp)"
                .into(),
        ));
    }
    out
}

/// The policy file a pam_otp line reads.
pub fn policy_file_findings(path: &Path, named: bool, facts: &PathFacts) -> Vec<Finding> {
    let shown = path.display();
    if *facts == PathFacts::Missing {
        return if named {
            vec![Finding::new(
                Severity::Error,
                "policy-file-missing",
                format!("policy file {shown} (named by policy=) does not exist: every login fails"),
                format!("create it (see /usr/share/doc/pam-otp/examples/pam_otp.toml) or drop policy={shown}"),
            )]
        } else {
            Vec::new()
        };
    }
    // The module follows a symbolic link here: judge the file it names (the I/O side
    // reports the target's facts).
    match unsafe_because(facts) {
        Some(why) => vec![Finding::new(
            Severity::Error,
            "policy-file-unsafe",
            format!("policy file {shown} {why}: the module refuses it, and every login"),
            format!("chown root:root {shown} && chmod 0644 {shown}"),
        )],
        None => Vec::new(),
    }
}

/// Services whose pam_otp lines keep state in different directories.
pub fn state_dir_split_findings(dirs: &BTreeMap<PathBuf, Vec<String>>) -> Vec<Finding> {
    if dirs.len() < 2 {
        return Vec::new();
    }
    let which: Vec<String> = dirs
        .iter()
        .map(|(dir, services)| format!("{} ({})", dir.display(), services.join(", ")))
        .collect();
    vec![Finding::new(
        Severity::Warning,
        "state-dir-split",
        format!(
            "services keep state in different directories: {}. Each keeps its own replay \
             guard and failure count, so a code used on one is accepted once more on another, \
             and a guesser gets max_failures tries on each",
            which.join("; ")
        ),
        "use one state_dir for every service (set it in /etc/security/pam_otp.toml, not on \
         the pam_otp.so lines)"
            .into(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::doctor::pam_stack::{auth_stack, LoadError};

    fn ids(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.id).collect()
    }

    fn check(service_text: &str) -> Vec<&'static str> {
        let common = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                      auth requisite pam_deny.so\nauth required pam_permit.so\n";
        let load = |name: &str| match name {
            "svc" => Ok(("svc".to_string(), service_text.to_string())),
            "common-auth" => Ok(("common-auth".to_string(), common.to_string())),
            _ => Err(LoadError::Missing),
        };
        let stack = auth_stack("svc", &load).unwrap();
        ids(&stack_findings("svc", &stack))
    }

    #[test]
    fn the_shipped_shapes_are_clean() {
        assert!(check("@include common-auth\nauth required pam_otp.so\n").is_empty());
        assert!(check("auth required pam_otp.so\nauth required pam_permit.so\n").is_empty());
        assert!(check("auth requisite pam_unix.so\nauth requisite pam_otp.so\n").is_empty());
        assert!(check(
            "auth requisite pam_otp.so split_pass\nauth requisite pam_unix.so use_first_pass\n\
             auth required pam_otp.so use_split_code\n"
        )
        .is_empty());
    }

    #[test]
    fn every_stack_fault_is_found() {
        assert_eq!(check("@include common-auth\n"), ["otp-missing"]);
        assert_eq!(check("auth sufficient pam_otp.so\n"), ["otp-not-required"]);
        assert_eq!(check("auth optional pam_otp.so\n"), ["otp-not-required"]);
        assert_eq!(
            check("auth sufficient pam_unix.so\nauth required pam_otp.so\n"),
            ["otp-skipped"]
        );
        assert_eq!(
            check("auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_otp.so\n"),
            ["otp-skipped"]
        );
        assert_eq!(
            check("auth required pam_unix.so\nauth required pam_otp.so\n"),
            ["password-required-before-otp"]
        );
        assert_eq!(
            check("auth required pam_otp.so\n@include common-auth\n"),
            ["otp-before-password"]
        );
        assert_eq!(
            check("@include nowhere\nauth required pam_otp.so\n"),
            ["pam-syntax"]
        );
        assert_eq!(
            check(
                "auth requisite pam_otp.so split_pass\nauth requisite pam_unix.so use_first_pass\n"
            ),
            ["split-code-unchecked"]
        );
        assert_eq!(
            check("auth requisite pam_otp.so split_pass\nauth requisite pam_unix.so use_first_pass\nauth required pam_otp.so use_split_code=no\n"),
            ["split-code-unchecked"]
        );
    }

    #[test]
    fn a_substack_ends_only_itself() {
        let load = |name: &str| match name {
            "svc" => Ok((
                "svc".into(),
                "auth substack inner\nauth required pam_otp.so\n".into(),
            )),
            "inner" => Ok(("inner".into(), "auth sufficient pam_unix.so\n".into())),
            _ => Err(LoadError::Missing),
        };
        let stack = auth_stack("svc", &load).unwrap();
        assert!(stack_findings("svc", &stack).is_empty());
    }

    fn sshd(text: &str) -> Vec<&'static str> {
        ids(&sshd_findings("sshd", &parse_sshd_effective(text), &|_| {
            None
        }))
    }

    const GOOD_SSHD: &str = "usepam yes\nkbdinteractiveauthentication yes\n\
                             passwordauthentication no\n\
                             authenticationmethods publickey,keyboard-interactive\n";

    #[test]
    fn sshd_faults_are_found() {
        assert!(sshd(GOOD_SSHD).is_empty());
        assert!(sshd("usepam yes\nkbdinteractiveauthentication yes\npasswordauthentication yes\nauthenticationmethods keyboard-interactive\n").is_empty());
        assert_eq!(
            sshd(&GOOD_SSHD.replace("usepam yes", "usepam no")),
            ["sshd-usepam"]
        );
        assert_eq!(
            sshd(&GOOD_SSHD.replace(
                "interactiveauthentication yes",
                "interactiveauthentication no"
            )),
            ["sshd-kbdinteractive"]
        );
        assert_eq!(
            sshd(&GOOD_SSHD.replace("publickey,keyboard-interactive", "any")),
            ["sshd-no-authmethods"]
        );
        assert_eq!(
            sshd(&GOOD_SSHD.replace(
                "publickey,keyboard-interactive",
                "publickey,keyboard-interactive publickey"
            )),
            ["sshd-authmethods-bypass"]
        );
        assert_eq!(
            sshd(&GOOD_SSHD.replace("passwordauthentication no", "passwordauthentication yes")),
            ["sshd-password-authentication"]
        );
    }

    #[test]
    fn enrollments_against_nullok() {
        let users = vec![
            ("alice".to_string(), EnrollmentCheck::Enrolled),
            (
                "bob".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: true },
            ),
            (
                "carol".to_string(),
                EnrollmentCheck::Refused("is a symbolic link".into()),
            ),
        ];
        let home = "~/.otp.toml";
        let with = enrollment_findings("sudo", FirstFactor::Sudo, true, None, 0, home, &users);
        assert_eq!(ids(&with), ["enrollment-refused", "nullok-unenrolled"]);
        assert_eq!(with[1].users, ["bob"]);
        assert!(with[0].message.contains("symbolic link"));
        assert!(with[1].fix.contains("otp-setup"), "{}", with[1].fix);
        // One rule for a roll-out, everywhere: the deadline, never nullok for sudo.
        assert!(with[1].fix.contains("enforce_after="), "{}", with[1].fix);
        assert!(
            with[1].fix.contains("never nullok for sudo"),
            "{}",
            with[1].fix
        );
        let without = enrollment_findings("sudo", FirstFactor::Sudo, false, None, 0, home, &users);
        assert_eq!(
            ids(&without),
            ["enrollment-refused", "unenrolled-locked-out"]
        );
        assert!(
            without[1].fix.contains("enforce_after="),
            "{}",
            without[1].fix
        );
        assert!(!without[1].fix.contains("add nullok"), "{}", without[1].fix);
        assert!(
            enrollment_findings("sudo", FirstFactor::Sudo, false, None, 0, home, &users[..1])
                .is_empty()
        );
    }

    #[test]
    fn an_account_that_can_log_in_today_and_would_be_refused_is_an_error() {
        let users = vec![
            (
                "root".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: true },
            ),
            (
                "svc".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: false },
            ),
        ];
        let found = enrollment_findings(
            "sshd",
            FirstFactor::SshKey,
            false,
            None,
            0,
            "~/.otp.toml",
            &users,
        );
        assert_eq!(
            ids(&found),
            ["unenrolled-locked-out", "unenrolled-no-way-in"]
        );
        assert_eq!(found[0].severity, Severity::Error);
        assert_eq!(found[0].users, ["root"]);
        assert!(
            found[0].message.contains("an SSH key sshd accepts"),
            "{}",
            found[0].message
        );
        assert_eq!(found[1].severity, Severity::Info);
        assert_eq!(found[1].users, ["svc"]);
        // With nullok both get in without a code: one warning names them both.
        let found = enrollment_findings(
            "sshd",
            FirstFactor::SshKey,
            true,
            None,
            0,
            "~/.otp.toml",
            &users,
        );
        assert_eq!(ids(&found), ["nullok-unenrolled"]);
        assert_eq!(found[0].users, ["root", "svc"]);
    }

    #[test]
    fn before_the_deadline_the_unenrolled_pass_and_it_is_a_warning() {
        let users = vec![
            (
                "alice".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: true },
            ),
            (
                "svc".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: false },
            ),
        ];
        let deadline = Deadline::parse("2026-12-13").unwrap();
        let week_before = deadline.at - 7 * 86_400;
        let home = "~/.otp.toml";
        let before = enrollment_findings(
            "sshd",
            FirstFactor::SshKey,
            false,
            Some(&deadline),
            week_before,
            home,
            &users,
        );
        assert_eq!(
            ids(&before),
            ["unenrolled-until-deadline", "unenrolled-no-way-in"]
        );
        assert_eq!(before[0].severity, Severity::Warning);
        assert_eq!(before[0].users, ["alice"]);
        assert!(
            before[0]
                .message
                .contains("until 2026-12-13 (7 day(s) left)"),
            "{}",
            before[0].message
        );
        let after = enrollment_findings(
            "sshd",
            FirstFactor::SshKey,
            false,
            Some(&deadline),
            deadline.at,
            home,
            &users,
        );
        assert_eq!(
            ids(&after),
            ["unenrolled-locked-out", "unenrolled-no-way-in"]
        );
        assert_eq!(after[0].severity, Severity::Error);
    }

    #[test]
    fn a_service_reading_the_store_is_enrolled_by_root() {
        let users = vec![
            (
                "bob".to_string(),
                EnrollmentCheck::NotEnrolled { can_log_in: true },
            ),
            (
                "carol".to_string(),
                EnrollmentCheck::Refused("is a symbolic link".into()),
            ),
        ];
        let store = pam_otp_sys::policy::STORE_SECRET;
        for nullok in [true, false] {
            let found =
                enrollment_findings("sudo", FirstFactor::Sudo, nullok, None, 0, store, &users);
            assert!(
                found.iter().all(|f| !f.fix.contains("otp-setup")),
                "{found:?}"
            );
            assert!(found[0].fix.contains("otp-admin enroll carol --force"));
            assert!(
                found[1].fix.contains("`otp-admin enroll USER`"),
                "{}",
                found[1].fix
            );
        }
        let elsewhere = enrollment_findings(
            "sudo",
            FirstFactor::Sudo,
            true,
            None,
            0,
            "/etc/otp/%u.toml",
            &users,
        );
        assert!(elsewhere[1].fix.contains("--file /etc/otp/%u.toml"));
    }

    #[test]
    fn unsafe_paths_are_found() {
        let root = |mode| PathFacts::Present { uid: 0, mode };
        let dir = Path::new("/var/lib/pam-otp");
        assert!(
            state_dir_findings(dir, &root(0o40700), &[("/var".into(), root(0o40755))]).is_empty()
        );
        assert_eq!(
            ids(&state_dir_findings(dir, &PathFacts::Missing, &[])),
            ["state-dir-missing"]
        );
        assert_eq!(
            ids(&state_dir_findings(dir, &root(0o40770), &[])),
            ["state-dir-unsafe"]
        );
        assert_eq!(
            ids(&state_dir_findings(
                dir,
                &PathFacts::Present {
                    uid: 1000,
                    mode: 0o40700
                },
                &[]
            )),
            ["state-dir-unsafe"]
        );
        assert_eq!(
            ids(&state_dir_findings(
                dir,
                &root(0o40700),
                &[("/tmp".into(), root(0o41777))]
            )),
            ["state-dir-parents"]
        );
        let policy = Path::new("/etc/security/pam_otp.toml");
        assert!(policy_file_findings(policy, false, &PathFacts::Missing).is_empty());
        assert!(policy_file_findings(policy, false, &root(0o100644)).is_empty());
        assert_eq!(
            ids(&policy_file_findings(policy, true, &PathFacts::Missing)),
            ["policy-file-missing"]
        );
        assert_eq!(
            ids(&policy_file_findings(policy, false, &root(0o100666))),
            ["policy-file-unsafe"]
        );
    }

    #[test]
    fn one_state_dir_is_fine_two_split_the_guard() {
        let mut dirs = BTreeMap::new();
        dirs.insert(PathBuf::from("/var/lib/pam-otp"), vec!["sshd".to_string()]);
        assert!(state_dir_split_findings(&dirs).is_empty());
        dirs.insert(PathBuf::from("/var/lib/other"), vec!["sudo".to_string()]);
        let found = state_dir_split_findings(&dirs);
        assert_eq!(ids(&found), ["state-dir-split"]);
        assert!(found[0].message.contains("/var/lib/other (sudo)"));
    }
}
