//! Reading a `~/.google_authenticator` file (libpam-google-authenticator) for
//! `otp-setup --import-google-authenticator`.
//!
//! The format: the base32 secret on the first line; option lines starting with `" `
//! (`TOTP_AUTH`, `HOTP_COUNTER n`, `STEP_SIZE n`, `WINDOW_SIZE n`, `RATE_LIMIT n m …`,
//! `DISALLOW_REUSE …`, `TIME_SKEW n`, …); then one 8-digit scratch code per line.
//! A `HOTP_COUNTER` line makes it HOTP (its value is the next counter the module
//! accepts), otherwise it is TOTP. Window, rate limit and reuse settings are policy,
//! which in pam-otp belongs to the administrator: they are reported and dropped.

use std::fmt;

use zeroize::Zeroizing;

use pam_otp_core::enrollment::{
    Kind, Secret, MAX_COUNTER, MAX_PERIOD, MAX_RECOVERY_CODES, MIN_PERIOD,
};

/// libpam-google-authenticator's default TOTP step.
const DEFAULT_STEP_SIZE: u64 = 30;
/// Its scratch codes are always eight digits.
const SCRATCH_CODE_DIGITS: usize = 8;

/// What an imported file holds that pam-otp uses.
pub struct GoogleAuthenticatorFile {
    pub secret: Secret,
    pub kind: Kind,
    /// Unused scratch codes, which become recovery codes.
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Option names that were dropped because they are policy (for a note to the user).
    pub dropped_options: Vec<String>,
}

/// Why a file is not a usable google-authenticator file; never quotes the secret.
#[derive(Debug, PartialEq, Eq)]
pub enum ImportError {
    Empty,
    Secret(String),
    Option { line: usize, why: String },
    NotAScratchCode { line: usize },
    BothTotpAndHotp,
    TooManyScratchCodes(usize),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Empty => write!(f, "the file is empty (no secret on its first line)"),
            ImportError::Secret(why) => write!(f, "line 1: {why}"),
            ImportError::Option { line, why } => write!(f, "line {line}: {why}"),
            ImportError::NotAScratchCode { line } => write!(
                f,
                "line {line}: neither an option line (\" NAME …) nor an 8-digit scratch code"
            ),
            ImportError::BothTotpAndHotp => {
                write!(f, "the file has both TOTP_AUTH and HOTP_COUNTER")
            }
            ImportError::TooManyScratchCodes(n) => write!(
                f,
                "{n} scratch codes (at most {MAX_RECOVERY_CODES} can become recovery codes)"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

fn number(
    line: usize,
    name: &str,
    value: Option<&str>,
    range: (u64, u64),
) -> Result<u64, ImportError> {
    let bad = || ImportError::Option {
        line,
        why: format!("{name} needs a number from {} to {}", range.0, range.1),
    };
    let n: u64 = value.ok_or_else(bad)?.parse().map_err(|_| bad())?;
    if (range.0..=range.1).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

/// Parses the text of a google-authenticator file.
pub fn parse(text: &str) -> Result<GoogleAuthenticatorFile, ImportError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let (_, first) = lines.next().ok_or(ImportError::Empty)?;
    if first.trim().is_empty() {
        return Err(ImportError::Empty);
    }
    let secret = Secret::from_base32(first).map_err(|e| ImportError::Secret(e.to_string()))?;

    let mut totp_auth = false;
    let mut hotp_counter = None;
    let mut step_size = None;
    let mut scratch_codes = Vec::new();
    let mut dropped_options = Vec::new();
    for (number_of_line, line) in lines {
        if let Some(option) = line.strip_prefix("\" ") {
            let mut words = option.split_whitespace();
            let name = words.next().unwrap_or_default();
            match name {
                "TOTP_AUTH" => totp_auth = true,
                "HOTP_COUNTER" => {
                    hotp_counter = Some(number(
                        number_of_line,
                        name,
                        words.next(),
                        (0, MAX_COUNTER),
                    )?)
                }
                "STEP_SIZE" => {
                    step_size = Some(number(
                        number_of_line,
                        name,
                        words.next(),
                        (MIN_PERIOD, MAX_PERIOD),
                    )?)
                }
                "" => {
                    return Err(ImportError::Option {
                        line: number_of_line,
                        why: "an option line without an option".into(),
                    })
                }
                other => dropped_options.push(other.to_string()),
            }
        } else if line.trim().is_empty() {
            continue;
        } else {
            let code = line.trim();
            if code.len() != SCRATCH_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ImportError::NotAScratchCode {
                    line: number_of_line,
                });
            }
            scratch_codes.push(Zeroizing::new(code.to_string()));
        }
    }
    if scratch_codes.len() > MAX_RECOVERY_CODES {
        return Err(ImportError::TooManyScratchCodes(scratch_codes.len()));
    }
    let kind = match hotp_counter {
        Some(_) if totp_auth => return Err(ImportError::BothTotpAndHotp),
        Some(counter) => Kind::Hotp { counter },
        None => Kind::Totp {
            period: step_size.unwrap_or(DEFAULT_STEP_SIZE),
        },
    };
    Ok(GoogleAuthenticatorFile {
        secret,
        kind,
        scratch_codes,
        dropped_options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOTP_FILE: &str = "FEZTIEUO3KVUMTAGT2HIRCMZNU\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\
        \" DISALLOW_REUSE\n\" TOTP_AUTH\n40795193\n61221867\n";

    #[test]
    fn totp_file_with_scratch_codes() {
        let file = parse(TOTP_FILE).unwrap();
        assert_eq!(file.kind, Kind::Totp { period: 30 });
        assert_eq!(
            file.secret,
            Secret::from_base32("FEZTIEUO3KVUMTAGT2HIRCMZNU").unwrap()
        );
        let codes: Vec<&str> = file.scratch_codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["40795193", "61221867"]);
        assert_eq!(
            file.dropped_options,
            ["RATE_LIMIT", "WINDOW_SIZE", "DISALLOW_REUSE"]
        );
    }

    #[test]
    fn step_size_and_hotp_counter_are_kept() {
        let file = parse("A36S6RLBLQSQ4MOUCH6KIKIHLI\n\" STEP_SIZE 60\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(file.kind, Kind::Totp { period: 60 });
        let file =
            parse("5WWPCH7IEO5JDFVOUJLS3WLH74\n\" WINDOW_SIZE 3\n\" HOTP_COUNTER 1\n12874328\n")
                .unwrap();
        assert_eq!(file.kind, Kind::Hotp { counter: 1 });
        assert_eq!(file.scratch_codes.len(), 1);
    }

    #[test]
    fn malformed_files_are_refused_without_quoting_the_secret() {
        let secret = "FEZTIEUO3KVUMTAGT2HIRCMZNU";
        let cases: [(&str, ImportError); 7] = [
            ("", ImportError::Empty),
            ("\n", ImportError::Empty),
            (
                "\" TOTP_AUTH\n",
                ImportError::Secret("secret is not valid base32".into()),
            ),
            (
                &format!("{secret}\nhello\n"),
                ImportError::NotAScratchCode { line: 2 },
            ),
            (
                &format!("{secret}\n1234567\n"),
                ImportError::NotAScratchCode { line: 2 },
            ),
            (
                &format!("{secret}\n\" TOTP_AUTH\n\" HOTP_COUNTER 1\n"),
                ImportError::BothTotpAndHotp,
            ),
            (
                &format!("{secret}\n\" STEP_SIZE 0\n"),
                ImportError::Option {
                    line: 2,
                    why: "STEP_SIZE needs a number from 5 to 3600".into(),
                },
            ),
        ];
        for (text, want) in cases {
            let got = parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert_eq!(got, want, "{text:?}");
            assert!(!got.to_string().contains(secret));
        }
        assert!(
            matches!(parse("JBSWY3DP\n"), Err(ImportError::Secret(m)) if m.contains("too short"))
        );
        assert!(matches!(
            parse(&format!("{secret}\n\" HOTP_COUNTER x\n")),
            Err(ImportError::Option { line: 2, .. })
        ));
    }
}
