//! The contender that logs in as the user, as a screen locker does: a copy of the module
//! with the setuid checker `pam_otp_check` beside it, in a root-owned directory, and the
//! user's own codes file. The checker keeps its state where the policy file says
//! (`/var/lib/pam-otp` by default): the user's records there are removed afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fixture::{run, User};

/// The state directory the checker uses unless `/etc/security/pam_otp.toml` says otherwise.
const CHECKER_STATE_DIR: &str = "/var/lib/pam-otp";

/// Who a worker runs as, and the codes file that user can read.
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub codes_file: PathBuf,
}

/// The module and checker copies; removed on drop, with the user's checker state.
pub struct CheckerCopy {
    dir: PathBuf,
    pub module: PathBuf,
    state_files: Vec<PathBuf>,
    made_state_dir: bool,
}

impl CheckerCopy {
    /// Copies `module` and the `pam_otp_check` built beside it into
    /// `/usr/local/lib/<tag>-checker` (module 0644, checker 4755 root:root).
    pub fn create(module: &Path, tag: &str, user: &User) -> Result<CheckerCopy, String> {
        let checker = module.with_file_name("pam_otp_check");
        if !checker.is_file() {
            return Err(format!(
                "{} not found: build it (cargo build --release)",
                checker.display()
            ));
        }
        let dir = Path::new("/usr/local/lib").join(format!("{tag}-checker"));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let copy = dir.join("libpam_otp.so");
        for (from, to, mode) in [
            (module, copy.as_path(), "0644"),
            (
                checker.as_path(),
                dir.join("pam_otp_check").as_path(),
                "4755",
            ),
        ] {
            run(Command::new("install")
                .args(["-o", "root", "-g", "root", "-m", mode])
                .arg(from)
                .arg(to))?;
        }
        let state = Path::new(CHECKER_STATE_DIR);
        Ok(CheckerCopy {
            dir,
            module: copy,
            state_files: ["state", "lock"]
                .iter()
                .map(|ext| state.join(format!("uid-{}.{ext}", user.uid)))
                .collect(),
            made_state_dir: !state.exists(),
        })
    }
}

impl Drop for CheckerCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        for file in &self.state_files {
            let _ = fs::remove_file(file);
        }
        if self.made_state_dir {
            // Only if empty: nothing else had been there.
            let _ = fs::remove_dir(CHECKER_STATE_DIR);
        }
    }
}
