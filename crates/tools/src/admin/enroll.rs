//! `otp-admin enroll USER`: the enrollment flow of `otp-setup`, run by root for a user,
//! into a root-owned file the module reads as root (by default the store,
//! `/var/lib/pam-otp/secrets/USER.toml`).

use std::io;
use std::process::ExitCode;

use super::{audit, error_line, target, Cli, EXIT_REFUSED};
use crate::setup::{self, Choices, Context};
use pam_otp_sys::policy::expand_secret_path;

/// Runs the enrollment; the exit status is otp-setup's (0 enrolled, 1 not confirmed,
/// 2 refused), and nothing is written unless it is 0.
pub(super) fn main(cli: &Cli, user: &str, choices: &Choices) -> ExitCode {
    let target = match target(cli, user) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("otp-admin: {}", error_line(&e));
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let context = Context::administrator_for(target.account.clone());
    let stdin = io::stdin();
    let result = setup::enroll(
        choices,
        None,
        &context,
        &mut stdin.lock(),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    let written = match result {
        Ok(written) => written,
        Err(e) => {
            eprintln!("otp-admin: {}", error_line(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    audit(
        &target,
        &format!("enrolled by otp-admin into {}", written.display()),
    );
    // The module reads what its secret= names: say so when that is not this file.
    let account = &target.account;
    if let Ok(read) = expand_secret_path(&target.policy.secret, &account.name, &account.home) {
        if read != written {
            eprintln!(
                "note: logins read {} (secret = {:?} in the policy), not {}; set \
                 secret=/var/lib/pam-otp/secrets/%u.toml on the PAM line of the service \
                 (see /usr/share/doc/pam-otp/examples/pam.d/sudo-otp)",
                read.display(),
                target.policy.secret,
                written.display()
            );
        }
    }
    ExitCode::SUCCESS
}
