//! Fleet mode's shared record: where one person's record lives in Redis, the
//! compare-and-set script that is the only way it changes (`fleet.lua`), and how the
//! host's own floor is laid under it; no I/O.
//!
//! The record is the file store's [`State`] in the same binary form, with a version. A
//! host reads it (with the server's clock), decides with [`crate::decision::decide`], the
//! same code as the file store, and writes it back only if the version is unchanged. No
//! rule is in the script, and no code or secret crosses the network: only the state.
//!
//! The floor is the host's own state file: the replay guards of what this host accepted.
//! They are laid under the shared record before each decision, so a Redis that lost a
//! write (a restart, a lossy failover) never makes this host accept a code twice.

use crate::state::{EnrollmentRecord, EnrollmentRef, State, StateParseError};

/// The script; Redis keeps it by its SHA-1 (`EVALSHA`, loaded again after `NOSCRIPT`).
pub const SCRIPT: &str = include_str!("fleet.lua");

/// How many times a host reads, decides and tries to write back before it gives up and
/// refuses the login. Each host's logins of one person pass its state-file lock one at a
/// time, so only another host's write can come between a read and the write.
pub const MAX_ATTEMPTS: u32 = 16;

/// The parts of the record format before this one (five hashes whose script held its own
/// copy of the rules), looked for only while the record is missing, to refuse them.
const OLD_PARTS: [&str; 5] = [
    "enrollments",
    "person",
    "sources",
    "protected-person",
    "protected-sources",
];

/// The keys of one person's record. They share a hash tag (the UID, as the host's file
/// state is keyed; digits cannot end the tag early), which keeps them in one slot of a
/// Redis Cluster. Every host of a fleet must agree on UIDs, as NFS homes need anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKeys {
    /// The record: a hash with the fields `version` and `state`.
    pub record: String,
    /// The keys the older format kept for this person.
    pub old: Vec<String>,
}

impl RecordKeys {
    /// The keys of the person with `uid` under `prefix` (which tells fleets sharing one
    /// Redis apart).
    pub fn new(prefix: &str, uid: u32) -> RecordKeys {
        let key = |part: &str| format!("{prefix}{{uid-{uid}}}:{part}");
        RecordKeys {
            record: key("record"),
            old: OLD_PARTS.iter().map(|part| key(part)).collect(),
        }
    }

    /// The keys in the order the script expects them: the record, then the old ones.
    pub fn all(&self) -> Vec<String> {
        std::iter::once(self.record.clone())
            .chain(self.old.iter().cloned())
            .collect()
    }
}

/// Whether `prefix` can start a key: printable, no braces (they would move the hash tag).
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
}

/// The record's state from its stored bytes: none yet if empty, else strictly the file
/// store's binary form (a record of another format is refused, never guessed at).
pub fn decode(bytes: &[u8]) -> Result<Option<State>, StateParseError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    State::from_bytes(bytes).map(Some)
}

/// The later of each guard of two records of one enrollment: the newer TOTP step and HOTP
/// counter, every spent recovery code of either.
fn raised(mut record: EnrollmentRecord, floor: &EnrollmentRecord) -> EnrollmentRecord {
    record.last_totp_step = record.last_totp_step.max(floor.last_totp_step);
    record.next_hotp_counter = match (record.next_hotp_counter, floor.next_hotp_counter) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    for &index in &floor.spent_recovery_codes {
        if !record.spent_recovery_codes.contains(&index) {
            record.spent_recovery_codes.push(index);
        }
    }
    record.last_used = record.last_used.max(floor.last_used);
    record
}

/// The shared state as this host must judge `enrolled` in it: its record raised to the
/// floor's (what this host accepted itself). `None` if the floor holds a record the
/// shared state has lost and no room can be made for it (as `State::accept` refuses a
/// ninth enrollment): the login is then refused.
pub fn with_floor(
    shared: &State,
    floor: &State,
    enrolled: &EnrollmentRef,
    now: u64,
) -> Option<State> {
    let Some(own) = floor.enrollments.get(&enrolled.fingerprint) else {
        return Some(shared.clone());
    };
    let mut view = shared.clone();
    let record = raised(shared.record(enrolled), own);
    view.keep(enrolled, record, now).then_some(view)
}

/// The floor after `decided` (the state written to the shared record) at `now`: this
/// enrollment's guards raised to the decided ones. `None` if the floor has no room for
/// the record (see `State::accept`): the code is then not accepted.
pub fn floor_after(
    floor: &State,
    enrolled: &EnrollmentRef,
    decided: &State,
    now: u64,
) -> Option<State> {
    let Some(decided) = decided.enrollments.get(&enrolled.fingerprint) else {
        return Some(floor.clone());
    };
    let current = floor.record(enrolled);
    let record = raised(current.clone(), decided);
    if record == current {
        return Some(floor.clone());
    }
    let mut next = floor.clone();
    next.accept(enrolled, record, now).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Enrollment;
    use crate::state::{Custody, MAX_ENROLLMENTS};

    fn totp_enrollment(secret: &str) -> Enrollment {
        Enrollment::parse(&format!("secret = \"{secret}\"")).unwrap()
    }

    #[test]
    fn keys_share_a_tag_and_prefixes_cannot_move_it() {
        let keys = RecordKeys::new("otp:", 1000);
        assert_eq!(keys.record, "otp:{uid-1000}:record");
        assert_eq!(keys.old[1], "otp:{uid-1000}:person");
        for key in keys.all() {
            assert!(key.starts_with("otp:{uid-1000}:"), "{key}");
        }
        assert!(is_valid_prefix("pam-otp:site-a:"));
        assert!(!is_valid_prefix("x{y}"));
        assert!(!is_valid_prefix("with space"));
    }

    #[test]
    fn the_record_is_the_state_files_binary_form() {
        assert_eq!(decode(b""), Ok(None));
        let mut state = State::default();
        state.all.user.failures = 3;
        assert_eq!(decode(&state.to_bytes().unwrap()), Ok(Some(state)));
        assert!(decode(b"enrollments").is_err());
    }

    #[test]
    fn the_floor_raises_the_shared_guards_and_only_moves_forward() {
        let e = totp_enrollment("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
        let enrolled = EnrollmentRef::new(&e, "/f", Custody::User);
        let mut floor = State::default();
        let floor_record = EnrollmentRecord {
            last_totp_step: Some(50),
            next_hotp_counter: Some(9),
            spent_recovery_codes: vec![1],
            ..enrolled.fresh_record()
        };
        assert!(floor.accept(&enrolled, floor_record, 1));
        // A shared record that lost this enrollment, or is behind on it.
        let lost = with_floor(&State::default(), &floor, &enrolled, 2).unwrap();
        assert_eq!(lost.record(&enrolled).last_totp_step, Some(50));
        let mut behind = State::default();
        let shared_record = EnrollmentRecord {
            last_totp_step: Some(40),
            next_hotp_counter: Some(12),
            spent_recovery_codes: vec![1, 2],
            ..enrolled.fresh_record()
        };
        assert!(behind.accept(&enrolled, shared_record, 1));
        let view = with_floor(&behind, &floor, &enrolled, 2)
            .unwrap()
            .record(&enrolled);
        assert_eq!(view.last_totp_step, Some(50));
        assert_eq!(view.next_hotp_counter, Some(12));
        assert_eq!(view.spent_recovery_codes, vec![1, 2]);
        // The floor after a decision takes the newer guards, never older ones.
        let after = floor_after(&floor, &enrolled, &behind, 3).unwrap();
        let after = after.record(&enrolled);
        assert_eq!(after.last_totp_step, Some(50));
        assert_eq!(after.next_hotp_counter, Some(12));
        assert_eq!(after.spent_recovery_codes, vec![1, 2]);
        assert_eq!(
            floor_after(&floor, &enrolled, &floor, 3),
            Some(floor.clone())
        );
    }

    #[test]
    fn a_floor_record_the_full_shared_state_has_no_room_for_is_refused() {
        let secrets = [
            "JBSWY3DPEHPK3PXA",
            "JBSWY3DPEHPK3PXB",
            "JBSWY3DPEHPK3PXC",
            "JBSWY3DPEHPK3PXD",
            "JBSWY3DPEHPK3PXE",
            "JBSWY3DPEHPK3PXF",
            "JBSWY3DPEHPK3PXG",
            "JBSWY3DPEHPK3PXH",
            "JBSWY3DPEHPK3PXI",
        ];
        let all: Vec<Enrollment> = secrets.iter().map(|s| totp_enrollment(s)).collect();
        let refs: Vec<EnrollmentRef> = all
            .iter()
            .enumerate()
            .map(|(i, e)| EnrollmentRef::new(e, &format!("/etc/otp/{i}"), Custody::User))
            .collect();
        let mut shared = State::default();
        for r in refs.iter().take(MAX_ENROLLMENTS) {
            assert!(shared.accept(r, r.fresh_record(), 100));
        }
        let mut floor = State::default();
        assert!(floor.accept(&refs[8], refs[8].fresh_record(), 100));
        assert_eq!(with_floor(&shared, &floor, &refs[8], 200), None);
    }
}
