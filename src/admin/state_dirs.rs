//! Which state directory each PAM service's pam_otp lines use. One `state_dir` keeps one
//! replay guard and one guess budget per person; services on different ones split both
//! (a code works once on each, and each allows its own guesses). The parsing of
//! `/etc/pam.d` text is pure; [`state_dirs_of_services`] reads the files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::sys::policy;

/// The arguments of every `auth` line naming pam_otp.so in one `/etc/pam.d` file's text,
/// with Linux-PAM's syntax: `#` comments, `\` continuation, `-auth`, `[...]` controls and
/// `[...]` arguments with spaces (`\]` inside is a `]`).
pub fn pam_otp_arguments(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("");
        let words = split_words(line);
        let [kind, _control, module, args @ ..] = words.as_slice() else {
            continue;
        };
        // libpam_otp.so: the module as cargo builds it, named by path before installing.
        let is_otp = Path::new(module)
            .file_name()
            .is_some_and(|n| n == "pam_otp.so" || n == "libpam_otp.so");
        if kind.trim_start_matches('-').eq_ignore_ascii_case("auth") && is_otp {
            found.push(args.to_vec());
        }
    }
    found
}

/// Splits at white space, keeping `[...]` together (without the brackets when a whole
/// word is bracketed, as libpam hands such an argument to the module).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '[' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&']') => word.push(chars.next().unwrap()),
                    ']' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

/// Services grouped by the state directory they use; more than one key means the replay
/// guard and the guess budget are split.
pub fn group_by_state_dir(services: &[(String, PathBuf)]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut groups: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (service, dir) in services {
        let names = groups.entry(dir.clone()).or_default();
        if !names.contains(service) {
            names.push(service.clone());
        }
    }
    groups
}

/// `(service, state_dir)` for every pam_otp line in the files of `pam_dir`, as the module
/// would resolve it (arguments, then the policy file they name). Lines the module would
/// refuse are left out: they are a configuration error of their own.
pub fn state_dirs_of_services(pam_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(pam_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let service = entry.file_name().to_string_lossy().into_owned();
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        for args in pam_otp_arguments(&text) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Ok(policy) = policy::load(&args) {
                found.push((service.clone(), policy.state_dir));
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_otp_lines_are_found_with_their_arguments() {
        let text = "#%PAM-1.0\n\
            auth requisite pam_unix.so\n\
            auth required pam_otp.so state_dir=/var/lib/a [prompt=Code please: ] # note\n\
            # auth required pam_otp.so state_dir=/commented\n\
            -auth [success=1 default=ignore] /usr/lib/security/pam_otp.so \\\n  nullok\n\
            account required pam_otp.so state_dir=/not-auth\n\
            @include common-auth\n";
        assert_eq!(
            pam_otp_arguments(text),
            vec![
                vec![
                    "state_dir=/var/lib/a".to_string(),
                    "prompt=Code please: ".into()
                ],
                vec!["nullok".to_string()],
            ]
        );
    }

    #[test]
    fn services_are_grouped_by_state_dir() {
        let services = vec![
            ("sshd".to_string(), PathBuf::from("/var/lib/pam-otp")),
            ("sudo".to_string(), PathBuf::from("/var/lib/pam-otp-sudo")),
            ("login".to_string(), PathBuf::from("/var/lib/pam-otp")),
            ("sshd".to_string(), PathBuf::from("/var/lib/pam-otp")),
        ];
        let groups = group_by_state_dir(&services);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[Path::new("/var/lib/pam-otp")], ["sshd", "login"]);
        assert_eq!(groups[Path::new("/var/lib/pam-otp-sudo")], ["sudo"]);
    }
}
