//! What the module sends to syslog, captured on a private /dev/log.
//!
//! pamtester runs in its own mount namespace with a private `/dev` whose `log` is a
//! datagram socket of the test (`support::hostile::run_argv_logged`); the host's
//! /dev/log is never touched.

use crate::support;
use crate::support::hostile;

use support::*;

const AUTHPRIV: u32 = 10;
const RHOST: &str = "203.0.113.77";

/// One syslog datagram.
#[derive(Debug, Clone)]
struct Line {
    pri: u32,
    text: String,
}

impl Line {
    fn parse(raw: &[u8]) -> Line {
        let text = String::from_utf8_lossy(raw).into_owned();
        let pri = text
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("syslog line without <PRI>: {text:?}"));
        Line { pri, text }
    }
    fn facility(&self) -> u32 {
        self.pri / 8
    }
    fn severity(&self) -> u32 {
        self.pri % 8
    }
}

/// Runs pamtester from RHOST with /dev/log bound to a fresh listener; returns its outcome
/// and what it logged.
fn run_logged(
    service: &Service,
    user: &str,
    answer: &str,
    faketime: Option<&str>,
) -> (Outcome, Vec<Line>) {
    run_logged_from(service, user, answer, faketime, Some(RHOST))
}

/// `run_logged` with the remote host item set to `rhost` (None: a local service).
fn run_logged_from(
    service: &Service,
    user: &str,
    answer: &str,
    faketime: Option<&str>,
    rhost: Option<&str>,
) -> (Outcome, Vec<Line>) {
    let logged = hostile::run_argv_logged(pamtester_argv(service, user, faketime, rhost), answer);
    let lines = logged
        .log
        .iter()
        .map(|l| Line::parse(l.as_bytes()))
        .collect();
    (logged.outcome, lines)
}

/// The module's lines for this service (tagged `pam_otp(SERVICE:auth)`), all checked to be authpriv.
#[track_caller]
fn module_lines(service: &Service, lines: &[Line]) -> Vec<Line> {
    let tag = format!("pam_otp({}:auth)", service.name);
    let mine: Vec<Line> = lines
        .iter()
        .filter(|l| l.text.contains(&tag))
        .cloned()
        .collect();
    for line in &mine {
        assert_eq!(line.facility(), AUTHPRIV, "not facility authpriv: {line:?}");
    }
    mine
}

/// A module line naming the user and the remote host, with at most `max_severity`
/// (0 = emerg … 7 = debug), whose text (lowercased) has one of `words`.
#[track_caller]
fn assert_logged(lines: &[Line], user: &str, max_severity: u32, words: &[&str], what: &str) {
    let found = lines.iter().any(|l| {
        let lower = l.text.to_lowercase();
        l.text.contains(user)
            && l.text.contains(RHOST)
            && l.severity() <= max_severity
            && (words.is_empty() || words.iter().any(|w| lower.contains(w)))
    });
    assert!(
        found,
        "{what}: no line naming user {user} and rhost {RHOST} with severity <= {max_severity} \
         and one of {words:?}; got {lines:#?}"
    );
}

/// Whether `code` occurs in `text` as a number of its own (not inside a longer number).
fn contains_code(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Nothing secret (codes, secret, recovery codes in any spelling) in any logged line.
#[track_caller]
fn assert_no_secrets(lines: &[Line], codes: &[&str], secrets: &[&str]) {
    for line in lines {
        for code in codes {
            assert!(
                !contains_code(&line.text, code),
                "code {code} was logged: {line:?}"
            );
        }
        let lower = line.text.to_lowercase();
        for secret in secrets {
            let s = secret.to_lowercase();
            let squeezed: String = s.chars().filter(|c| *c != '-' && *c != ' ').collect();
            assert!(
                !lower.contains(&s) && !lower.contains(&squeezed),
                "secret {secret} was logged: {line:?}"
            );
        }
    }
}

#[test]
fn success_is_logged_with_user_and_rhost() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let code = totp(&fx.secret);
    let (out, lines) = run_logged(&service, &fx.user.name, &code, None);
    out.assert_success("right code");
    let mine = module_lines(&service, &lines);
    assert_logged(&mine, &fx.user.name, 6, &[], "success");
    assert_no_secrets(&lines, &[&code], &[&fx.secret]);
}

#[test]
fn failure_is_logged_with_user_and_rhost() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let wrong = wrong_totp(&fx.secret);
    let (out, lines) = run_logged(&service, &fx.user.name, &wrong, None);
    out.assert_failure(AUTH_ERR, "wrong code");
    let mine = module_lines(&service, &lines);
    assert_logged(&mine, &fx.user.name, 5, &[], "failure (notice or worse)");
    assert_no_secrets(&lines, &[&wrong], &[&fx.secret]);
}

#[test]
fn success_and_failure_are_logged_differently() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let wrong = wrong_totp(&fx.secret);
    let (out, bad) = run_logged(&service, &fx.user.name, &wrong, None);
    out.assert_failure(AUTH_ERR, "wrong code");
    let code = totp(&fx.secret);
    let (out, good) = run_logged(&service, &fx.user.name, &code, None);
    out.assert_success("right code");
    // Strip the "<PRI>timestamp host tag[pid]:" header: the messages themselves must differ.
    let body = |l: &Line| {
        l.text
            .split_once(&format!("pam_otp({}:auth)", service.name))
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    };
    let mut all = bad.clone();
    all.extend(good.iter().cloned());
    let bad: Vec<String> = module_lines(&service, &bad).iter().map(body).collect();
    let good: Vec<String> = module_lines(&service, &good).iter().map(body).collect();
    assert!(!bad.is_empty() && !good.is_empty(), "{bad:?} / {good:?}");
    assert!(
        good.iter().all(|g| !bad.contains(g)),
        "a success is logged with the same words as a failure: {good:?} / {bad:?}"
    );
    assert_no_secrets(&all, &[&code, &wrong], &[&fx.secret]);
}

#[test]
fn lockout_is_logged() {
    let fx = Fixture::totp();
    let service = fx.service("max_failures=2 lockout=60");
    let wrong = wrong_totp(&fx.secret);
    let mut all = Vec::new();
    for i in 1..=2 {
        let (out, lines) = run_logged(&service, &fx.user.name, &wrong, None);
        out.assert_failure(AUTH_ERR, &format!("wrong code #{i}"));
        all.extend(lines);
    }
    let code = totp(&fx.secret);
    let (out, lines) = run_logged(&service, &fx.user.name, &code, None);
    out.assert_failure(LOCKED, "right code while locked");
    let locked = module_lines(&service, &lines);
    assert_logged(&locked, &fx.user.name, 5, &["lock"], "attempt while locked");
    all.extend(lines);
    assert_no_secrets(&all, &[&code, &wrong], &[&fx.secret]);
}

#[test]
fn recovery_code_use_is_logged_as_a_warning_without_the_code() {
    let secret = new_secret();
    let recovery = "m4tq-2kzv-9bxe";
    let toml = format!(
        "{}recovery_codes = [\"{}\"]\n",
        totp_enrollment(&secret),
        recovery_hash(recovery)
    );
    let fx = Fixture::with_enrollment(&secret, &toml);
    let service = fx.service("");
    let (out, lines) = run_logged(&service, &fx.user.name, recovery, None);
    out.assert_success("recovery code");
    let mine = module_lines(&service, &lines);
    assert_logged(&mine, &fx.user.name, 4, &["recovery"], "recovery code use");
    assert_no_secrets(&lines, &[], &[&secret, recovery]);
}

#[test]
fn broken_enrollment_is_logged_with_the_file_name_but_not_the_secret() {
    // A syntax error on the secret's own line: a parser error message would quote it.
    let secret = new_secret();
    let toml = format!("version = 1\nsecret = \"{secret}\nmystery = 1\n");
    let fx = Fixture::with_enrollment(&secret, &toml);
    let service = fx.service("");
    let (out, lines) = run_logged(&service, &fx.user.name, "123456", None);
    out.assert_failure(AUTHINFO_UNAVAIL, "broken ~/.otp.toml");
    let mine = module_lines(&service, &lines);
    let path = fx.user.otp_path().display().to_string();
    assert!(
        mine.iter().any(|l| l.text.contains(&path)),
        "the broken file {path} is not named in the log: {mine:#?}"
    );
    assert_no_secrets(&lines, &[], &[&secret, &secret[..16]]);
}

#[test]
fn unknown_argument_is_logged() {
    let fx = Fixture::totp();
    // forward_pass is no argument of this module: refused like any other unknown one.
    for arg in ["frobnicate=1", "forward_pass"] {
        let service = fx.service(arg);
        let code = totp(&fx.secret);
        let (out, lines) = run_logged(&service, &fx.user.name, &code, None);
        out.assert_failure(SERVICE_ERR, &format!("unknown argument {arg}"));
        let mine = module_lines(&service, &lines);
        assert!(
            mine.iter()
                .any(|l| l.text.contains("unknown module argument")
                    && l.text.contains(arg)
                    && l.severity() <= 3),
            "the unknown argument {arg} is not logged as an error: {mine:#?}"
        );
    }
}

#[test]
fn header_is_rfc3164_with_the_day_padded_by_a_space() {
    // Noon on the 1st: the 1st in every time zone within 11 hours of UTC.
    let fx = Fixture::totp();
    let service = fx.service("");
    let (_, lines) = run_logged(
        &service,
        &fx.user.name,
        "000000",
        Some("@2026-12-01 12:00:00"),
    );
    let mine = module_lines(&service, &lines);
    assert!(!mine.is_empty(), "nothing logged: {lines:#?}");
    for line in &mine {
        let after_pri = line
            .text
            .split_once('>')
            .map(|(_, rest)| rest)
            .unwrap_or("");
        let header: Vec<char> = after_pri.chars().take(16).collect();
        let header: String = header.into_iter().collect();
        let time_ok = header.len() == 16
            && header[7..15].chars().enumerate().all(|(i, c)| {
                if i == 2 || i == 5 {
                    c == ':'
                } else {
                    c.is_ascii_digit()
                }
            });
        assert!(
            header.starts_with("Dec  1 ") && time_ok && header.ends_with(' '),
            "not an RFC 3164 timestamp (`Dec  1 hh:mm:ss `): {:?}",
            line.text
        );
    }
}

#[test]
fn a_local_service_logs_no_empty_rhost() {
    let fx = Fixture::totp();
    let service = fx.service("");
    let code = totp(&fx.secret);
    let (out, lines) = run_logged_from(&service, &fx.user.name, &code, None, None);
    out.assert_success("right code, no remote host");
    let mine = module_lines(&service, &lines);
    assert!(!mine.is_empty(), "nothing logged: {lines:#?}");
    for line in &mine {
        assert!(
            line.text.contains(&format!("user=\"{}\"", fx.user.name))
                && !line.text.contains("rhost"),
            "a local login names a remote host: {:?}",
            line.text
        );
    }
}
