//! Helpers for the administrator's secret store: its directory as the package makes it,
//! secret files placed there for one test user (removed on drop), and `otp-admin enroll`
//! driven at its confirmation prompt with a code from `oathtool`.

use std::fs::{self, DirBuilder};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::admin::{otp_admin_path, AdminRun};
use crate::support::enrollment_tools::{parse_printed, text};
use crate::support::{totp, wait_for_step_margin};

/// The store directory (`/var/lib/pam-otp/secrets`, inside the default state directory).
pub const STORE_DIR: &str = "/var/lib/pam-otp/secrets";
/// The module argument that reads the store, as `config/pam.d/sudo-otp` has it.
pub const STORE_SECRET: &str = "secret=/var/lib/pam-otp/secrets/%u.toml";

const STATE_DIR: &str = "/var/lib/pam-otp";

/// The store directory while tests use it. Made (root, 0700, as the package's postinst
/// makes it) if missing; if this process made `/var/lib/pam-otp`, the last test to let go
/// removes what is left of it, empty directories only, so that a later package check
/// finds the machine as it was.
struct StoreDir {
    made_here: bool,
}

impl StoreDir {
    fn get() -> Arc<StoreDir> {
        static CURRENT: Mutex<Weak<StoreDir>> = Mutex::new(Weak::new());
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = current.upgrade() {
            return dir;
        }
        let made_here = !Path::new(STATE_DIR).exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(STORE_DIR)
            .unwrap_or_else(|e| panic!("cannot make {STORE_DIR}: {e}"));
        let dir = Arc::new(StoreDir { made_here });
        *current = Arc::downgrade(&dir);
        dir
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        if self.made_here {
            let _ = fs::remove_dir(STORE_DIR);
            let _ = fs::remove_dir(STATE_DIR);
        }
    }
}

/// The store file of `user`, whoever wrote it; removed on drop.
pub struct StoreSecret {
    pub path: PathBuf,
    _dir: Arc<StoreDir>,
}

impl StoreSecret {
    /// `/var/lib/pam-otp/secrets/USER.toml` (nothing is written; the store exists).
    pub fn of(user: &str) -> StoreSecret {
        StoreSecret {
            path: Path::new(STORE_DIR).join(format!("{user}.toml")),
            _dir: StoreDir::get(),
        }
    }

    /// Writes `toml` there as `otp-admin enroll` would: root's, mode 0600.
    pub fn write(user: &str, toml: &str) -> StoreSecret {
        let secret = StoreSecret::of(user);
        fs::write(&secret.path, toml).unwrap();
        fs::set_permissions(&secret.path, fs::Permissions::from_mode(0o600)).unwrap();
        secret
    }
}

impl Drop for StoreSecret {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `otp-admin enroll USER ARGS` as root, answering its confirmation prompt as the user
/// would at the administrator's screen: the printed secret goes into `oathtool`, and its
/// code is typed.
pub fn enroll_confirmed(user: &str, args: &[&str]) -> AdminRun {
    let mut child = Command::new("timeout")
        .arg("60")
        .arg(otp_admin_path())
        .args(["enroll", user])
        .args(args)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run otp-admin enroll");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&sink);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                writer.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        (sink, reader)
    };
    let (stdout, stdout_reader) = collect(Box::new(child.stdout.take().unwrap()));
    let (stderr, stderr_reader) = collect(Box::new(child.stderr.take().unwrap()));
    let seen = |sink: &Arc<Mutex<Vec<u8>>>| text(&sink.lock().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    // The two pipes are read by two threads: the prompt on stderr can arrive
    // before the reader of stdout has caught up with the lines printed earlier.
    while !(seen(&stderr).contains("app shows now: ") && key_uri_line_is_complete(&seen(&stdout))) {
        assert!(
            Instant::now() < deadline,
            "otp-admin enroll never asked for a code\n{}{}",
            seen(&stdout),
            seen(&stderr)
        );
        sleep(Duration::from_millis(50));
    }
    wait_for_step_margin(5);
    let code = totp(&parse_printed(&seen(&stdout)).secret);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    stdout_reader.join().unwrap();
    stderr_reader.join().unwrap();
    AdminRun {
        status: status.code(),
        stdout: seen(&stdout),
        stderr: seen(&stderr),
    }
}

/// Whether the `Key URI:` line, printed before the QR code and the prompt, has been read
/// up to its line end.
fn key_uri_line_is_complete(stdout: &str) -> bool {
    stdout
        .split_once("Key URI: ")
        .is_some_and(|(_, rest)| rest.contains('\n'))
}
