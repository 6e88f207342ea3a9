//! What `otp-admin doctor` reports: findings with a severity and a fix, and the exit
//! status, text and JSON they add up to.

use std::fmt::Write as _;

use serde::Serialize;

use pam_otp_core::printable::visible;

/// How bad a finding is; the worst one decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; changes nothing.
    Info,
    /// Works, but weaker or riskier than it looks.
    Warning,
    /// The second factor is skipped, or logins fail, or the module refuses its settings.
    Error,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

/// One problem (or fact) found, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name for the kind of finding, for scripts (e.g. `otp-sufficient`).
    pub id: &'static str,
    /// The PAM service it concerns, if any.
    pub service: Option<String>,
    /// The file and line it comes from, if any (`/etc/pam.d/sshd:17`).
    pub location: Option<String>,
    pub message: String,
    pub fix: String,
    /// The users it concerns, if any.
    pub users: Vec<String>,
}

impl Finding {
    pub fn new(severity: Severity, id: &'static str, message: String, fix: String) -> Finding {
        Finding {
            severity,
            id,
            service: None,
            location: None,
            message,
            fix,
            users: Vec::new(),
        }
    }

    pub fn service(mut self, service: &str) -> Finding {
        self.service = Some(service.into());
        self
    }

    pub fn at(mut self, location: String) -> Finding {
        self.location = Some(location);
        self
    }

    pub fn users(mut self, users: Vec<String>) -> Finding {
        self.users = users;
        self
    }
}

/// Exit statuses: clean, warnings only, at least one error.
pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_WARNINGS: u8 = 1;
pub const EXIT_ERRORS: u8 = 2;

/// Everything one run found, worst first.
#[derive(Debug, Serialize)]
pub struct Report {
    pub services: Vec<String>,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(services: Vec<String>, mut findings: Vec<Finding>) -> Report {
        // Stable: within a severity, the order in which the checks ran.
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        Report {
            services,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            findings,
        }
    }

    pub fn exit_status(&self) -> u8 {
        if self.errors > 0 {
            EXIT_ERRORS
        } else if self.warnings > 0 {
            EXIT_WARNINGS
        } else {
            EXIT_CLEAN
        }
    }

    /// One block per finding; control and invisible characters from the command line,
    /// file names or file contents are shown escaped (`\u{1b}`), so nothing can forge a
    /// line or command the terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mut head = String::new();
            if let Some(service) = &f.service {
                let _ = write!(head, "{}: ", visible(service));
            }
            let _ = writeln!(
                out,
                "{:<8}{head}{}",
                f.severity.label(),
                visible(&f.message)
            );
            if let Some(location) = &f.location {
                let _ = writeln!(out, "        at:    {}", visible(location));
            }
            if !f.users.is_empty() {
                let _ = writeln!(out, "        users: {}", visible(&f.users.join(", ")));
            }
            if !f.fix.is_empty() {
                let _ = writeln!(out, "        fix:   {}", visible(&f.fix));
            }
        }
        let _ = writeln!(
            out,
            "checked {}: {} error(s), {} warning(s)",
            visible(&self.services.join(", ")),
            self.errors,
            self.warnings
        );
        out
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Only plain strings and numbers are serialized; this cannot fail in practice.
            format!("{{\"error\": \"cannot serialize the report: {e}\"}}")
        });
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding::new(severity, "x", "m".into(), "f".into())
    }

    #[test]
    fn the_worst_finding_decides_the_exit_status() {
        assert_eq!(Report::new(vec![], vec![]).exit_status(), EXIT_CLEAN);
        let info = Report::new(vec![], vec![finding(Severity::Info)]);
        assert_eq!(info.exit_status(), EXIT_CLEAN);
        let warn = Report::new(
            vec![],
            vec![finding(Severity::Info), finding(Severity::Warning)],
        );
        assert_eq!(warn.exit_status(), EXIT_WARNINGS);
        let error = Report::new(
            vec![],
            vec![finding(Severity::Warning), finding(Severity::Error)],
        );
        assert_eq!(error.exit_status(), EXIT_ERRORS);
        assert_eq!(error.findings[0].severity, Severity::Error);
        assert_eq!((error.errors, error.warnings), (1, 1));
    }

    #[test]
    fn text_and_json_carry_the_fix() {
        let report = Report::new(
            vec!["sshd".into()],
            vec![finding(Severity::Error)
                .service("sshd")
                .at("/etc/pam.d/sshd:3".into())],
        );
        let text = report.to_text();
        assert!(text.contains("ERROR   sshd: m"), "{text}");
        assert!(text.contains("fix:   f"), "{text}");
        assert!(text.contains("/etc/pam.d/sshd:3"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["errors"], 1);
        assert_eq!(json["findings"][0]["severity"], "error");
        assert_eq!(json["findings"][0]["fix"], "f");
    }
}
