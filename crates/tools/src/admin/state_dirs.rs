//! Which state directory each PAM service's pam_otp lines use. One `state_dir` keeps one
//! replay guard and one guess budget per person; services on different ones split both
//! (a code works once on each, and each allows its own guesses). The stacks are read as
//! `otp-admin doctor` reads them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::admin::doctor::load_pam_file;
use crate::admin::doctor::pam_stack::{auth_stack, Load};
use pam_otp_sys::policy::{self, Policy, Store};

/// A pam_otp line of a service: the state directory it uses, and whether it is on the
/// fleet's store (where the directory is only this host's floor).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceState {
    pub service: String,
    pub dir: PathBuf,
    pub fleet: bool,
}

impl ServiceState {
    /// The state a pam_otp line of `service` with `policy` uses.
    pub fn of(service: &str, policy: &Policy) -> ServiceState {
        ServiceState {
            service: service.to_string(),
            dir: policy.state_dir.clone(),
            fleet: matches!(policy.store, Store::Redis(_)),
        }
    }
}

/// Services grouped by the state directory they use, when that splits a replay guard and a
/// guess budget: more than one directory, and a service on the file store among them.
/// Services on the fleet's store share their record through Redis whatever their
/// directory (it is only each one's floor), so a split among them alone splits nothing.
/// Empty when nothing is split.
pub fn split_guard(services: &[ServiceState]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut groups: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for line in services {
        let names = groups.entry(line.dir.clone()).or_default();
        if !names.contains(&line.service) {
            names.push(line.service.clone());
        }
    }
    if groups.len() < 2 || services.iter().all(|line| line.fleet) {
        groups.clear();
    }
    groups
}

/// Every pam_otp line in the auth stack of each service in `pam_dir` (includes and
/// substacks followed, as libpam reads them), as the module would resolve it (arguments,
/// then the policy file they name). Lines the module would refuse are left out: they are
/// a configuration error of their own.
pub fn state_dirs_of_services(pam_dir: &Path) -> Vec<ServiceState> {
    let mut found = Vec::new();
    for (service, lines) in pam_otp_lines_of_services(pam_dir) {
        for args in lines {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Ok(policy) = policy::load(&args) {
                found.push(ServiceState::of(&service, &policy));
            }
        }
    }
    found.sort();
    found
}

/// Whether `name` in the PAM directory is one of Debian's files that services include
/// (`@include common-auth`) rather than a service of its own.
pub(crate) fn is_include_file(name: &str) -> bool {
    name.starts_with("common-")
}

/// The most PAM files looked through for services that use pam_otp.
const MAX_SERVICES_SCANNED: usize = 512;

/// Every service in `pam_dir` (at most [`MAX_SERVICES_SCANNED`] files) with the arguments
/// of each pam_otp line of its auth stack (services without one included, with none).
pub(crate) fn pam_otp_lines_of_services(pam_dir: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    let Ok(entries) = fs::read_dir(pam_dir) else {
        return Vec::new();
    };
    let load = |name: &str| load_pam_file(pam_dir, name);
    entries
        .flatten()
        .take(MAX_SERVICES_SCANNED)
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

    fn line(service: &str, dir: &str, fleet: bool) -> ServiceState {
        ServiceState {
            service: service.into(),
            dir: dir.into(),
            fleet,
        }
    }

    #[test]
    fn services_are_grouped_by_state_dir() {
        let services = vec![
            line("sshd", "/var/lib/pam-otp", false),
            line("sudo", "/var/lib/pam-otp-sudo", false),
            line("login", "/var/lib/pam-otp", false),
            line("sshd", "/var/lib/pam-otp", false),
        ];
        let groups = split_guard(&services);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[Path::new("/var/lib/pam-otp")], ["sshd", "login"]);
        assert_eq!(groups[Path::new("/var/lib/pam-otp-sudo")], ["sudo"]);
        assert!(split_guard(&services[..1]).is_empty());
    }

    #[test]
    fn fleet_services_split_nothing_among_themselves() {
        let fleet = vec![
            line("sshd", "/var/lib/pam-otp", true),
            line("sudo", "/var/lib/pam-otp-sudo", true),
        ];
        assert!(split_guard(&fleet).is_empty());
        // A service on the file store elsewhere keeps a guard of its own.
        let mut mixed = fleet.clone();
        mixed.push(line("login", "/var/lib/pam-otp-breakglass", false));
        assert_eq!(split_guard(&mixed).len(), 3);
        // On the floor's own directory it shares this host's guard.
        let mut shared = fleet[..1].to_vec();
        shared.push(line("login", "/var/lib/pam-otp", false));
        assert!(split_guard(&shared).is_empty());
    }
}
