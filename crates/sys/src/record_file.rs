//! One small record in a file that is rewritten in place and never left torn: two
//! checksummed slots, the newest intact one wins. Knows nothing of what the record holds.
//!
//! Layout (integers little-endian):
//!
//! | offset | what |
//! |---|---|
//! | 0 | file header, written once when the file is made: `FILE_MAGIC`, format version (u32), slot size (u32); the rest of the 4 KiB block is zero |
//! | 4096 | slot 0 |
//! | 4096 + slot size | slot 1 |
//!
//! A slot: `SLOT_MAGIC` (4 bytes), flags (u32; bit 0: written to be synced), sequence
//! number (u64), payload length (u32), checksum (12 bytes), then the payload. The
//! checksum is CRC-64/XZ over the first 20 bytes and the payload, in the field's first 8
//! bytes (the last 4 are zero): it guards against a torn or stale slot (the magic, the
//! length and 64 check bits must all come out right by chance), not against an attacker,
//! since only root can write the file. The `crc` crate is table-driven and probes nothing:
//! a crate that checks the CPU's features (crc32fast) was tried and cost more, as the
//! probes are redone after every dlopen and `cpuid` traps to the hypervisor in a virtual
//! machine (~7 µs each here); SHA-256 in portable code (format 1) took ~6 k instructions
//! a slot, the CRC a few hundred.
//!
//! A write never touches the slot holding the newest record written to be synced, so a
//! torn write (power lost mid-write) leaves that record intact and it is read instead.
//! Slots sit in their own 4 KiB blocks, which the file owns from its creation on:
//! rewriting one changes no metadata, so a sync needs no journal commit.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crc::{Crc, CRC_64_XZ};

const FILE_MAGIC: &[u8; 8] = b"pam_otp\0";
/// 1 had SHA-256 slot checksums; 2 has CRC-64.
const FORMAT_VERSION: u32 = 2;
const SLOT_MAGIC: &[u8; 4] = b"slot";
const BLOCK: u64 = 4096;
const SLOT_HEADER: usize = 32;
const CHECKED_HEADER: usize = 20;
const FLAG_SYNCED: u32 = 1;
/// The largest payload a record may hold.
pub const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_SLOT: u64 = (MAX_PAYLOAD as u64 + SLOT_HEADER as u64).div_ceil(BLOCK) * BLOCK;
const MAX_FILE: u64 = BLOCK + 2 * MAX_SLOT;

/// How far a record must have gone before `write` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (write and sync in one system call, so a killed process cannot
    /// leave it written but unsynced).
    Synced,
    /// In the page cache, written back by the kernel within ~30 s (its dirty-page
    /// expiry): lost only if the machine itself stops before that; the older synced
    /// record is then read.
    Buffered,
}

/// What went wrong, with the file it happened to.
#[derive(Debug)]
pub enum RecordError {
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// A record file with no intact record: never silently read as empty.
    Corrupt { path: PathBuf, why: String },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Io {
                path,
                action,
                error,
            } => write!(f, "{}: cannot {action}: {error}", path.display()),
            RecordError::Corrupt { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Io { error, .. } => Some(error),
            RecordError::Corrupt { .. } => None,
        }
    }
}

impl RecordError {
    fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> RecordError + 'a {
        move |error| RecordError::Io {
            path: path.into(),
            action,
            error,
        }
    }
}

/// What a file holds.
pub enum Contents {
    /// A record file: the newest intact record, and the file ready for the next write.
    Record { payload: Vec<u8>, file: RecordFile },
    /// Not a record file (no file header: garbage, or a file something else wrote), for
    /// the caller to judge.
    Foreign,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    sequence: u64,
    synced: bool,
}

/// An open record file, with what its slots held when it was read.
pub struct RecordFile {
    file: File,
    path: PathBuf,
    slot_size: u64,
    slots: [Option<Slot>; 2],
}

/// Reads the file `file` (opened from `path`, `size` bytes long) whole, once: one
/// `pread` of the size `fstat` gave, since a file's size never changes once it is in
/// place (a record file is made whole under another name and renamed there). A file
/// past the largest record is read one byte past it, to be refused as overgrown.
pub fn read(file: File, path: &Path, size: u64) -> Result<Contents, RecordError> {
    let mut bytes = vec![0; size.min(MAX_FILE + 1) as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(RecordError::io(path, "read"))?;
    if !bytes.starts_with(FILE_MAGIC) {
        return Ok(Contents::Foreign);
    }
    let corrupt = |why: String| RecordError::Corrupt {
        path: path.into(),
        why,
    };
    let version = le_u32(&bytes, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "record format {version} is not supported (this module reads format \
             {FORMAT_VERSION}); `otp-admin reset USER` starts the state afresh"
        )));
    }
    let slot_size = u64::from(le_u32(&bytes, 12));
    if slot_size == 0 || slot_size % BLOCK != 0 || slot_size > MAX_SLOT {
        return Err(corrupt(format!("slot size {slot_size} is impossible")));
    }
    if bytes.len() as u64 != BLOCK + 2 * slot_size {
        return Err(corrupt(format!(
            "{} bytes long, not {} (truncated or overgrown)",
            bytes.len(),
            BLOCK + 2 * slot_size
        )));
    }
    let claims = [0, 1].map(|i| {
        let start = (BLOCK + i * slot_size) as usize;
        claimed_slot(&bytes[start..start + slot_size as usize])
    });
    // Checksums are computed only where needed: the slot claiming the highest sequence
    // number first; the other only if it may have to be kept.
    let mut slots: [Option<Slot>; 2] = [None, None];
    let by_sequence = match (&claims[0], &claims[1]) {
        (Some(a), Some(b)) if b.slot.sequence > a.slot.sequence => [1, 0],
        _ => [0, 1],
    };
    let mut newest_payload = None;
    for i in by_sequence {
        let Some(claim) = &claims[i] else { continue };
        match newest_payload {
            None if claim.is_intact() => {
                slots[i] = Some(claim.slot);
                newest_payload = Some(claim.payload);
            }
            // The newest is buffered: a synced record behind it must be known, and kept.
            Some(_) if !slots[1 - i].is_some_and(|s| s.synced) && claim.is_intact() => {
                slots[i] = Some(claim.slot);
            }
            _ => {}
        }
    }
    let payload = newest_payload
        .ok_or_else(|| corrupt("neither slot holds an intact record".into()))?
        .to_vec();
    Ok(Contents::Record {
        payload,
        file: RecordFile {
            file,
            path: path.into(),
            slot_size,
            slots,
        },
    })
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A static, not a const: its 2 KiB table is built at compile time and never copied.
static SLOT_CRC: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 12] {
    let mut digest = SLOT_CRC.digest();
    digest.update(&header[..CHECKED_HEADER]);
    digest.update(payload);
    let mut sum = [0u8; 12];
    sum[..8].copy_from_slice(&digest.finalize().to_le_bytes());
    sum
}

/// What a slot's header claims, before its checksum is checked.
struct Claim<'a> {
    slot: Slot,
    header: &'a [u8],
    payload: &'a [u8],
}

impl Claim<'_> {
    fn is_intact(&self) -> bool {
        checksum(self.header, self.payload) == self.header[CHECKED_HEADER..SLOT_HEADER]
    }
}

fn claimed_slot(slot: &[u8]) -> Option<Claim<'_>> {
    let header = slot.get(..SLOT_HEADER)?;
    if &header[..4] != SLOT_MAGIC {
        return None;
    }
    let length = le_u32(header, 16) as usize;
    let payload = slot.get(SLOT_HEADER..SLOT_HEADER + length)?;
    let sequence = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let synced = le_u32(header, 4) & FLAG_SYNCED != 0;
    Some(Claim {
        slot: Slot { sequence, synced },
        header,
        payload,
    })
}

/// The slot with the highest sequence number among those `wanted` accepts.
fn newest(slots: &[Option<Slot>; 2], wanted: impl Fn(&Slot) -> bool) -> Option<usize> {
    (0..2)
        .filter_map(|i| slots[i].filter(|s| wanted(s)).map(|s| (s.sequence, i)))
        .max()
        .map(|(_, i)| i)
}

fn encode_slot(sequence: u64, durability: Durability, payload: &[u8]) -> Vec<u8> {
    let mut slot = Vec::with_capacity(SLOT_HEADER + payload.len());
    slot.extend_from_slice(SLOT_MAGIC);
    let flags = match durability {
        Durability::Synced => FLAG_SYNCED,
        Durability::Buffered => 0,
    };
    slot.extend_from_slice(&flags.to_le_bytes());
    slot.extend_from_slice(&sequence.to_le_bytes());
    slot.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let sum = checksum(&slot, payload);
    slot.extend_from_slice(&sum);
    slot.extend_from_slice(payload);
    slot
}

fn slot_size_for(payload: &[u8]) -> u64 {
    ((SLOT_HEADER + payload.len()) as u64)
        .div_ceil(BLOCK)
        .max(1)
        * BLOCK
}

impl RecordFile {
    /// Whether `payload` fits this file's slots (else the file must be made anew).
    pub fn fits(&self, payload: &[u8]) -> bool {
        (SLOT_HEADER + payload.len()) as u64 <= self.slot_size
    }

    /// Writes `payload` as the newest record, into the slot not holding the newest
    /// synced one. On an error the record must be taken as not written.
    pub fn write(&mut self, payload: &[u8], durability: Durability) -> Result<(), RecordError> {
        assert!(self.fits(payload), "the caller checks fits() first");
        let keep = newest(&self.slots, |s| s.synced).or(newest(&self.slots, |_| true));
        let target = keep.map_or(0, |k| 1 - k);
        let sequence = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.sequence)
            .max()
            .unwrap_or(0)
            + 1;
        let slot = encode_slot(sequence, durability, payload);
        let offset = BLOCK + target as u64 * self.slot_size;
        let written = match durability {
            Durability::Synced => write_synced(&self.file, &slot, offset),
            Durability::Buffered => self.file.write_all_at(&slot, offset),
        };
        match written {
            Ok(()) => {
                self.slots[target] = Some(Slot {
                    sequence,
                    synced: durability == Durability::Synced,
                });
                Ok(())
            }
            Err(error) => {
                // The page cache may hold the record although the disk refused it: make
                // the slot unreadable so that no later login trusts it as synced.
                let _ = self.file.write_all_at(&[0u8; SLOT_HEADER], offset);
                self.slots[target] = None;
                Err(RecordError::io(&self.path, "write")(error))
            }
        }
    }
}

/// Writes and syncs in one system call (`pwritev2` with `RWF_DSYNC`): once the data is
/// in the page cache the kernel finishes the sync even if the process is killed, so no
/// record can be left written but unsynced. Kernels without it get pwrite + fdatasync.
fn write_synced(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    let iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `iov` points at `bytes`, which outlives the call and is only read; the
    // descriptor belongs to `file`, open for writing.
    let n = unsafe {
        libc::pwritev2(
            file.as_raw_fd(),
            &iov,
            1,
            offset as libc::off_t,
            libc::RWF_DSYNC,
        )
    };
    if n < 0 {
        let error = io::Error::last_os_error();
        if matches!(
            error.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
        ) {
            file.write_all_at(bytes, offset)?;
            return file.sync_data();
        }
        return Err(error);
    }
    if n as usize != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the record was written only in part",
        ));
    }
    Ok(())
}

/// Makes the record file at `path` holding `payload` (synced), replacing whatever is
/// there atomically: written whole as `temp`, synced, renamed, then the directory
/// synced. Done once per user (and when a record outgrows its slots).
pub fn create(path: &Path, temp: &Path, payload: &[u8]) -> Result<(), RecordError> {
    let slot_size = slot_size_for(payload);
    let mut image = vec![0u8; (BLOCK + 2 * slot_size) as usize];
    image[..8].copy_from_slice(FILE_MAGIC);
    image[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    image[12..16].copy_from_slice(&(slot_size as u32).to_le_bytes());
    let slot = encode_slot(1, Durability::Synced, payload);
    image[BLOCK as usize..][..slot.len()].copy_from_slice(&slot);

    let _ = fs::remove_file(temp);
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temp)
        .map_err(RecordError::io(temp, "create"))?;
    let written = file.write_all(&image).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(temp);
        return Err(RecordError::io(temp, "write")(e));
    }
    if let Err(e) = fs::rename(temp, path) {
        let _ = fs::remove_file(temp);
        return Err(RecordError::io(path, "replace")(e));
    }
    sync_directory(path)
}

/// Syncs the directory holding `path`, so that a new or removed name survives a crash.
pub fn sync_directory(path: &Path) -> Result<(), RecordError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RecordError::io(dir, "sync the directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pam-otp-record-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The length the store passes: the file's own, from its metadata.
    fn length(path: &Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    fn open(path: &Path) -> Contents {
        let file = File::options().read(true).write(true).open(path).unwrap();
        read(file, path, length(path)).unwrap()
    }

    fn record(path: &Path) -> (Vec<u8>, RecordFile) {
        match open(path) {
            Contents::Record { payload, file } => (payload, file),
            Contents::Foreign => panic!("not a record file"),
        }
    }

    fn made(name: &str, payload: &[u8]) -> (PathBuf, PathBuf) {
        let dir = scratch(name);
        let path = dir.join("r");
        create(&path, &dir.join("r.tmp"), payload).unwrap();
        assert!(!dir.join("r.tmp").exists());
        (dir, path)
    }

    #[test]
    fn the_newest_record_is_read_back() {
        let (dir, path) = made("newest", b"one");
        assert_eq!(record(&path).0, b"one");
        for (n, durability) in [Durability::Synced, Durability::Buffered, Durability::Synced]
            .into_iter()
            .enumerate()
        {
            let payload = format!("record {n}");
            record(&path)
                .1
                .write(payload.as_bytes(), durability)
                .unwrap();
            assert_eq!(record(&path).0, payload.as_bytes());
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), 3 * BLOCK);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Where the next write goes: the slot the store would write.
    fn next_target(file: &RecordFile) -> u64 {
        let keep = newest(&file.slots, |s| s.synced).or(newest(&file.slots, |_| true));
        BLOCK + keep.map_or(0, |k| 1 - k as u64) * file.slot_size
    }

    #[test]
    fn a_torn_write_leaves_the_previous_record() {
        let (dir, path) = made("torn", b"first");
        record(&path)
            .1
            .write(b"second", Durability::Synced)
            .unwrap();
        let (_, file) = record(&path);
        let at = next_target(&file);
        // Half of the next record, at the place the next write goes.
        let torn = encode_slot(3, Durability::Synced, b"third, never finished");
        file.file.write_all_at(&torn[..torn.len() / 2], at).unwrap();
        assert_eq!(record(&path).0, b"second");
        // A header whose payload never arrived: the checksum tells.
        file.file.write_all_at(&torn[..SLOT_HEADER], at).unwrap();
        assert_eq!(record(&path).0, b"second");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn buffered_records_never_overwrite_the_newest_synced_one() {
        let (dir, path) = made("buffered", b"synced 1");
        let (_, mut file) = record(&path);
        file.write(b"buffered 2", Durability::Buffered).unwrap();
        file.write(b"buffered 3", Durability::Buffered).unwrap();
        // Both buffered records went to the slot the synced one is not in.
        let (_, file) = record(&path);
        let synced_slot = newest(&file.slots, |s| s.synced).unwrap();
        assert_eq!(file.slots[synced_slot].unwrap().sequence, 1);
        // Losing the buffered slot (a crash before write-back) leaves the synced record.
        let lost = BLOCK + (1 - synced_slot as u64) * file.slot_size;
        file.file.write_all_at(&[0u8; 8], lost).unwrap();
        assert_eq!(record(&path).0, b"synced 1");
        // The next synced write goes over the buffered slot, keeping the synced one.
        let (_, mut file) = record(&path);
        file.write(b"synced 4", Durability::Synced).unwrap();
        assert_eq!(file.slots[synced_slot].unwrap().sequence, 1);
        assert_eq!(record(&path).0, b"synced 4");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn damage_in_both_slots_is_an_error_not_an_empty_record() {
        let (dir, path) = made("both", b"x");
        let (_, file) = record(&path);
        file.file.write_all_at(b"junk", BLOCK).unwrap();
        let file = File::open(&path).unwrap();
        assert!(matches!(
            read(file, &path, length(&path)),
            Err(RecordError::Corrupt { .. })
        ));
        fs::write(&path, b"not a record\n").unwrap();
        assert!(matches!(open(&path), Contents::Foreign));
        let mut short = fs::read(dir.join("r")).unwrap();
        short.truncate(16);
        short[..8].copy_from_slice(FILE_MAGIC);
        fs::write(&path, &short).unwrap();
        assert!(read(File::open(&path).unwrap(), &path, length(&path)).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_single_flipped_bit_anywhere_in_a_slot_is_caught() {
        let (dir, path) = made("bits", b"a payload of some length");
        let intact = fs::read(&path).unwrap();
        let slot_end = BLOCK as usize + SLOT_HEADER + b"a payload of some length".len();
        for byte in BLOCK as usize..slot_end {
            for bit in 0..8 {
                let mut damaged = intact.clone();
                damaged[byte] ^= 1 << bit;
                fs::write(&path, &damaged).unwrap();
                assert!(
                    read(File::open(&path).unwrap(), &path, length(&path)).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_of_another_record_format_is_refused_with_the_way_out() {
        let (dir, path) = made("format", b"x");
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        match read(File::open(&path).unwrap(), &path, length(&path)) {
            Err(RecordError::Corrupt { why, .. }) => {
                assert!(
                    why.contains("record format 1") && why.contains("otp-admin reset"),
                    "{why}"
                )
            }
            _ => panic!("a record of format 1 was read"),
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_larger_record_needs_a_new_file() {
        let (dir, path) = made("large", b"small");
        let big = vec![b'x'; 5000];
        let (_, file) = record(&path);
        assert!(!file.fits(&big));
        create(&path, &dir.join("r.tmp"), &big).unwrap();
        assert_eq!(record(&path).0, big);
        assert_eq!(fs::metadata(&path).unwrap().len(), 5 * BLOCK);
        fs::remove_dir_all(dir).unwrap();
    }
}
