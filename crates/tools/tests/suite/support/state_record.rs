//! The state record file as the tests see it, read by this code and not the module's:
//! a 4 KiB file header (`pam_otp\0`, format version, slot size), then two slots, each a
//! 32-byte header (`slot`, flags, sequence, length, CRC-64/XZ checksum in a 12-byte field) and a
//! payload: the state in postcard's binary form, decoded here into the tests' own copy of
//! its fields.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

const BLOCK: usize = 4096;
const SLOT_HEADER: usize = 32;

/// One slot as found on disk.
#[derive(Clone, Debug)]
pub struct Slot {
    pub offset: usize,
    pub sequence: u64,
    pub synced: bool,
    pub payload: Vec<u8>,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// A slot's checksum: CRC-64/XZ of its first 20 header bytes and its payload, little-endian,
/// then 4 zero bytes.
pub fn checksum(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let crc = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    let mut digest = crc.digest();
    digest.update(&header[..20]);
    digest.update(payload);
    let mut sum = digest.finalize().to_le_bytes().to_vec();
    sum.extend_from_slice(&[0; 4]);
    sum
}

/// The bytes of an intact slot holding `payload`.
pub fn encode_slot(sequence: u64, synced: bool, payload: &[u8]) -> Vec<u8> {
    let mut slot = b"slot".to_vec();
    slot.extend_from_slice(&u32::from(synced).to_le_bytes());
    slot.extend_from_slice(&sequence.to_le_bytes());
    slot.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let sum = checksum(&slot, payload);
    slot.extend_from_slice(&sum);
    slot.extend_from_slice(payload);
    slot
}

/// Both slots of a record file (`None` where a slot is not intact); panics on a file
/// that is not a record file.
pub fn slots(bytes: &[u8]) -> [Option<Slot>; 2] {
    assert!(bytes.starts_with(b"pam_otp\0"), "not a state record file");
    assert_eq!(u32_at(bytes, 8), 2, "record format version");
    let slot_size = u32_at(bytes, 12) as usize;
    assert_eq!(bytes.len(), BLOCK + 2 * slot_size, "record file length");
    [0, 1].map(|i| {
        let offset = BLOCK + i * slot_size;
        let slot = &bytes[offset..offset + slot_size];
        let length = u32_at(slot, 16) as usize;
        let payload = slot.get(SLOT_HEADER..SLOT_HEADER + length)?;
        (&slot[..4] == b"slot" && checksum(slot, payload) == slot[20..32]).then(|| Slot {
            offset,
            sequence: u64::from_le_bytes(slot[8..16].try_into().unwrap()),
            synced: u32_at(slot, 4) & 1 != 0,
            payload: payload.to_vec(),
        })
    })
}

/// The newest intact slot, if any.
pub fn newest(slots: &[Option<Slot>; 2]) -> Option<&Slot> {
    slots.iter().flatten().max_by_key(|s| s.sequence)
}

/// The state format of a record's payload.
pub const STATE_FORMAT: u32 = 4;

/// Failures and lockouts of one scope, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTally {
    pub failures: u32,
    pub lockouts: u32,
    pub locked_until: u64,
    pub last_failure: u64,
}

/// One enrollment's record, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnrollment {
    pub file: String,
    pub last_used: u64,
    pub last_totp_step: Option<u64>,
    pub next_hotp_counter: Option<u64>,
    pub spent_recovery_codes: Vec<u32>,
}

/// One set of failure tallies: user-wide, the overflow, per source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTallies {
    pub user: StoredTally,
    pub overflow: StoredTally,
    pub sources: BTreeMap<String, StoredTally>,
}

/// A person's state, as stored: postcard writes the fields in this order (varints for
/// integers, a length before strings, lists and maps, a 0/1 tag before an option).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub version: u32,
    pub last_success: u64,
    /// The failures with every enrollment.
    pub all: StoredTallies,
    /// The failures with the administrator's store's enrollments, which only a code from
    /// such an enrollment clears.
    pub protected: StoredTallies,
    /// Keyed by the enrollment's fingerprint, which the tests do not compute.
    pub enrollments: BTreeMap<String, StoredEnrollment>,
}

impl StoredState {
    /// The only enrollment record, if there is one; panics if there are more.
    pub fn enrollment(&self) -> Option<&StoredEnrollment> {
        assert!(
            self.enrollments.len() <= 1,
            "more than one enrollment record: {:?}",
            self.enrollments
        );
        self.enrollments.values().next()
    }

    /// The only enrollment record's mutable copy; panics unless there is exactly one.
    pub fn enrollment_mut(&mut self) -> &mut StoredEnrollment {
        assert_eq!(self.enrollments.len(), 1, "{:?}", self.enrollments);
        self.enrollments.values_mut().next().unwrap()
    }
}

/// Decodes a record's payload: exactly one state of the current format, nothing after it.
pub fn decode_state(payload: &[u8]) -> Result<StoredState, String> {
    let (state, rest) = postcard::take_from_bytes::<StoredState>(payload)
        .map_err(|e| format!("the payload does not decode: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the state", rest.len()));
    }
    if state.version != STATE_FORMAT {
        return Err(format!("state format {}", state.version));
    }
    Ok(state)
}

/// The payload of a record holding `state`.
pub fn encode_state(state: &StoredState) -> Vec<u8> {
    postcard::to_allocvec(state).expect("a state encodes")
}

/// The newest intact record's payload; `None` if there is no file. Panics on a file that
/// is not a record file, or one without an intact record.
pub fn stored_payload(path: &Path) -> Option<Vec<u8>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let slots = slots(&bytes);
    let newest = newest(&slots)
        .unwrap_or_else(|| panic!("{}: no intact record in either slot", path.display()));
    Some(newest.payload.clone())
}

/// The state in the newest intact record; `None` if there is no file. Panics on a file
/// that is not a record file or whose record does not decode.
pub fn stored_state(path: &Path) -> Option<StoredState> {
    let payload = stored_payload(path)?;
    Some(decode_state(&payload).unwrap_or_else(|e| panic!("state {}: {e}", path.display())))
}

/// Where the store writes its next record: the slot not holding the newest record that
/// was written to be synced.
pub fn next_write_offset(bytes: &[u8]) -> usize {
    let slots = slots(bytes);
    let keep = slots
        .iter()
        .flatten()
        .filter(|s| s.synced)
        .max_by_key(|s| s.sequence)
        .or(newest(&slots))
        .expect("an intact record");
    let slot_size = u32_at(bytes, 12) as usize;
    if keep.offset == BLOCK {
        BLOCK + slot_size
    } else {
        BLOCK
    }
}
