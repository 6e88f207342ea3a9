//! What one benchmark run sets up and tears down: a throw-away user, its enrollment
//! files for each module, the modules' state directories, `/etc/pam.d` services, and
//! the codes (made by `oathtool`, never by this project's code).

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs `cmd`, returning its stdout, or an error naming the command and its stderr.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Seconds since the epoch.
#[allow(clippy::disallowed_methods)] // the tests' own clock, independent of the module's
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A local user with a home directory; removed (with its home) on drop.
pub struct User {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

/// useradd/userdel, retried while another process (a concurrent test) holds the
/// user database's lock.
fn user_db(args: &[&str]) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..50 {
        match run(Command::new(args[0]).args(&args[1..])) {
            Ok(out) => return Ok(out),
            Err(e) if e.to_lowercase().contains("lock") => last = e,
            Err(e) => return Err(e),
        }
        sleep(Duration::from_millis(200));
    }
    Err(last)
}

impl User {
    pub fn create(name: &str) -> Result<User, String> {
        user_db(&["useradd", "-m", "-s", "/usr/sbin/nologin", name])?;
        let entry = run(Command::new("getent").args(["passwd", name]))?;
        let fields: Vec<&str> = entry.trim().split(':').collect();
        if fields.len() < 7 {
            return Err(format!("odd passwd entry {entry:?}"));
        }
        let number = |s: &str| s.parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
        Ok(User {
            name: name.into(),
            uid: number(fields[2])?,
            gid: number(fields[3])?,
            home: PathBuf::from(fields[5]),
        })
    }

    /// Writes `~/<name>` owned by the user with `mode` (the way each module's
    /// enrollment tool would).
    pub fn write_file(&self, name: &str, content: &str, mode: u32) -> Result<PathBuf, String> {
        let path = self.home.join(name);
        let _ = fs::remove_file(&path);
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        fs::write(&path, content).map_err(fail)?;
        chown(&path, Some(self.uid), Some(self.gid)).map_err(fail)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(fail)?;
        Ok(path)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if let Err(e) = user_db(&["userdel", "-r", "-f", &self.name]) {
            eprintln!("warning: could not remove user {}: {e}", self.name);
        }
    }
}

/// A root-owned 0700 directory; removed with its contents on drop.
pub struct PrivateDir {
    pub path: PathBuf,
}

impl PrivateDir {
    pub fn create(path: &Path) -> Result<PrivateDir, String> {
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        fs::create_dir_all(path).map_err(fail)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(fail)?;
        Ok(PrivateDir { path: path.into() })
    }

    /// A fresh 0700 subdirectory (a module's state directory).
    pub fn subdir(&self, name: &str) -> Result<PathBuf, String> {
        let path = self.path.join(name);
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        fs::create_dir(&path).map_err(fail)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(fail)?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `/etc/pam.d/<name>` with one auth line; removed on drop.
pub struct Service {
    pub name: String,
    path: PathBuf,
}

impl Service {
    pub fn create(name: &str, auth_line: &str) -> Result<Service, String> {
        let path = Path::new("/etc/pam.d").join(name);
        let text = format!("# written by the pam-otp login benchmark\nauth required {auth_line}\n");
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Service {
            name: name.into(),
            path,
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A fresh 160-bit secret from the OS random source.
pub fn random_secret() -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes)
}

/// The HOTP codes for counters `0..count`, from oathtool (index = counter).
pub fn hotp_codes(secret_base32: &str, count: u64) -> Result<Vec<String>, String> {
    let out = run(Command::new("oathtool").args([
        "--hotp",
        "-b",
        secret_base32,
        "-c",
        "0",
        "-w",
        &count.saturating_sub(1).to_string(),
    ]))
    .map_err(|e| format!("{e} (is the oathtool package installed?)"))?;
    let codes: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
    if codes.len() as u64 != count || codes.iter().any(|c| c.len() != 6) {
        return Err(format!(
            "oathtool gave {} codes, expected {count}",
            codes.len()
        ));
    }
    Ok(codes)
}

/// TOTP codes (30 s steps) for the `steps` steps starting `back` steps before now.
pub fn totp_codes(secret_base32: &str, back: u64, steps: u64) -> Result<Vec<String>, String> {
    let start = unix_now().saturating_sub(back * 30);
    let out = run(Command::new("oathtool").args([
        "--totp",
        "-b",
        secret_base32,
        "-N",
        &format!("@{start}"),
        "-w",
        &steps.saturating_sub(1).to_string(),
    ]))?;
    Ok(out.lines().map(|l| l.trim().to_string()).collect())
}

/// The smallest six-digit code that none of `valid` is: wrong for every counter
/// or step the modules could try.
pub fn wrong_code(valid: &[&[String]]) -> String {
    let taken: HashSet<&str> = valid
        .iter()
        .flat_map(|codes| codes.iter().map(String::as_str))
        .collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|code| !taken.contains(code.as_str()))
        .unwrap_or_else(|| "000000".into())
}
