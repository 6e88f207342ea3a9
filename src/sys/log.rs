//! Syslog (facility authpriv) in the `pam_otp(SERVICE:auth): ...` form; never a code or secret.

#[cfg(test)]
use std::cell::RefCell;
use std::ffi::CString;

/// How serious a line is; maps onto syslog severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

enum Sink {
    /// The C library's syslog(3), as every PAM module's `pam_syslog` uses: it connects
    /// on the first line sent (a login that logs nothing costs nothing), and the line
    /// carries the application's own tag and pid (`sshd[1234]:`).
    System,
    /// Collects lines in memory (unit tests of the login flow).
    #[cfg(test)]
    Memory(RefCell<Vec<(Level, String)>>),
}

/// Logs for one login: knows the service, user and remote host to name in each line.
pub struct Logger {
    service: String,
    user: String,
    rhost: String,
    debug: bool,
    sink: Sink,
}

/// Keeps user-controlled text (user names, hosts, file paths) on one printable line.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .take(256)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl Logger {
    /// A logger to the system's syslog (facility authpriv); if there is none, lines are
    /// dropped.
    pub fn syslog(service: &str) -> Logger {
        Logger::with_sink(service, Sink::System)
    }

    /// A logger that keeps lines for inspection.
    #[cfg(test)]
    pub fn memory(service: &str) -> Logger {
        Logger::with_sink(service, Sink::Memory(RefCell::new(Vec::new())))
    }

    fn with_sink(service: &str, sink: Sink) -> Logger {
        Logger {
            service: sanitize(service),
            user: String::new(),
            rhost: String::new(),
            debug: false,
            sink,
        }
    }

    pub fn set_user(&mut self, user: &str) {
        self.user = sanitize(user);
    }

    pub fn set_rhost(&mut self, rhost: &str) {
        self.rhost = sanitize(rhost);
    }

    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// The lines kept by a memory logger (empty for syslog).
    #[cfg(test)]
    pub fn lines(&self) -> Vec<(Level, String)> {
        match &self.sink {
            Sink::Memory(lines) => lines.borrow().clone(),
            Sink::System => Vec::new(),
        }
    }

    pub fn log(&self, level: Level, message: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        let line = format!(
            "pam_otp({}:auth): {}; user={} rhost={}",
            self.service,
            sanitize(message),
            self.user,
            self.rhost
        );
        match &self.sink {
            #[cfg(test)]
            Sink::Memory(lines) => lines.borrow_mut().push((level, line)),
            Sink::System => {
                let severity = match level {
                    Level::Debug => libc::LOG_DEBUG,
                    Level::Info => libc::LOG_INFO,
                    Level::Warning => libc::LOG_WARNING,
                    Level::Error => libc::LOG_ERR,
                };
                // `sanitize` left no NUL in the line; a lost line must not fail the login.
                if let Ok(text) = CString::new(line) {
                    // SAFETY: a constant "%s" format with one NUL-terminated string that
                    // outlives the call; syslog(3) copies it before returning.
                    unsafe {
                        libc::syslog(libc::LOG_AUTHPRIV | severity, c"%s".as_ptr(), text.as_ptr())
                    };
                }
            }
        }
    }

    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }
    pub fn warning(&self, message: &str) {
        self.log(Level::Warning, message);
    }
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_service_user_and_host_on_one_line() {
        let mut log = Logger::memory("sshd");
        log.set_user("alice\nfake line");
        log.set_rhost("10.0.0.1");
        log.warning("wrong code");
        log.debug("hidden without debug");
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0],
            (
                Level::Warning,
                "pam_otp(sshd:auth): wrong code; user=alice?fake line rhost=10.0.0.1".into()
            )
        );
    }

    #[test]
    fn debug_lines_appear_with_debug() {
        let mut log = Logger::memory("sudo");
        log.set_debug(true);
        log.debug("detail");
        assert_eq!(log.lines().len(), 1);
    }
}
