//! Syslog (facility authpriv) in the `pam_otp(SERVICE:auth): MESSAGE; user="…" rhost="…"
//! tty="…"` form; never a code or secret. Everything a caller controls is escaped
//! (`printable`): the program name and service as bare words, the message on one line,
//! user, remote host and terminal as quoted values.

use std::cell::RefCell;
use std::os::unix::net::UnixDatagram;

use pam_otp_core::printable::{bare_word, escape, quoted};

/// Where syslog(3) sends its lines.
const DEV_LOG: &str = "/dev/log";

/// Longest message kept; it may name files and quote the reason they were refused.
const MAX_MESSAGE_CHARS: usize = 1000;

/// How serious a line is; maps onto syslog severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

enum Sink {
    /// The system's syslog socket, connected on the first line sent (a login that logs
    /// nothing costs nothing); the header is written here, not by the C library, so that
    /// the program name, which a caller chooses, is escaped like every other field.
    Syslog(RefCell<Option<UnixDatagram>>),
    /// Collects lines in memory (unit tests of the login flow).
    #[cfg(any(test, feature = "memory-log"))]
    Memory(RefCell<Vec<(Level, String)>>),
}

/// Logs for one login: knows the service, user and remote host to name in each line.
pub struct Logger {
    service: String,
    user: String,
    rhost: String,
    tty: String,
    debug: bool,
    sink: Sink,
}

/// The calling program's name, which whoever runs it chooses (a link to sudo may be
/// named anything, line breaks included): a bare word, so it cannot forge a line.
fn program_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| bare_word(s.strip_suffix('\n').unwrap_or(&s)))
        .unwrap_or_else(|_| "pam_otp".into())
}

impl Logger {
    /// A logger to the system's syslog (facility authpriv); if there is none, lines are
    /// dropped.
    pub fn syslog(service: &str) -> Logger {
        Logger::with_sink(service, Sink::Syslog(RefCell::new(None)))
    }

    /// A logger that keeps lines for inspection.
    #[cfg(any(test, feature = "memory-log"))]
    pub fn memory(service: &str) -> Logger {
        Logger::with_sink(service, Sink::Memory(RefCell::new(Vec::new())))
    }

    fn with_sink(service: &str, sink: Sink) -> Logger {
        Logger {
            service: bare_word(service),
            user: String::new(),
            rhost: String::new(),
            tty: String::new(),
            debug: false,
            sink,
        }
    }

    pub fn set_user(&mut self, user: &str) {
        self.user = user.to_string();
    }

    pub fn set_rhost(&mut self, rhost: &str) {
        self.rhost = rhost.to_string();
    }

    pub fn set_tty(&mut self, tty: &str) {
        self.tty = tty.to_string();
    }

    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// The lines kept by a memory logger (empty for syslog).
    #[cfg(any(test, feature = "memory-log"))]
    pub fn lines(&self) -> Vec<(Level, String)> {
        match &self.sink {
            Sink::Memory(lines) => lines.borrow().clone(),
            Sink::Syslog(_) => Vec::new(),
        }
    }

    pub fn log(&self, level: Level, message: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        // Without a syslog socket the line would be dropped: do not build it.
        match &self.sink {
            Sink::Syslog(socket) => {
                let mut socket = socket.borrow_mut();
                if socket.is_none() {
                    *socket = UnixDatagram::unbound()
                        .and_then(|s| s.connect(DEV_LOG).map(|()| s))
                        .ok();
                }
                if socket.is_none() {
                    return;
                }
            }
            #[cfg(any(test, feature = "memory-log"))]
            Sink::Memory(_) => {}
        }
        let mut line = format!(
            "pam_otp({}:auth): {}; user={}",
            self.service,
            escape(message, MAX_MESSAGE_CHARS),
            quoted(&self.user),
        );
        // A local service (sudo, su) has no remote host, a remote one often no tty: a field
        // nobody set is left out rather than written empty.
        for (name, value) in [("rhost", &self.rhost), ("tty", &self.tty)] {
            if !value.is_empty() {
                line.push_str(&format!(" {name}={}", quoted(value)));
            }
        }
        match &self.sink {
            #[cfg(any(test, feature = "memory-log"))]
            Sink::Memory(lines) => lines.borrow_mut().push((level, line)),
            Sink::Syslog(socket) => {
                let severity = match level {
                    Level::Debug => libc::LOG_DEBUG,
                    Level::Info => libc::LOG_INFO,
                    Level::Warning => libc::LOG_WARNING,
                    Level::Error => libc::LOG_ERR,
                };
                let datagram = format!(
                    "<{}>{} {}[{}]: {line}",
                    libc::LOG_AUTHPRIV | severity,
                    local_timestamp(),
                    program_name(),
                    std::process::id()
                );
                // A lost log line must not fail the login.
                if let Some(socket) = socket.borrow().as_ref() {
                    let _ = socket.send(datagram.as_bytes());
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

/// Now in local time as RFC 3164 writes it; the Unix epoch if the time cannot be had.
fn local_timestamp() -> String {
    // SAFETY: time(NULL) only returns the time; localtime_r writes into the zeroed `tm`
    // we own and reads the time zone (which glibc sets up once, as syslog(3) itself does).
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return rfc3164_timestamp(0, 1, 0, 0, 0);
        }
        tm
    };
    rfc3164_timestamp(tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// `Mmm dd hh:mm:ss` with English month names and the day padded with a space (RFC 3164,
/// section 4.1.2); `month` counts from 0, as in `struct tm`.
fn rfc3164_timestamp(month: i32, day: i32, hour: i32, minute: i32, second: i32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[month.clamp(0, 11) as usize];
    format!("{month} {day:>2} {hour:02}:{minute:02}:{second:02}")
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
                "pam_otp(sshd:auth): wrong code; user=\"alice\\nfake line\" rhost=\"10.0.0.1\""
                    .into()
            )
        );
    }

    #[test]
    fn caller_controlled_fields_cannot_forge_fields_or_lines() {
        let mut log = Logger::memory("su:auth): forged\nx");
        log.set_user("bob\u{202e}");
        log.set_rhost("10.9.9.9 user=root rhost=192.0.2.99\u{2028}");
        log.set_tty("pts/1\" user=\"root");
        log.error("file /home/x\"; user=\"root\n is bad");
        let (_, line) = &log.lines()[0];
        assert_eq!(
            line,
            "pam_otp(su\\x3aauth\\x29\\x3a\\x20forged\\x0ax:auth): file /home/x\\\"; \
             user=\\\"root\\n is bad; user=\"bob\\u{202e}\" \
             rhost=\"10.9.9.9 user=root rhost=192.0.2.99\\u{2028}\" tty=\"pts/1\\\" user=\\\"root\""
        );
        // Unescaped quotes only ever delimit the three values at the end.
        let bare_quotes = line
            .char_indices()
            .filter(|&(i, c)| c == '"' && !line[..i].ends_with('\\'))
            .count();
        assert_eq!(bare_quotes, 6, "{line}");
    }

    #[test]
    fn local_services_have_no_rhost() {
        let mut log = Logger::memory("sudo");
        log.set_user("alice");
        log.set_rhost("");
        log.info("accepted");
        assert_eq!(
            log.lines()[0].1,
            "pam_otp(sudo:auth): accepted; user=\"alice\""
        );
    }

    #[test]
    fn timestamps_pad_the_day_with_a_space() {
        assert_eq!(rfc3164_timestamp(11, 1, 9, 5, 7), "Dec  1 09:05:07");
        assert_eq!(rfc3164_timestamp(0, 31, 23, 59, 59), "Jan 31 23:59:59");
    }

    #[test]
    fn debug_lines_appear_with_debug() {
        let mut log = Logger::memory("sudo");
        log.set_debug(true);
        log.debug("detail");
        assert_eq!(log.lines().len(), 1);
    }
}
