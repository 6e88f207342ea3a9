//! The shipped `config/` files agree with the module: the policy file
//! documents every setting at its real default and parses with the module's own
//! policy parser, and the PAM files name the module as it is installed.
//! (That the files work with sshd and sudo is shown by the system suite's sshd and sudo
//! tests.)

use std::fs;

use pam_otp_sys::policy;

fn shipped(rel: &str) -> String {
    let path = crate::repo_root().join("config").join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The documented settings: every `# key = value` line (a comment of prose never
/// has ` = ` right after one word).
fn documented_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter_map(|rest| rest.split_once(" = "))
        .filter(|(key, _)| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The keys the policy file may hold: the fields of `Settings` in crates/sys/src/policy.rs,
/// except those marked `#[serde(skip)]`.
fn settings_fields() -> Vec<String> {
    let source = include_str!("../../../sys/src/policy.rs");
    let start = source
        .find("struct Settings {")
        .expect("crates/sys/src/policy.rs has no struct Settings");
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
    let mut fields = Vec::new();
    let mut skip_next = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("#[serde(skip") {
            skip_next = true;
        } else if let Some((name, _)) = line.split_once(':') {
            if !skip_next && !line.starts_with("//") {
                fields.push(name.trim_start_matches("pub ").to_string());
            }
            skip_next = false;
        }
    }
    assert!(
        fields.len() > 5,
        "could not read Settings from crates/sys/src/policy.rs: {fields:?}"
    );
    fields
}

#[test]
fn shipped_policy_file_documents_every_setting_once() {
    let text = shipped("pam_otp.toml");
    let documented: Vec<String> = documented_settings(&text)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut sorted = documented.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        documented.len(),
        "a key is documented twice: {documented:?}"
    );
    let mut fields = settings_fields();
    fields.sort();
    assert_eq!(
        sorted, fields,
        "config/pam_otp.toml and the policy keys in crates/sys/src/policy.rs differ"
    );
}

#[test]
fn shipped_policy_file_parses_and_gives_the_defaults_when_uncommented() {
    let text = shipped("pam_otp.toml");
    // As shipped (all commented out) it is valid and changes nothing.
    assert_eq!(
        policy::parse(&[], Some(&text)).expect("the shipped file does not parse"),
        policy::parse(&[], None).unwrap()
    );
    // Every `# key = default` uncommented: still the defaults, so each documented
    // default is the real one.
    let uncommented: String = text
        .lines()
        .map(|line| match documented_settings(line).is_empty() {
            true => format!("{line}\n"),
            false => format!("{}\n", &line[2..]),
        })
        .collect();
    assert!(
        uncommented.contains("\nwindow = 1\n"),
        "uncommenting failed:\n{uncommented}"
    );
    let parsed = policy::parse(&[], Some(&uncommented)).unwrap_or_else(|e| {
        panic!("the uncommented policy file does not parse: {e}\n{uncommented}")
    });
    let defaults = policy::parse(&[], None).unwrap();
    // The prompt is the one setting whose absence means something of its own (its
    // default depends on the pass mode): compare the text the user sees.
    assert_eq!(parsed.prompt_text(), defaults.prompt_text());
    // The deadline has no default (none: no roll-out); its example must parse.
    assert!(parsed.enforce_after.is_some(), "{uncommented}");
    assert_eq!(
        policy::Policy {
            prompt: None,
            enforce_after: None,
            ..parsed
        },
        defaults
    );
}

#[test]
fn shipped_pam_files_name_the_installed_module() {
    // sudo reads the administrator's store: a secret the user's own processes cannot read.
    let store = "secret=/var/lib/pam-otp/secrets/%u.toml";
    for (file, arguments) in [
        ("pam.d/sshd-otp", &[][..]),
        ("pam.d/sshd-password-otp", &[][..]),
        ("pam.d/sudo-otp", &[store][..]),
        ("pam.d/sudo-i-otp", &[store][..]),
    ] {
        let text = shipped(file);
        let otp_lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("pam_otp"))
            .collect();
        assert_eq!(
            otp_lines.len(),
            1,
            "{file}: expected one pam_otp line: {otp_lines:?}"
        );
        let words: Vec<&str> = otp_lines[0].split_whitespace().collect();
        let mut expected = vec!["auth", "required", "pam_otp.so"];
        expected.extend_from_slice(arguments);
        assert_eq!(
            words,
            expected,
            "{file}: the pam_otp line should be `{}`",
            expected.join(" ")
        );
    }
}

#[test]
fn shipped_one_prompt_file_checks_the_code_after_the_password() {
    let text = shipped("pam.d/sshd-password-code-one-prompt");
    assert!(
        !text.lines().any(|l| l.trim() == "@include common-auth"),
        "common-auth would ask for the password a second time"
    );
    let auth: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.first() == Some(&"auth"))
        .collect();
    assert_eq!(
        auth,
        [
            ["auth", "requisite", "pam_otp.so", "split_pass"],
            ["auth", "requisite", "pam_unix.so", "use_first_pass"],
            ["auth", "required", "pam_otp.so", "use_split_code"],
        ],
        "the auth stack should split, check the password, then check the code"
    );
    // The other modules' arguments are ones the module understands.
    for args in [["split_pass"], ["use_split_code"]] {
        policy::parse(&args, None).unwrap();
    }
}

#[test]
fn shipped_sshd_drop_in_asks_for_key_then_code() {
    let text = shipped("sshd_config.d/pam-otp.conf");
    let settings: Vec<Vec<&str>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    for expected in [
        ["UsePAM", "yes"],
        ["KbdInteractiveAuthentication", "yes"],
        ["AuthenticationMethods", "publickey,keyboard-interactive"],
    ] {
        assert!(
            settings.iter().any(|s| s == &expected),
            "sshd_config.d/pam-otp.conf lacks {expected:?}"
        );
    }
}
