//! Every sudoers, sshd_config and PAM line that README, the man pages and `config/` show
//! is one the real tools accept: `visudo -c`, `sshd -t`, libpam itself (the line as a
//! service file, run through pamtester in a private mount namespace, with libpam's parse
//! and load errors caught from syslog), and the module's own argument parser for every
//! pam_otp.so argument. The lines are found by reading the docs (README's fenced blocks
//! and inline code, the man pages' `.nf`/`.EX` blocks, the files under `config/`), so a
//! line added later is checked without touching this file. Must run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use pam_otp_sys::policy;

use crate::support::clients::{ensure_privsep_dir, new_host_key, require_program, sshd_test, SSHD};
use crate::support::hostile::run_argv_logged;
use crate::support::{
    assert_root, in_private_mounts, module_path, repo_file, scratch_path, system_pam_module_dir,
    unique,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sudoers,
    Sshd,
    Pam,
}

/// One code line the docs show, and where (`README.md:317`).
#[derive(Debug)]
struct Shown {
    origin: String,
    text: String,
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// README's code: every line of a fenced block, and every inline code span (which may
/// run over a line break, as prose wraps).
fn readme_lines() -> Vec<Shown> {
    let text = repo_file("README.md");
    let mut shown = Vec::new();
    let mut in_block = false;
    // Prose since the last fence, with the number of its first line.
    let mut prose = String::new();
    let mut prose_start = 1;
    let flush = |prose: &mut String, start: usize, shown: &mut Vec<Shown>| {
        let mut line = start;
        for (i, part) in prose.split('`').enumerate() {
            if i % 2 == 1 {
                shown.push(Shown {
                    origin: format!("README.md:{line}"),
                    text: squeeze(part),
                });
            }
            line += part.matches('\n').count();
        }
        prose.clear();
    };
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.trim_start().starts_with("```") {
            if !in_block {
                flush(&mut prose, prose_start, &mut shown);
            }
            in_block = !in_block;
            prose_start = n + 1;
        } else if in_block {
            shown.push(Shown {
                origin: format!("README.md:{n}"),
                text: line.trim().to_string(),
            });
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    flush(&mut prose, prose_start, &mut shown);
    assert!(!in_block, "README.md has an unclosed code fence");
    shown
}

/// A man page's no-fill (`.nf` … `.fi`) and example (`.EX` … `.EE`) blocks, as the reader
/// sees them.
fn man_lines(name: &str) -> Vec<Shown> {
    let text = repo_file(&format!("packaging/man/{name}"));
    let mut shown = Vec::new();
    let mut in_block = false;
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.starts_with(".nf") || line.starts_with(".EX") {
            in_block = true;
        } else if line.starts_with(".fi") || line.starts_with(".EE") {
            in_block = false;
        } else if in_block && !line.starts_with('.') {
            shown.push(Shown {
                origin: format!("{name}:{n}"),
                text: line
                    .replace("\\-", "-")
                    .replace("\\(dq", "\"")
                    .replace("\\e", "\\")
                    .trim()
                    .to_string(),
            });
        }
    }
    shown
}

/// Whether a comment line of a shipped file shows a line to use (`#   KEYWORD VALUE`:
/// indented past the comment's own space), rather than prose.
fn shown_in_comment(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('#')?;
    rest.starts_with("  ").then(|| rest.trim())
}

/// The files under `config/` that hold PAM or sshd lines: every setting, and the
/// example lines in their comments. pam-auth-update's profiles (`config/pam-configs`)
/// list a section's lines without their type: it is added from the section's name.
fn config_lines() -> Vec<(Option<Kind>, Shown)> {
    let root = crate::support::repo_root().join("config");
    let mut shown = Vec::new();
    for (dir, kind) in [
        ("pam.d", Some(Kind::Pam)),
        ("sshd_config.d", Some(Kind::Sshd)),
        ("pam-configs", None),
    ] {
        let mut files: Vec<_> = fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("cannot list config/{dir}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "config/{dir} is empty");
        for file in files {
            let rel = format!(
                "config/{dir}/{}",
                file.file_name().unwrap().to_string_lossy()
            );
            let text = repo_file(&rel);
            let mut section: Option<&str> = None;
            for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
                let origin = format!("{rel}:{n}");
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(example) = shown_in_comment(line) {
                    shown.push((
                        None,
                        Shown {
                            origin,
                            text: example.to_string(),
                        },
                    ));
                    continue;
                }
                if line.trim_start().starts_with('#') {
                    continue;
                }
                if kind.is_some() {
                    shown.push((
                        kind,
                        Shown {
                            origin,
                            text: line.trim().to_string(),
                        },
                    ));
                    continue;
                }
                // pam-auth-update: `Auth:` (or `Account:`, …) starts a section of
                // indented lines; any other unindented `Field: value` ends it.
                if !line.starts_with([' ', '\t']) {
                    section = match line.trim_end() {
                        "Auth:" | "Auth-Initial:" => Some("auth"),
                        "Account:" | "Account-Initial:" => Some("account"),
                        "Session:" | "Session-Initial:" => Some("session"),
                        "Password:" | "Password-Initial:" => Some("password"),
                        _ => None,
                    };
                } else if let Some(pam_type) = section {
                    shown.push((
                        Some(Kind::Pam),
                        Shown {
                            origin,
                            text: format!("{pam_type} {}", line.trim()),
                        },
                    ));
                }
            }
        }
    }
    shown
}

/// The words of a line without its comment (`#` at the start or after a blank), except
/// sudoers' `#include`/`#includedir`, which are not comments.
fn words(text: &str) -> Vec<&str> {
    let text = text.trim();
    if text.starts_with("#include") {
        return text.split_whitespace().collect();
    }
    let end = text
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || text[..i].ends_with([' ', '\t'])))
        .map_or(text.len(), |(i, _)| i);
    text[..end].split_whitespace().collect()
}

const PAM_TYPES: [&str; 4] = ["auth", "account", "session", "password"];
const PAM_CONTROLS: [&str; 6] = [
    "required",
    "requisite",
    "sufficient",
    "optional",
    "include",
    "substack",
];

/// A PAM line's module and arguments (`None` for `@include` and for include/substack).
struct PamLine<'a> {
    module: Option<&'a str>,
    arguments: Vec<&'a str>,
}

/// The parts of a PAM line (pam.conf(5): `[-]TYPE CONTROL MODULE ARGS`, CONTROL a
/// keyword or `[value=action …]`; or `@include FILE`), or `None` if it is not one.
/// A line with a misspelt type or control still counts when its third word names a
/// module, so that libpam, not this guess, judges it.
fn pam_line<'a>(words: &[&'a str]) -> Option<PamLine<'a>> {
    match words {
        ["@include", file] if !file.starts_with('/') => {
            return Some(PamLine {
                module: None,
                arguments: Vec::new(),
            })
        }
        [first, ..] if first.starts_with('@') => return None,
        _ => {}
    }
    if words.len() < 3 {
        return None;
    }
    let is_type = PAM_TYPES.contains(&words[0].trim_start_matches('-'));
    let module_at = if words[1].starts_with('[') {
        1 + words[1..].iter().position(|w| w.ends_with(']'))? + 1
    } else {
        2
    };
    let module = *words.get(module_at)?;
    let looks_like_a_module_line = words[2].ends_with(".so")
        && words[0].chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && words[1].chars().all(|c| c.is_ascii_lowercase());
    if !(is_type && (PAM_CONTROLS.contains(&words[1]) || module_at > 2))
        && !looks_like_a_module_line
    {
        return None;
    }
    Some(match words[1] {
        "include" | "substack" => PamLine {
            module: None,
            arguments: Vec::new(),
        },
        _ => PamLine {
            module: Some(module),
            arguments: words[module_at + 1..].to_vec(),
        },
    })
}

/// sshd_config keywords are CamelCase words (`UsePAM`, `PermitRootLogin`), or one of
/// the few single words.
fn is_sshd_keyword(word: &str) -> bool {
    let camel = word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().skip(1).any(|c| c.is_ascii_uppercase());
    camel || ["Match", "Include", "Port", "Banner", "Ciphers", "Subsystem"].contains(&word)
}

/// A sudoers user specification: `WHO HOSTS = …` (`alice ALL=(root) /usr/bin/id`).
fn is_user_spec(words: &[&str]) -> bool {
    let who = words[0].trim_start_matches(['%', '+', ':']);
    let who_ok = who.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && who
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    let rest = words[1..].join(" ");
    match rest.split_once('=') {
        Some((hosts, after)) => {
            let hosts = hosts.trim();
            who_ok
                && !hosts.is_empty()
                && hosts
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.,!+-".contains(c))
                && !after.trim().is_empty()
        }
        None => false,
    }
}

/// Which tool a line is for, if it is a configuration line at all.
fn classify(text: &str) -> Option<Kind> {
    let words = words(text);
    if words.len() < 2 {
        return None;
    }
    let first = words[0];
    let sudoers = first == "Defaults"
        || ["Defaults:", "Defaults@", "Defaults!", "Defaults>"]
            .iter()
            .any(|p| first.starts_with(p))
        || ["@includedir", "#includedir", "#include"].contains(&first)
        || (first == "@include" && words[1].starts_with('/'))
        || first.ends_with("_Alias");
    if sudoers {
        Some(Kind::Sudoers)
    } else if pam_line(&words).is_some() {
        Some(Kind::Pam)
    } else if is_sshd_keyword(first) {
        Some(Kind::Sshd)
    } else if is_user_spec(&words) {
        Some(Kind::Sudoers)
    } else {
        None
    }
}

/// Every configuration line the docs show, with its kind.
fn shown_lines() -> Vec<(Kind, Shown)> {
    let mut docs: Vec<(Option<Kind>, Shown)> = readme_lines()
        .into_iter()
        .chain(man_lines("pam_otp.8"))
        .chain(man_lines("otp-admin.8"))
        .chain(man_lines("otp-setup.1"))
        .map(|s| (None, s))
        .collect();
    docs.extend(config_lines());
    let mut lines = Vec::new();
    for (known, shown) in docs {
        let guessed = classify(&shown.text);
        if let Some(kind) = known {
            // A shipped file's every setting is checked, so the guess must not miss one.
            assert_eq!(
                guessed,
                Some(kind),
                "{}: {:?} is not recognised as a {kind:?} line",
                shown.origin,
                shown.text
            );
        }
        if let Some(kind) = guessed {
            lines.push((kind, shown));
        }
    }
    lines
}

/// The lines of one kind; fails if there are none (the extraction would be broken).
fn lines_of(kind: Kind) -> Vec<Shown> {
    let lines: Vec<Shown> = shown_lines()
        .into_iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, s)| s)
        .collect();
    assert!(!lines.is_empty(), "the docs show no {kind:?} line at all");
    eprintln!("{} {kind:?} lines:", lines.len());
    for line in &lines {
        eprintln!("  {}: {}", line.origin, line.text);
    }
    lines
}

#[track_caller]
fn assert_none_refused(kind: Kind, refused: Vec<String>) {
    assert!(
        refused.is_empty(),
        "{} {kind:?} line(s) in the docs are refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

#[test]
fn doc_lines_sudoers_are_accepted_by_visudo() {
    assert_root();
    require_program("/usr/sbin/visudo", "sudo");
    let mut refused = Vec::new();
    for line in lines_of(Kind::Sudoers) {
        let file = scratch_path("tdsudoers");
        fs::write(&file, format!("{}\n", line.text)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o440)).unwrap();
        let out = Command::new("visudo")
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .expect("run visudo");
        let _ = fs::remove_file(&file);
        if !out.status.success() {
            refused.push(format!(
                "{}: {:?}\n  visudo -c: {}{}",
                line.origin,
                line.text,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert_none_refused(Kind::Sudoers, refused);
}

#[test]
fn doc_lines_sshd_config_is_accepted_by_sshd_t() {
    assert_root();
    require_program(SSHD, "openssh-server");
    ensure_privsep_dir();
    let dir = scratch_path("tdsshd");
    fs::create_dir(&dir).unwrap();
    let host_key = new_host_key(&dir);
    let config = dir.join("sshd_config");
    let mut refused = Vec::new();
    for line in lines_of(Kind::Sshd) {
        // The line last: a `Match` line opens a block that runs to the end.
        fs::write(
            &config,
            format!("HostKey {}\n{}\n", host_key.display(), line.text),
        )
        .unwrap();
        let args = ["-f".to_string(), config.display().to_string()];
        if let Err(complaint) = sshd_test(Path::new(SSHD), &args, &[]) {
            refused.push(format!(
                "{}: {:?}\n  sshd -t: {}",
                line.origin,
                line.text,
                complaint.trim()
            ));
        }
    }
    let _ = fs::remove_dir_all(&dir);
    assert_none_refused(Kind::Sshd, refused);
}

/// Runs the rest in a private mount namespace whose /etc/pam.d is a copy with one more
/// service ($1, text $2), and whose module directory ($4) is a copy holding the module
/// under test as `pam_otp.so` ($3), so lines naming `pam_otp.so` load it as on an
/// installed host. $5 is a scratch mount point.
const PRIVATE_PAM: &str = r#"set -e
service=$1; text=$2; module=$3; modules=$4; scratch=$5; shift 5
mkdir "$scratch"
mount -t tmpfs -o mode=0755 tmpfs "$scratch"
mkdir "$scratch/pam.d" "$scratch/modules"
cp -a /etc/pam.d/. "$scratch/pam.d/"
printf '%s\n' "$text" > "$scratch/pam.d/$service"
cp -a "$modules/." "$scratch/modules/"
cp "$module" "$scratch/modules/pam_otp.so"
mount --bind "$scratch/pam.d" /etc/pam.d
mount --bind "$scratch/modules" "$modules"
exec "$@""#;

/// What libpam says about `line` as a service file (empty: nothing). libpam reads the
/// whole file and loads every module at pam_start, logging what it cannot parse or load;
/// the operation run is one of another type, so the line's own module never runs.
fn libpam_complaints(line: &str) -> Vec<String> {
    let first = line.split_whitespace().next().unwrap_or("");
    let (other, operation) = match first.trim_start_matches('-') {
        "auth" | "@include" => ("account required pam_permit.so", "acct_mgmt"),
        _ => ("auth required pam_permit.so", "authenticate"),
    };
    let service = unique("pam-otp-doc-line-");
    let scratch = scratch_path("tdpam");
    let mut argv = in_private_mounts(
        PRIVATE_PAM,
        &[
            service.clone(),
            format!("{line}\n{other}"),
            module_path().display().to_string(),
            system_pam_module_dir().display().to_string(),
            scratch.display().to_string(),
        ],
    );
    argv.extend(["pamtester", &service, "root", operation].map(String::from));
    let logged = run_argv_logged(argv, "");
    let _ = fs::remove_dir(&scratch);
    // libpam's own messages are tagged `PAM` (a module's carry its name).
    let mut complaints: Vec<String> = logged
        .log
        .iter()
        .filter(|l| l.contains(": PAM "))
        .cloned()
        .collect();
    if logged.outcome.status != Some(0) {
        complaints.push(format!("pamtester {operation}: {:?}", logged.outcome));
    }
    complaints
}

#[test]
fn doc_lines_pam_are_accepted_by_libpam() {
    assert_root();
    require_program("/usr/bin/pamtester", "pamtester");
    let mut refused = Vec::new();
    for line in lines_of(Kind::Pam) {
        let complaints = libpam_complaints(&line.text);
        if !complaints.is_empty() {
            refused.push(format!(
                "{}: {:?}\n  {}",
                line.origin,
                line.text,
                complaints.join("\n  ")
            ));
        }
    }
    // The check itself must see a broken line, or it proves nothing.
    for broken in [
        "auht required pam_permit.so",
        "auth requird pam_permit.so",
        "auth required pam_no_such_module.so",
    ] {
        assert!(
            !libpam_complaints(broken).is_empty(),
            "libpam took {broken:?} without a word: the check is blind"
        );
    }
    assert_none_refused(Kind::Pam, refused);
}

#[test]
fn doc_lines_pam_otp_arguments_are_accepted_by_the_module() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for line in lines_of(Kind::Pam) {
        let words = words(&line.text);
        let Some(PamLine {
            module: Some(module),
            arguments,
        }) = pam_line(&words)
        else {
            continue;
        };
        if Path::new(module).file_name().and_then(|n| n.to_str()) != Some("pam_otp.so") {
            continue;
        }
        // The synopsis (`[window=1] [nullok] …`) shows the grammar, not a line to use.
        if arguments.iter().any(|a| a.starts_with('[')) {
            continue;
        }
        checked += 1;
        if let Err(e) = policy::parse(&arguments, None) {
            refused.push(format!("{}: {:?}\n  {e}", line.origin, line.text));
        }
    }
    assert!(checked > 0, "the docs show no pam_otp.so line");
    eprintln!("{checked} pam_otp.so lines' arguments checked");
    assert_none_refused(Kind::Pam, refused);
}

#[test]
fn doc_lines_classifier_knows_each_form() {
    for (text, kind) in [
        ("Defaults:alice pam_service=sudo-otp", Some(Kind::Sudoers)),
        ("Defaults !pam_silent", Some(Kind::Sudoers)),
        ("%admins ALL=(ALL:ALL) ALL", Some(Kind::Sudoers)),
        (
            "alice host1,host2 = (root) /usr/bin/id",
            Some(Kind::Sudoers),
        ),
        ("@includedir /etc/sudoers.d", Some(Kind::Sudoers)),
        ("UsePAM yes", Some(Kind::Sshd)),
        ("Match User alice", Some(Kind::Sshd)),
        ("PermitRootLogin prohibit-password", Some(Kind::Sshd)),
        ("auth required pam_otp.so nullok # comment", Some(Kind::Pam)),
        ("-auth optional pam_gnome_keyring.so", Some(Kind::Pam)),
        (
            "auth [success=1 default=ignore] pam_permit.so",
            Some(Kind::Pam),
        ),
        ("auht required pam_permit.so", Some(Kind::Pam)),
        ("@include common-auth", Some(Kind::Pam)),
        ("store = \"redis\"", None),
        ("tls-port 6380", None),
        ("--cfg sha1_backend=\"soft\"", None),
        ("sshd -T -C user=alice,host=x", None),
        ("# otp-admin doctor", None),
        ("UsePAM", None),
    ] {
        assert_eq!(classify(text), kind, "{text:?}");
    }
    let words = words("auth required pam_otp.so split_pass   # asks once");
    let line = pam_line(&words).unwrap();
    assert_eq!(
        (line.module, line.arguments),
        (Some("pam_otp.so"), vec!["split_pass"])
    );
}
