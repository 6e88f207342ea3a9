//! The per-user login state (replay guard, HOTP counter, lockout) and its text form; no I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::enrollment::{Enrollment, Kind};

/// What the module remembers between logins for one user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// Which enrollment this state belongs to (`Enrollment::fingerprint`).
    pub fingerprint: String,
    /// TOTP: the newest time step accepted; no step at or before it is accepted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_totp_step: Option<u64>,
    /// HOTP: the smallest counter value still acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hotp_counter: Option<u64>,
    /// Consecutive failed attempts since the last success or lockout.
    #[serde(default)]
    pub failures: u32,
    /// Lockouts since the last success; each doubles the next lockout's length.
    #[serde(default)]
    pub lockouts: u32,
    /// Unix time until which no code is checked (0: not locked).
    #[serde(default)]
    pub locked_until: u64,
    /// Indexes into the enrollment's `recovery_codes` that have been used.
    #[serde(default)]
    pub spent_recovery_codes: Vec<u32>,
    /// Unix time of the last accepted code (0: never).
    #[serde(default)]
    pub last_success: u64,
}

pub const STATE_VERSION: u32 = 1;

/// Why a state file could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct StateParseError(pub String);

impl fmt::Display for StateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt state: {}", self.0)
    }
}

impl State {
    /// The state of an enrollment never used to log in.
    pub fn fresh(enrollment: &Enrollment) -> State {
        State {
            version: STATE_VERSION,
            fingerprint: enrollment.fingerprint(),
            next_hotp_counter: match enrollment.kind {
                Kind::Hotp { counter } => Some(counter),
                Kind::Totp { .. } => None,
            },
            ..State::default()
        }
    }

    /// The stored state if it belongs to this enrollment, else a fresh one
    /// (re-enrolling starts over).
    pub fn for_enrollment(stored: Option<State>, enrollment: &Enrollment) -> State {
        match stored {
            Some(state) if state.fingerprint == enrollment.fingerprint() => state,
            _ => State::fresh(enrollment),
        }
    }

    pub fn is_locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    pub fn parse(text: &str) -> Result<State, StateParseError> {
        let state: State = toml::from_str(text).map_err(|e| StateParseError(e.message().into()))?;
        if state.version != STATE_VERSION {
            return Err(StateParseError(format!(
                "version {} is not supported",
                state.version
            )));
        }
        Ok(state)
    }

    /// The text form. Fails only for a value TOML cannot hold (an integer above
    /// `i64::MAX`), which must never be written as an empty or partial file.
    pub fn to_toml(&self) -> Result<String, StateParseError> {
        toml::to_string(self).map_err(|e| StateParseError(format!("cannot be written: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(kind: &str) -> Enrollment {
        Enrollment::parse(&format!(
            "type = \"{kind}\"\ncounter = 5\nsecret = \"JBSWY3DPEHPK3PXP\""
        ))
        .unwrap()
    }

    #[test]
    fn text_form_round_trips() {
        let state = State {
            last_totp_step: Some(123),
            failures: 2,
            lockouts: 1,
            locked_until: 99,
            spent_recovery_codes: vec![0, 3],
            last_success: 7,
            ..State::fresh(&enrollment("totp"))
        };
        assert_eq!(State::parse(&state.to_toml().unwrap()).unwrap(), state);
    }

    #[test]
    fn values_toml_cannot_hold_are_an_error_not_an_empty_file() {
        let state = State {
            locked_until: u64::MAX,
            ..State::fresh(&enrollment("totp"))
        };
        assert!(state.to_toml().is_err());
    }

    #[test]
    fn fresh_hotp_state_starts_at_the_enrolled_counter() {
        assert_eq!(State::fresh(&enrollment("hotp")).next_hotp_counter, Some(5));
        assert_eq!(State::fresh(&enrollment("totp")).next_hotp_counter, None);
    }

    #[test]
    fn another_enrollment_starts_fresh() {
        let hotp = enrollment("hotp");
        let mut used = State::fresh(&hotp);
        used.next_hotp_counter = Some(50);
        assert_eq!(State::for_enrollment(Some(used.clone()), &hotp), used);
        let totp = enrollment("totp");
        assert_eq!(
            State::for_enrollment(Some(used), &totp),
            State::fresh(&totp)
        );
    }

    #[test]
    fn corrupt_text_is_an_error() {
        for bad in [
            "",
            "garbage",
            "version = 2\nfingerprint = \"x\"",
            "version = 1\nfingerprint = \"x\"\nextra = 1",
            "version = 1\nfingerprint = \"x\"\nfailures = -1",
        ] {
            assert!(State::parse(bad).is_err(), "{bad:?}");
        }
    }
}
