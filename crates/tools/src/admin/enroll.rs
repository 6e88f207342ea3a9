//! `otp-admin enroll USER`: the enrollment flow of `otp-setup`, run by root for a user,
//! into a root-owned file the module reads as root (by default the store,
//! `/var/lib/pam-otp/secrets/USER.toml`).

use std::io;
use std::process::ExitCode;

use super::{audit, error_line, locked_state, target, AdminError, Cli, Target, EXIT_REFUSED};
use crate::setup::renew::Renewed;
use crate::setup::{self, Choices, Context};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::state::{Custody, EnrollmentRef};
use pam_otp_sys::policy::expand_secret_path;
use pam_otp_sys::store::Durability;

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
    if choices.show || choices.new_recovery_codes.is_some() {
        return renew(&target, choices, &context, &mut stdin.lock());
    }
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

/// `--show` and `--new-recovery-codes` for the store's enrollment: the user types a
/// current code at the administrator's screen first.
fn renew(
    target: &Target,
    choices: &Choices,
    context: &Context,
    input: &mut dyn io::BufRead,
) -> ExitCode {
    let result = setup::renew::renew(
        choices,
        context,
        input,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    let renewed = match result {
        Ok(renewed) => renewed,
        Err(e) => {
            eprintln!("otp-admin: {}", error_line(&e));
            return ExitCode::from(e.exit_code());
        }
    };
    let Some(written) = &renewed.written else {
        audit(
            target,
            &format!(
                "QR code of {} shown again by otp-admin",
                renewed.path.display()
            ),
        );
        return ExitCode::SUCCESS;
    };
    audit(
        target,
        &format!(
            "recovery codes of {} replaced by otp-admin",
            renewed.path.display()
        ),
    );
    // New recovery codes make a new enrollment record; the old record's replay guard and
    // HOTP counter carry over, so that a code already used stays used.
    if let Err(e) = carry_record_over(target, &renewed, written) {
        eprintln!(
            "otp-admin: warning: the new recovery codes are written, but the login state \
             could not be carried over ({}): a code used in the last minutes may be \
             accepted once more",
            error_line(&e)
        );
    }
    ExitCode::SUCCESS
}

fn carry_record_over(
    target: &Target,
    renewed: &Renewed,
    written: &Enrollment,
) -> Result<(), AdminError> {
    let Some((locked, Some(mut state))) = locked_state(target)? else {
        return Ok(());
    };
    let file = renewed.path.to_string_lossy();
    let before = EnrollmentRef::new(&renewed.before, &file, Custody::Administrator);
    let after = EnrollmentRef::new(written, &file, Custody::Administrator);
    let Some(mut record) = state.enrollments.remove(&before.fingerprint) else {
        return Ok(());
    };
    // The spent ones were indexes into the old codes.
    record.spent_recovery_codes.clear();
    let fresh = after.fresh_record();
    record.next_hotp_counter = record.next_hotp_counter.max(fresh.next_hotp_counter);
    state.enrollments.insert(after.fingerprint.clone(), record);
    locked.save(&state, Durability::Synced)?;
    Ok(())
}
