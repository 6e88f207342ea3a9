//! The files installed with `pam_otp.so` that it loads or runs (the Redis client object,
//! the setuid checker): where the module was loaded from, and the check that each such
//! file is root's alone before it is used.

use std::ffi::{c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory `pam_otp.so` was loaded from (for a program linking this crate: the
/// program's own directory).
pub fn module_directory() -> Result<PathBuf, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let here = module_directory as *const c_void;
    // SAFETY: `here` is an address inside this object and `info` a valid out-parameter;
    // dladdr only writes into it.
    let found = unsafe { libc::dladdr(here, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot tell where pam_otp.so was loaded from".into());
    }
    // SAFETY: dladdr succeeded, so dli_fname is a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    let path = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// The first of `places` (relative to the module's directory) that exists, made
/// canonical; `None` if none does.
pub fn find_beside_module(places: &[&str]) -> Result<Option<PathBuf>, String> {
    Ok(find_in(&module_directory()?, places))
}

/// The first of `places` (relative to `dir`) that exists, made canonical.
fn find_in(dir: &Path, places: &[&str]) -> Option<PathBuf> {
    places
        .iter()
        .map(|place| dir.join(place))
        .find(|path| path.exists())
        .and_then(|path| std::fs::canonicalize(path).ok())
}

/// Where the setuid checker is, from the module's directory: installed
/// (`/usr/lib/<triplet>/security/../pam-otp/`), and as cargo builds it (beside).
pub const CHECKER_PLACES: [&str; 2] = ["../pam-otp/pam_otp_check", "pam_otp_check"];

/// The checker for the module in `module_dir`, if it is root's alone and setuid root;
/// else why it cannot be used. The module asks this before it runs the checker, and
/// `otp-admin doctor` for the services whose callers are not root.
pub fn usable_checker(module_dir: &Path) -> Result<PathBuf, String> {
    let path = find_in(module_dir, &CHECKER_PLACES).ok_or_else(|| {
        format!(
            "it is not installed (looked for {} in {})",
            CHECKER_PLACES.join(" and "),
            module_dir.display()
        )
    })?;
    let meta = check_root_only(&path)?;
    if !meta.is_file() || meta.mode() & 0o4000 == 0 {
        return Err(format!(
            "{} is not setuid root: run chown root:root and chmod 4755 on it, or reinstall \
             the package",
            path.display()
        ));
    }
    Ok(path)
}

/// Fails unless `path` and its directory are root's and writable by root only, like
/// the module: no one else can have put or changed what the module is about to use.
pub fn check_root_only(path: &Path) -> Result<std::fs::Metadata, String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    for checked in [dir, path] {
        let meta = std::fs::symlink_metadata(checked)
            .map_err(|e| format!("{}: {e}", checked.display()))?;
        if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{} must be root's and writable by root only",
                checked.display()
            ));
        }
    }
    std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))
}
