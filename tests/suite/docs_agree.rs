//! README, the man pages and the shipped `config/` files tell the same, true story: the
//! drop-in's settings are all named where the steps list them, every `$EXAMPLES/…` path
//! exists, the shipped PAM files are this machine's Debian files with only the pam_otp
//! lines changed, pam_otp(8) shows the tested sshd configuration, and otp-setup(1)'s
//! value ranges are the ones otp-setup enforces. (That the files work with the real
//! sshd and sudo is shown by the sshd, sudo and sudo_login tests.)

use crate::support::enrollment_tools;
use crate::support::repo_file;

use std::fs;
use std::path::Path;

use enrollment_tools::{run_as, text, ts_user, Workspace};

/// A man page as the reader sees its words: roff's `\-` is a plain hyphen.
fn man_page(name: &str) -> String {
    repo_file(&format!("packaging/man/{name}")).replace("\\-", "-")
}

/// The lines of a config file without comments (`#` to the end of the line) and blanks.
fn settings(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_drop_in_setting_is_named_in_readme_and_pam_otp_8() {
    let drop_in = settings(&repo_file("config/sshd_config.d/pam-otp.conf"));
    assert!(drop_in.len() >= 4, "{drop_in:?}");
    let readme = repo_file("README.md");
    let man = man_page("pam_otp.8");
    for setting in &drop_in {
        assert!(
            readme.contains(&format!("`{setting}`")),
            "README's steps do not name the drop-in's `{setting}`"
        );
        assert!(
            readme.lines().any(|l| l.trim() == setting),
            "README's quick start does not show the drop-in's {setting:?}"
        );
        assert!(
            man.lines().any(|l| l.trim() == setting),
            "pam_otp(8) does not show the drop-in's {setting:?}"
        );
    }
}

#[test]
fn every_examples_path_in_the_docs_is_shipped() {
    let docs = repo_file("README.md") + &man_page("pam_otp.8");
    let mut seen = 0;
    for marker in ["$EXAMPLES/", "examples/"] {
        for (at, _) in docs.match_indices(marker) {
            let rest = &docs[at + marker.len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_./".contains(*c))
                .collect();
            let path = path.trim_end_matches(['.', '/']);
            if path.is_empty() {
                continue;
            }
            seen += 1;
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(path);
            assert!(
                shipped.is_file() || shipped.is_dir(),
                "the docs name {marker}{path}, which config/ does not ship"
            );
        }
    }
    assert!(seen >= 6, "found only {seen} example paths in the docs");
}

/// The shipped file, its pam_otp (and pam_permit) lines taken out, is the Debian file
/// with `@include common-auth` taken out too when the shipped file replaces it.
#[track_caller]
fn assert_is_debians_plus_pam_otp(shipped: &str, debian: &str, replaces_common_auth: bool) {
    let debian_text = fs::read_to_string(debian)
        .unwrap_or_else(|e| panic!("cannot read {debian} (a Debian host is needed): {e}"));
    let mut expected = settings(&debian_text);
    assert!(
        !expected.iter().any(|l| l.contains("pam_otp")),
        "{debian} already names pam_otp; it cannot stand for Debian's file"
    );
    if replaces_common_auth {
        expected.retain(|l| l != "@include common-auth");
    }
    let ours: Vec<String> = settings(&repo_file(&format!("config/pam.d/{shipped}")))
        .into_iter()
        .filter(|l| {
            !l.starts_with("auth required pam_otp.so") && l != "auth required pam_permit.so"
        })
        .collect();
    assert_eq!(
        ours, expected,
        "config/pam.d/{shipped} is not {debian} with only the pam_otp lines added"
    );
}

#[test]
fn shipped_pam_files_are_debians_with_only_the_pam_otp_lines_changed() {
    assert_is_debians_plus_pam_otp("sudo-otp", "/etc/pam.d/sudo", false);
    assert_is_debians_plus_pam_otp("sudo-i-otp", "/etc/pam.d/sudo-i", false);
    assert_is_debians_plus_pam_otp("sshd-password-otp", "/etc/pam.d/sshd", false);
    assert_is_debians_plus_pam_otp("sshd-otp", "/etc/pam.d/sshd", true);
}

#[test]
fn pam_otp_8_shows_the_tested_key_then_code_stack() {
    let man = man_page("pam_otp.8");
    let examples = &man[man.find(".SH EXAMPLES").expect("pam_otp(8) has EXAMPLES")..];
    let auth: Vec<String> = settings(&repo_file("config/pam.d/sshd-otp"))
        .into_iter()
        .filter(|l| l.starts_with("auth "))
        .collect();
    assert_eq!(auth.len(), 2, "{auth:?}");
    for line in &auth {
        assert!(
            examples.lines().any(|l| l.trim() == line),
            "pam_otp(8) EXAMPLES lack {line:?} from config/pam.d/sshd-otp"
        );
    }
    assert!(
        examples.contains("replace\n.B @include common-auth"),
        "pam_otp(8) must say that @include common-auth goes for key + code"
    );
}

/// `(low, high)` from otp-setup(1)'s "LOW to HIGH" for an option.
fn documented_range(man: &str, option: &str) -> (u64, u64) {
    let at = man
        .find(&format!(".BI --{option}"))
        .unwrap_or_else(|| panic!("otp-setup(1) does not document --{option}"));
    let paragraph = &man[at..man[at + 1..]
        .find(".TP")
        .map_or(man.len(), |end| at + 1 + end)];
    let number =
        |w: &str| -> Option<u64> { w.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok() };
    let words: Vec<&str> = paragraph.split_whitespace().collect();
    words
        .windows(3)
        .find_map(|w| match (number(w[0]), w[1], number(w[2])) {
            (Some(low), "to", Some(high)) => Some((low, high)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("otp-setup(1) gives no range for --{option}: {paragraph}"))
}

#[test]
fn otp_setup_1_ranges_and_exit_status_are_what_otp_setup_does() {
    let man = man_page("otp-setup.1");
    let exit_status = &man[man
        .find(".SH EXIT STATUS")
        .expect("otp-setup(1) has EXIT STATUS")..];
    for status in ["0", "1", "2"] {
        assert!(
            exit_status.contains(&format!(".B {status}\n")),
            "otp-setup(1) EXIT STATUS does not explain {status}"
        );
    }
    let user = ts_user();
    let workspace = Workspace::new();
    let binary = workspace.binary();
    let exit = |option: &str, value: u64| -> Option<i32> {
        let value = value.to_string();
        let out = run_as(
            &user,
            "C.UTF-8",
            binary.to_str().unwrap(),
            &[
                "--no-confirm",
                "--qr",
                "none",
                "--force",
                &format!("--{option}"),
                &value,
            ],
        );
        if !matches!(out.status.code(), Some(0 | 2)) {
            panic!(
                "--{option} {value}: {:?}\n{}",
                out.status,
                text(&out.stderr)
            );
        }
        out.status.code()
    };
    for option in ["period", "recovery-codes"] {
        let (low, high) = documented_range(&man, option);
        assert_eq!(exit(option, low), Some(0), "--{option} {low} (documented)");
        assert_eq!(
            exit(option, high),
            Some(0),
            "--{option} {high} (documented)"
        );
        assert_eq!(
            exit(option, high + 1),
            Some(2),
            "--{option} {} (above)",
            high + 1
        );
        if low > 0 {
            assert_eq!(
                exit(option, low - 1),
                Some(2),
                "--{option} {} (below)",
                low - 1
            );
        }
    }
}
