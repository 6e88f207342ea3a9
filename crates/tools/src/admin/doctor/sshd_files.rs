//! Where a setting of sshd's effective configuration comes from: sshd_config and the
//! files it includes, read in sshd's order, so that a fix names the file that really
//! sets a value (sshd keeps the first value it reads, so an earlier drop-in wins over
//! pam-otp.conf).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// sshd's own configuration when doctor is not told another.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
/// Relative Include paths are relative to this directory.
const SSHD_DIR: &str = "/etc/ssh";
/// sshd's own limit on nested Includes.
const MAX_INCLUDE_DEPTH: usize = 16;
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_FILES: usize = 256;

/// The first line that sets `keyword` (any case) outside a Match block: `file:line`.
pub fn origin_of(config: &Path, keyword: &str) -> Option<String> {
    let mut budget = MAX_FILES;
    first_setting(config, keyword, 0, &mut budget)
}

fn first_setting(file: &Path, keyword: &str, depth: usize, budget: &mut usize) -> Option<String> {
    if depth > MAX_INCLUDE_DEPTH || *budget == 0 {
        return None;
    }
    *budget -= 1;
    let text = read_bounded(file)?;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let mut words = line.splitn(2, |c: char| c.is_whitespace() || c == '=');
        let key = words.next().unwrap_or("");
        let value = words
            .next()
            .unwrap_or("")
            .trim_start_matches(['=', ' ', '\t']);
        if key.eq_ignore_ascii_case("match") {
            // What follows applies only to some connections.
            return None;
        }
        if key.eq_ignore_ascii_case(keyword) {
            return Some(format!("{}:{}", file.display(), number + 1));
        }
        if key.eq_ignore_ascii_case("include") {
            for pattern in value.split_whitespace() {
                for included in expand(pattern) {
                    if let Some(found) = first_setting(&included, keyword, depth + 1, budget) {
                        return Some(found);
                    }
                }
            }
        }
    }
    None
}

/// An Include pattern as sshd expands it: relative to /etc/ssh, globbed, in order.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let full = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("{SSHD_DIR}/{pattern}")
    };
    let Ok(paths) = glob::glob(&full) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = paths.flatten().collect();
    paths.sort();
    paths
}

fn read_bounded(file: &Path) -> Option<String> {
    let meta = fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    fs::File::open(file)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_file_that_sets_a_keyword_is_named() {
        let dir = std::env::temp_dir().join(format!("doctor-sshd-{}", std::process::id()));
        let drop_ins = dir.join("sshd_config.d");
        fs::create_dir_all(&drop_ins).unwrap();
        fs::write(
            drop_ins.join("50-cloud-init.conf"),
            "PasswordAuthentication yes\n",
        )
        .unwrap();
        fs::write(drop_ins.join("pam-otp.conf"), "PasswordAuthentication no\n").unwrap();
        let main = dir.join("sshd_config");
        fs::write(
            &main,
            format!(
                "# comment\nInclude {}/*.conf\nPasswordAuthentication no\nUsePAM yes\n\
                 Match User x\n  PermitRootLogin yes\n",
                drop_ins.display()
            ),
        )
        .unwrap();
        let origin = origin_of(&main, "passwordauthentication").unwrap();
        assert_eq!(
            origin,
            format!("{}:1", drop_ins.join("50-cloud-init.conf").display())
        );
        assert_eq!(
            origin_of(&main, "UsePAM").unwrap(),
            format!("{}:4", main.display())
        );
        assert_eq!(origin_of(&main, "PermitRootLogin"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
