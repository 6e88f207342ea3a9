//! Log injection: the program name (which whoever runs a setuid program chooses, through a
//! link), the remote host and the terminal reach every syslog line. They must not be able
//! to break a line, hide text with bidirectional controls or forge a `user=` field. The
//! module's lines are captured from a private `/dev/log`. Run as root.

use crate::support;
use crate::support::hostile;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

use hostile::{run_argv_logged, Logged};
use support::{pamtester_argv, scratch_path, totp, wait_for_step_margin, Fixture, AUTH_ERR};

/// The raw characters that must never reach a log line from a caller.
const RAW_FORBIDDEN: &[char] = &['\n', '\r', '\u{1b}', '\u{2028}', '\u{2029}', '\u{202e}'];

fn module_lines(run: &Logged) -> Vec<String> {
    let lines: Vec<String> = run
        .log
        .iter()
        .filter(|l| l.contains("pam_otp("))
        .cloned()
        .collect();
    assert!(
        !lines.is_empty(),
        "the module logged nothing: {:#?}",
        run.log
    );
    lines
}

#[track_caller]
fn assert_one_clean_line(lines: &[String], what: &str) {
    for line in lines {
        let bad: Vec<char> = line.chars().filter(|c| RAW_FORBIDDEN.contains(c)).collect();
        assert!(
            bad.is_empty(),
            "{what}: raw {bad:?} in a log line: {line:?}"
        );
    }
}

#[test]
fn a_program_name_with_a_line_break_cannot_forge_a_line() {
    let f = Fixture::totp();
    let service = f.service("");
    // A setuid program is run through a link named by the attacker; its comm is that name.
    let dir = scratch_path("tli-bin");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let link = dir.join("y\nsshd[1]: Acc");
    symlink("/usr/bin/pamtester", &link).unwrap();
    let mut argv = pamtester_argv(&service, &f.user.name, None, None);
    argv[0] = link.display().to_string();
    wait_for_step_margin(5);
    let run = run_argv_logged(argv, &totp(&f.secret));
    fs::remove_dir_all(&dir).unwrap();
    // pamtester names itself by argv[0], so its "pamtester: …" line is not there.
    assert!(
        run.outcome.status == Some(0)
            && run.outcome.stdout.contains(": successfully authenticated"),
        "right code through the renamed client: {:?}",
        run.outcome
    );
    let lines = module_lines(&run);
    assert_one_clean_line(&lines, "program name with a newline");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("y\\x0asshd\\x5b1\\x5d\\x3a\\x20Acc[")),
        "the program name is not shown escaped: {lines:#?}"
    );
}

#[test]
fn remote_host_and_tty_are_escaped_and_quoted() {
    let f = Fixture::totp();
    let service = f.service("");
    let rhost = "10.9.9.9 user=root rhost=192.0.2.99\u{2028}fake\u{202e}gol";
    let tty = "pts/9\" user=\"root\nx";
    let mut argv = pamtester_argv(&service, &f.user.name, None, Some(rhost));
    let at = argv.iter().position(|a| a == "-I").unwrap();
    argv.insert(at, format!("tty={tty}"));
    argv.insert(at, "-I".into());
    let run = run_argv_logged(argv, "000000x");
    run.outcome.assert_failure(AUTH_ERR, "not a code");
    let lines = module_lines(&run);
    assert_one_clean_line(&lines, "rhost and tty");
    let expected_fields = format!(
        "; user=\"{}\" rhost=\"10.9.9.9 user=root rhost=192.0.2.99\\u{{2028}}fake\\u{{202e}}gol\" \
         tty=\"pts/9\\\" user=\\\"root\\nx\"",
        f.user.name
    );
    assert!(
        lines.iter().any(|l| l.ends_with(&expected_fields)),
        "no line ends with {expected_fields:?}: {lines:#?}"
    );
    for line in &lines {
        // The only unescaped quotes are the three pairs around user, rhost and tty.
        let bare_quotes = line
            .char_indices()
            .filter(|&(i, c)| c == '"' && !line[..i].ends_with('\\'))
            .count();
        assert_eq!(bare_quotes, 6, "{line}");
    }
}
