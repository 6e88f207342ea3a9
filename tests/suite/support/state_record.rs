//! The state record file as the tests see it, read by this code and not the module's:
//! a 4 KiB file header (`pam_otp\0`, format version, slot size), then two slots, each a
//! 32-byte header (`slot`, flags, sequence, length, 96-bit SHA-256 checksum) and a TOML
//! payload. A state file of the earlier format is plain TOML.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

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

/// A slot's checksum: SHA-256 of its first 20 header bytes and its payload, first 12 bytes.
pub fn checksum(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let digest = Sha256::new()
        .chain_update(&header[..20])
        .chain_update(payload)
        .finalize();
    digest[..12].to_vec()
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
    assert_eq!(u32_at(bytes, 8), 1, "record format version");
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

/// The state's TOML text: the newest intact record, or a file of the earlier format
/// whole; `None` if there is no file. Panics on a record file without an intact record.
pub fn state_text(path: &Path) -> Option<String> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    if !bytes.starts_with(b"pam_otp\0") {
        return Some(String::from_utf8(bytes).expect("a TOML state file"));
    }
    let slots = slots(&bytes);
    let newest = newest(&slots)
        .unwrap_or_else(|| panic!("{}: no intact record in either slot", path.display()));
    Some(String::from_utf8(newest.payload.clone()).expect("a TOML payload"))
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
