//! README, the man pages and the shipped `config/` files tell the same, true story: the
//! drop-in's settings are all named where the steps list them, every `$EXAMPLES/…` path
//! exists, the shipped PAM files are this machine's Debian files with only the pam_otp
//! lines changed, and pam_otp(8) shows the tested sshd configuration. (That the files
//! work with the real sshd and sudo, and that otp-setup(1)'s ranges are the ones
//! otp-setup enforces, the system suite shows.)

use std::fs;

fn read(rel: &str) -> String {
    let path = crate::repo_root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A man page as the reader sees its words: roff's `\-` is a plain hyphen.
fn man_page(name: &str) -> String {
    read(&format!("packaging/man/{name}")).replace("\\-", "-")
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
    let drop_in = settings(&read("config/sshd_config.d/pam-otp.conf"));
    assert!(drop_in.len() >= 4, "{drop_in:?}");
    let readme = read("README.md");
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
    let docs = read("README.md") + &man_page("pam_otp.8");
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
            let shipped = crate::repo_root().join("config").join(path);
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
    let ours: Vec<String> = settings(&read(&format!("config/pam.d/{shipped}")))
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
    let auth: Vec<String> = settings(&read("config/pam.d/sshd-otp"))
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
