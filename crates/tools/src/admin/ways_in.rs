//! Whether an account can log in today, before any code is asked for: a usable password
//! in /etc/shadow, an SSH key file sshd reads, and for sudo, rights in sudoers. Doctor
//! uses it to tell an account a service would lock out (an error) from one that has no
//! way in anyway (nothing changes for it); `otp-admin report` to list who can log in.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use pam_otp_sys::account::Account;

/// The largest /etc/shadow read; real ones are a few kilobytes per hundred accounts.
const MAX_SHADOW_BYTES: u64 = 16 * 1024 * 1024;

/// What lets an account in before the code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaysIn {
    /// A password pam_unix accepts (not locked with `!` or `*`; an empty one counts).
    pub password: bool,
    /// A non-empty authorized keys file where sshd looks, or keys from an
    /// AuthorizedKeysCommand (which doctor cannot ask, so it assumes some).
    pub ssh_key: bool,
}

/// How a service lets an account reach pam_otp, as far as doctor can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstFactor {
    /// sshd where every AuthenticationMethods list starts with a key.
    SshKey,
    /// Anything else: a password (or a key, for sshd without such lists).
    PasswordOrKey,
    /// sudo: a way to log in at all, and rights in sudoers.
    Sudo,
}

impl FirstFactor {
    /// The first factor of `service`, given sshd's settings when it is an sshd service.
    pub fn of(service: &str, sshd: Option<&BTreeMap<String, String>>) -> FirstFactor {
        if service.starts_with("sudo") {
            return FirstFactor::Sudo;
        }
        let key_first = sshd
            .and_then(|s| s.get("authenticationmethods"))
            .is_some_and(|m| {
                m != "any"
                    && m.split_whitespace()
                        .all(|list| list.split(',').any(|x| x == "publickey"))
            });
        if key_first {
            FirstFactor::SshKey
        } else {
            FirstFactor::PasswordOrKey
        }
    }

    /// Words for a finding: what "can log in today" meant for this service.
    pub fn describe(self) -> &'static str {
        match self {
            FirstFactor::SshKey => "an SSH key sshd accepts",
            FirstFactor::PasswordOrKey => "a usable password or an SSH key",
            FirstFactor::Sudo => "a usable password or an SSH key, and rights in sudoers",
        }
    }
}

/// Whether `account` gets past the first factor of a service today.
pub fn can_log_in(
    account: &Account,
    first: FirstFactor,
    sshd: Option<&BTreeMap<String, String>>,
) -> bool {
    let ways = ways_in(account, sshd);
    match first {
        FirstFactor::SshKey => ways.ssh_key,
        FirstFactor::PasswordOrKey => ways.password || ways.ssh_key,
        FirstFactor::Sudo => (ways.password || ways.ssh_key) && may_use_sudo(&account.name),
    }
}

/// Local users with a login shell, from /etc/passwd (users from LDAP or SSSD are not
/// listed there; doctor takes them by --user). Doctor and `otp-admin report` start
/// from these.
pub fn login_shell_users() -> Vec<String> {
    let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, shell) = (fields.first()?, fields.get(6)?);
            let shell_name = shell.rsplit('/').next().unwrap_or(shell);
            // sync, halt and shutdown are Debian's system accounts that run one command.
            let logs_in = !shell.is_empty()
                && !matches!(
                    shell_name,
                    "nologin" | "false" | "sync" | "halt" | "shutdown"
                );
            logs_in.then(|| name.to_string())
        })
        .collect()
}

/// What lets `account` in before the code.
pub fn ways_in(account: &Account, sshd: Option<&BTreeMap<String, String>>) -> WaysIn {
    WaysIn {
        password: usable_password(&account.name),
        ssh_key: has_ssh_key(account, sshd),
    }
}

/// From /etc/shadow. Unreadable or absent (accounts from a directory service): counted as
/// usable, so that doctor errs towards warning about a lock-out.
fn usable_password(name: &str) -> bool {
    let Some(text) = shadow_text() else {
        return true;
    };
    match shadow_hash(text, name) {
        Some(hash) => password_is_usable(hash),
        None => true,
    }
}

/// /etc/shadow, read once per run (it is asked about every account); `None` if it cannot
/// be read.
fn shadow_text() -> Option<&'static str> {
    static SHADOW: OnceLock<Option<String>> = OnceLock::new();
    SHADOW
        .get_or_init(|| {
            let mut text = String::new();
            fs::File::open("/etc/shadow")
                .and_then(|f| f.take(MAX_SHADOW_BYTES).read_to_string(&mut text))
                .ok()
                .map(|_| text)
        })
        .as_deref()
}

/// The password field of `name`'s line in /etc/shadow.
fn shadow_hash<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.next().unwrap_or(""))
    })
}

/// `!…` and `*` lock the password (pam_unix refuses it); an empty field is no password at
/// all, which Debian's common-auth (`nullok`) accepts.
fn password_is_usable(hash: &str) -> bool {
    !hash.starts_with('!') && !hash.starts_with('*')
}

/// Whether sshd finds a key for `account`: a non-empty file named by
/// AuthorizedKeysFile (default `.ssh/authorized_keys .ssh/authorized_keys2`).
fn has_ssh_key(account: &Account, sshd: Option<&BTreeMap<String, String>>) -> bool {
    let get = |key: &str| sshd.and_then(|s| s.get(key)).map(String::as_str);
    if get("authorizedkeyscommand").is_some_and(|c| c != "none") {
        return true;
    }
    let files = get("authorizedkeysfile").unwrap_or(".ssh/authorized_keys .ssh/authorized_keys2");
    files
        .split_whitespace()
        .filter(|f| *f != "none")
        .any(|template| {
            let path = expand_keys_file(template, account);
            fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0)
        })
}

/// sshd's tokens in AuthorizedKeysFile (`%h`, `%u`, `%U`, `%%`); a relative path is
/// relative to the home directory.
fn expand_keys_file(template: &str, account: &Account) -> std::path::PathBuf {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(&account.home.to_string_lossy()),
            Some('u') => out.push_str(&account.name),
            Some('U') => out.push_str(&account.uid.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    if out.starts_with('/') {
        out.into()
    } else {
        Path::new(&account.home).join(out)
    }
}

/// `sudo -l -U NAME` as root: whether sudoers lets the account run anything. No sudo, or
/// an answer doctor cannot read: counted as allowed (doctor errs towards the warning).
fn may_use_sudo(name: &str) -> bool {
    let out = Command::new("sudo")
        .args(["-n", "-l", "-U", name])
        .env_clear()
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            !String::from_utf8_lossy(&out.stdout).contains("is not allowed to run sudo")
        }
        // Not installed: no one uses sudo.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_passwords_are_not_usable() {
        let shadow = "root:$y$j9T$abc:19000:0:99999:7:::\nbob:!:19000::::::\n\
                      carol:*:19000::::::\ndave::19000::::::\neve:!$y$j9T$x:1::::::\n";
        let usable = |name| shadow_hash(shadow, name).map(password_is_usable);
        assert_eq!(usable("root"), Some(true));
        assert_eq!(usable("bob"), Some(false));
        assert_eq!(usable("carol"), Some(false));
        assert_eq!(usable("dave"), Some(true));
        assert_eq!(usable("eve"), Some(false));
        assert_eq!(usable("nobody-here"), None);
    }

    #[test]
    fn keys_files_expand_as_sshd_expands_them() {
        let account = Account {
            name: "alice".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/alice".into(),
        };
        assert_eq!(
            expand_keys_file(".ssh/authorized_keys", &account),
            Path::new("/home/alice/.ssh/authorized_keys")
        );
        assert_eq!(
            expand_keys_file("/etc/ssh/keys/%u-%U%%", &account),
            Path::new("/etc/ssh/keys/alice-1001%")
        );
        assert_eq!(
            expand_keys_file("%h/k", &account),
            Path::new("/home/alice/k")
        );
    }

    #[test]
    fn the_first_factor_follows_the_service_and_sshd() {
        let key_first: BTreeMap<String, String> = [(
            "authenticationmethods".to_string(),
            "publickey,keyboard-interactive".to_string(),
        )]
        .into();
        let password: BTreeMap<String, String> = [(
            "authenticationmethods".to_string(),
            "keyboard-interactive".to_string(),
        )]
        .into();
        assert_eq!(
            FirstFactor::of("sshd", Some(&key_first)),
            FirstFactor::SshKey
        );
        assert_eq!(
            FirstFactor::of("sshd", Some(&password)),
            FirstFactor::PasswordOrKey
        );
        assert_eq!(FirstFactor::of("sudo-i", None), FirstFactor::Sudo);
        assert_eq!(FirstFactor::of("login", None), FirstFactor::PasswordOrKey);
    }
}
