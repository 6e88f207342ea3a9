//! Which state directory each PAM service's pam_otp lines use. One `state_dir` keeps one
//! replay guard and one guess budget per person; services on different ones split both
//! (a code works once on each, and each allows its own guesses). The stacks are read as
//! `otp-admin doctor` reads them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::admin::doctor::load_pam_file;
use crate::admin::doctor::pam_stack::{auth_stack, Load};
use pam_otp_sys::policy;

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

/// `(service, state_dir)` for every pam_otp line in the auth stack of each service in
/// `pam_dir` (includes and substacks followed, as libpam reads them), as the module would
/// resolve it (arguments, then the policy file they name). Lines the module would refuse
/// are left out: they are a configuration error of their own.
pub fn state_dirs_of_services(pam_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for (service, lines) in pam_otp_lines_of_services(pam_dir) {
        for args in lines {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Ok(policy) = policy::load(&args) {
                found.push((service.clone(), policy.state_dir));
            }
        }
    }
    found.sort();
    found
}

/// Every service in `pam_dir` with the arguments of each pam_otp line of its auth stack
/// (services without one included, with none).
pub(crate) fn pam_otp_lines_of_services(pam_dir: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    let Ok(entries) = fs::read_dir(pam_dir) else {
        return Vec::new();
    };
    let load = |name: &str| load_pam_file(pam_dir, name);
    entries
        .flatten()
        .map(|entry| {
            let service = entry.file_name().to_string_lossy().into_owned();
            let lines = pam_otp_arguments(&service, &load);
            (service, lines)
        })
        .collect()
}

/// The arguments of every pam_otp line in `service`'s auth stack.
fn pam_otp_arguments(service: &str, load: Load) -> Vec<Vec<String>> {
    auth_stack(service, load)
        .ok()
        .map(|stack| {
            stack
                .rules
                .into_iter()
                .filter(|rule| rule.is_pam_otp())
                .map(|rule| rule.args)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::doctor::pam_stack::LoadError;

    #[test]
    fn pam_otp_lines_are_found_with_their_arguments() {
        let text = "#%PAM-1.0\n\
            auth requisite pam_unix.so\n\
            auth required pam_otp.so state_dir=/var/lib/a [prompt=Code please: ] # note\n\
            # auth required pam_otp.so state_dir=/commented\n\
            -auth [success=1 default=ignore] /usr/lib/security/pam_otp.so \\\n  nullok\n\
            account required pam_otp.so state_dir=/not-auth\n\
            @include common-auth\n";
        let common = "auth required pam_otp.so state_dir=/var/lib/c\n";
        let load = |name: &str| match name {
            "svc" => Ok(("svc".to_string(), text.to_string())),
            "common-auth" => Ok(("common-auth".to_string(), common.to_string())),
            _ => Err(LoadError::Missing),
        };
        assert_eq!(
            pam_otp_arguments("svc", &load),
            vec![
                vec![
                    "state_dir=/var/lib/a".to_string(),
                    "prompt=Code please: ".into()
                ],
                vec!["nullok".to_string()],
                vec!["state_dir=/var/lib/c".to_string()],
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
