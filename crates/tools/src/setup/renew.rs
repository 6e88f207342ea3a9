//! `--show` and `--new-recovery-codes`: the existing enrollment, after a current code from
//! its app, shown again or given new recovery codes; the secret never changes.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use super::{
    bad, confirm, fresh_recovery_codes, issuer_and_label, lost_terminal, qr_of, report_written,
    show, target_file, Choices, Context, Drawing, Plan, SetupError,
};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::otpauth::key_uri;
use pam_otp_sys::account::Account;
use pam_otp_sys::private_file::Existing;
use pam_otp_sys::user_file::{read_enrollment, UserFileError};

/// What `renew` did, for the administrator's audit line and state.
pub struct Renewed {
    /// The enrollment file shown or rewritten.
    pub path: PathBuf,
    /// The enrollment as it was, and as written (`None`: nothing written).
    pub before: Enrollment,
    pub written: Option<Enrollment>,
}

/// Reads the enrollment at `--file` (or the default), asks for a current code from its
/// app, then shows its QR code (`--show`) or replaces its recovery codes. Nothing is
/// shown or written unless the code is right.
pub fn renew(
    args: &Choices,
    context: &Context,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Renewed, SetupError> {
    let path = target_file(args, context)?;
    let account = Account::lookup(&context.user_name)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad(format!("no such user: {:?}", context.user_name)))?;
    let before = match read_enrollment(&path, &account) {
        Ok(enrollment) => enrollment,
        Err(UserFileError::NotEnrolled) => {
            return Err(bad(format!(
                "{} does not exist: there is no enrollment to show or renew; run {} first",
                path.display(),
                context.operator.command(&context.user_name)
            )))
        }
        Err(e) => return Err(bad(format!("{}: {e}", path.display()))),
    };
    let (issuer, label) = issuer_and_label(args, context)?;
    // The code first: whoever cannot give one sees neither the secret nor new codes.
    let confirmed = confirm(&before, &context.operator.whose(), input, err)?;
    let drawing = Drawing::chosen(args, context, false);
    let mut plan = Plan {
        target: path.clone(),
        existing: Existing::Replace,
        enrollment: before.clone(),
        new_recovery_codes: Vec::new(),
        imported: None,
        issuer,
        label,
        terminal_drawing: drawing.terminal_drawing,
        ascii_for_locale: drawing.ascii_for_locale,
        utf8_assumed: drawing.utf8_assumed,
    };
    let Some(count) = args.new_recovery_codes else {
        let uri = key_uri(&plan.enrollment, &plan.issuer, &plan.label);
        let code = qr_of(&uri)?;
        show(&plan, context, &uri, &code, out, err)
            .and_then(|()| out.flush())
            .map_err(lost_terminal)?;
        return Ok(Renewed {
            path,
            before,
            written: None,
        });
    };
    let (codes, hashes) = fresh_recovery_codes(count)?;
    let mut renewed = confirmed;
    renewed.recovery_codes = hashes;
    context
        .operator
        .write(&path, renewed.to_toml().as_bytes(), Existing::Replace)?;
    plan.enrollment = renewed.clone();
    plan.new_recovery_codes = codes;
    writeln!(
        out,
        "The old recovery codes no longer work, the unused ones included."
    )
    .and_then(|()| report_written(&plan, context, &[], out))
    .map_err(|e| {
        SetupError::NotConfirmed(format!(
            "wrote {} but could not show the new recovery codes ({e}); run {} \
             --new-recovery-codes again",
            path.display(),
            context.operator.command(&context.user_name)
        ))
    })?;
    Ok(Renewed {
        path,
        before,
        written: Some(renewed),
    })
}
