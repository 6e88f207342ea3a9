//! Keeping the code a `split_pass` line split off, in the PAM handle (pam_set_data),
//! until the `use_split_code` line after the password module takes it.

use ::pam::constants::PamResultCode;
use ::pam::module::PamHandle;

use crate::login::SplitCode;

/// What this module keeps under [`key`]: always exactly this type, so reading it back
/// as this type is sound. `None` once taken, or when nothing was split off. Dropping it
/// (libpam's cleanup, at replacement or pam_end) wipes the code (`Zeroizing`).
type Kept = Option<SplitCode>;

/// The handle's data names are shared by every module in the stack: this one names the
/// module and its version, so only this build of pam_otp ever stores under it.
fn key() -> String {
    format!("pam_otp {} split code", env!("CARGO_PKG_VERSION"))
}

/// Keeps `code` (or nothing, wiping what an earlier attempt on this handle kept).
pub fn keep(pamh: &mut PamHandle, code: Option<SplitCode>) -> Result<(), PamResultCode> {
    pamh.set_data::<Kept>(&key(), Box::new(code))
}

/// Takes what a `split_pass` line kept, leaving nothing behind: a code is used once.
pub fn take(pamh: &mut PamHandle) -> Result<Option<SplitCode>, PamResultCode> {
    // SAFETY: only `keep` stores under `key()`, always as `Kept`, and the key carries
    // this module's name and version, so the data is a `Kept` of this very layout.
    // The reference is cloned from at once and dropped before the data is replaced.
    let kept = match unsafe { pamh.get_data::<Kept>(&key()) } {
        Ok(kept) => kept.clone(),
        Err(PamResultCode::PAM_NO_MODULE_DATA) => return Ok(None),
        Err(code) => return Err(code),
    };
    keep(pamh, None)?;
    Ok(kept)
}
