//! The state store: one root-owned record file per user under `state_dir`, changed only
//! under the user's exclusive lock, rewritten in place (see `sys::record_file`).

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::core::state::State;
use crate::sys::policy::is_safe_user_name;
use crate::sys::record_file::{self, Contents, RecordError, RecordFile};

pub use crate::sys::record_file::Durability;

/// Why the state could not be used; every one fails the login closed.
#[derive(Debug)]
pub enum StoreError {
    /// The directory or a file in it is not safe to trust.
    Insecure {
        path: PathBuf,
        why: String,
    },
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// The file exists but does not parse: never silently reset.
    Corrupt {
        path: PathBuf,
        why: String,
    },
    BadUserName(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Insecure { path, why } => {
                write!(f, "state {}: refused: {why}", path.display())
            }
            StoreError::Io {
                path,
                action,
                error,
            } => {
                write!(f, "state {}: cannot {action}: {error}", path.display())
            }
            StoreError::Corrupt { path, why } => write!(
                f,
                "state {}: {why}; fix or remove it with otp-admin reset",
                path.display()
            ),
            StoreError::BadUserName(name) => {
                write!(f, "user name {name:?} cannot name a state file")
            }
        }
    }
}

impl From<RecordError> for StoreError {
    fn from(error: RecordError) -> StoreError {
        match error {
            RecordError::Io {
                path,
                action,
                error,
            } => StoreError::Io {
                path,
                action,
                error,
            },
            RecordError::Corrupt { path, why } => StoreError::Corrupt { path, why },
        }
    }
}

/// The state directory, checked once per use.
pub struct StateStore {
    dir: PathBuf,
}

/// The user's state, locked until this is dropped.
pub struct LockedState {
    state_path: PathBuf,
    temp_path: PathBuf,
    /// The record file as last read, ready to be rewritten in place.
    record: RefCell<Option<RecordFile>>,
    // Holds the flock; released when the file is closed.
    _lock: File,
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |error| StoreError::Io {
        path: path.into(),
        action,
        error,
    }
}
impl StateStore {
    /// Opens `dir`, creating it (0700) if it is missing; refuses a symlink, a
    /// non-directory, one not owned by root, or one group or others can write to.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(dir, "create the directory")(e)),
        }
        let meta = fs::symlink_metadata(dir).map_err(io_error(dir, "inspect the directory"))?;
        let insecure = |why: String| StoreError::Insecure {
            path: dir.into(),
            why,
        };
        if meta.file_type().is_symlink() {
            return Err(insecure("is a symbolic link".into()));
        }
        if !meta.is_dir() {
            return Err(insecure("not a directory".into()));
        }
        if meta.uid() != 0 {
            return Err(insecure(format!("owned by uid {}, not root", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(insecure(format!(
                "writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            )));
        }
        Ok(StateStore { dir: dir.into() })
    }

    /// Where the user's state lives, whether or not it exists yet.
    pub fn state_path(&self, user: &str) -> Result<PathBuf, StoreError> {
        if !is_safe_user_name(user) {
            return Err(StoreError::BadUserName(user.into()));
        }
        Ok(self.dir.join(format!("{user}.state")))
    }

    /// Fails if the directory cannot be written (a read-only mount): such a store cannot
    /// retire a code, so a login is refused before the user is asked for one.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        // The mount's flags, not access(2): that checks the real uid, which under sudo is
        // the invoking user's.
        use nix::sys::statvfs::{statvfs, FsFlags};
        let stat = statvfs(&self.dir)
            .map_err(|e| io_error(&self.dir, "inspect the file system")(e.into()))?;
        if stat.flags().contains(FsFlags::ST_RDONLY) {
            return Err(io_error(&self.dir, "write to the directory")(
                io::Error::from_raw_os_error(libc::EROFS),
            ));
        }
        Ok(())
    }

    /// Reads the user's state without taking the lock. Safe because a record is never
    /// rewritten in the slot a reader would choose (a half-written slot fails its
    /// checksum and the other is read). For the lockout check before prompting; every
    /// decision re-reads under the lock.
    pub fn peek(&self, user: &str) -> Result<Option<Snapshot>, StoreError> {
        let path = self.state_path(user)?;
        Ok(read_state(&path, false, None)?.map(|(snapshot, _)| snapshot))
    }

    /// Takes the user's exclusive lock, waiting for any other login of the same user.
    pub fn lock(&self, user: &str) -> Result<LockedState, StoreError> {
        let state_path = self.state_path(user)?;
        let lock_path = self.dir.join(format!("{user}.lock"));
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&lock_path)
            .map_err(io_error(&lock_path, "open the lock file"))?;
        lock.lock().map_err(io_error(&lock_path, "lock"))?;
        Ok(LockedState {
            state_path,
            temp_path: self.dir.join(format!(".{user}.state.tmp")),
            record: RefCell::new(None),
            _lock: lock,
        })
    }
}

impl LockedState {
    /// The stored state, `None` if there is none yet.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        self.load_after(None)
    }

    /// The stored state, reusing `seen` if the bytes have not changed since.
    pub fn load_after(&self, seen: Option<&Snapshot>) -> Result<Option<State>, StoreError> {
        let (state, record) = match read_state(&self.state_path, true, seen)? {
            Some((snapshot, record)) => (Some(snapshot.state), record),
            None => (None, None),
        };
        *self.record.borrow_mut() = record;
        Ok(state)
    }

    /// Saves `state` as the newest record. `Synced`: on stable storage before this
    /// returns. A state file of the earlier (TOML) format, a missing one, or a record
    /// grown past its slots is replaced by a new record file, atomically.
    pub fn save(&self, state: &State, durability: Durability) -> Result<(), StoreError> {
        let text = state.to_toml().map_err(|e| StoreError::Corrupt {
            path: self.state_path.clone(),
            why: e.to_string(),
        })?;
        let payload = text.as_bytes();
        if payload.len() > record_file::MAX_PAYLOAD {
            return Err(StoreError::Corrupt {
                path: self.state_path.clone(),
                why: "would be larger than 64 KiB".into(),
            });
        }
        if self.record.borrow().is_none() {
            // Saved without a load first (otp-admin): learn where the slots stand.
            self.load()?;
        }
        let mut record = self.record.borrow_mut();
        match record.as_mut() {
            Some(file) if file.fits(payload) => Ok(file.write(payload, durability)?),
            _ => {
                *record = None;
                Ok(record_file::create(
                    &self.state_path,
                    &self.temp_path,
                    payload,
                )?)
            }
        }
    }

    /// Drops the state (otp-admin reset): the next login starts fresh.
    pub fn remove(&self) -> Result<bool, StoreError> {
        *self.record.borrow_mut() = None;
        match fs::remove_file(&self.state_path) {
            Ok(()) => {
                record_file::sync_directory(&self.state_path)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&self.state_path, "remove")(e)),
        }
    }
}

/// A state as read, with the bytes it was parsed from: a later read of the same bytes
/// (the decision under the lock, after the check before the prompt) skips the parse.
pub struct Snapshot {
    payload: Vec<u8>,
    pub state: State,
}

/// Reads a state file; `None` if there is none yet. Only root may have written it. With
/// `for_writing`, also the record file open for rewriting (`None` for a file of the
/// earlier format, which the next save replaces). `seen`: an earlier read to reuse.
fn read_state(
    path: &Path,
    for_writing: bool,
    seen: Option<&Snapshot>,
) -> Result<Option<(Snapshot, Option<RecordFile>)>, StoreError> {
    let file = File::options()
        .read(true)
        .write(for_writing)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "open")(e)),
    };
    let meta = file.metadata().map_err(io_error(path, "inspect"))?;
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(StoreError::Insecure {
            path: path.into(),
            why: "not a regular root-owned file writable only by root".into(),
        });
    }
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.into(),
        why,
    };
    let (bytes, record) = match record_file::read(file, path, meta.len())? {
        Contents::Record { payload, file } => (payload, Some(file)),
        // A state file from before record files: plain TOML, read once and replaced by
        // the next save.
        Contents::Foreign(bytes) => (bytes, None),
    };
    if bytes.len() > record_file::MAX_PAYLOAD {
        return Err(corrupt("larger than 64 KiB".into()));
    }
    let state = match seen {
        Some(seen) if seen.payload == bytes => seen.state.clone(),
        _ => {
            let text =
                std::str::from_utf8(&bytes).map_err(|e| corrupt(format!("unreadable: {e}")))?;
            State::parse(text).map_err(|e| corrupt(e.to_string()))?
        }
    };
    Ok(Some((
        Snapshot {
            payload: bytes,
            state,
        },
        record,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pam-otp-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// The store trusts only root-owned files, so these tests need root (as the whole suite does).
    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run the test suite as root"
        );
    }

    #[test]
    fn saved_state_loads_back_and_no_temp_file_remains() {
        require_root();
        let dir = scratch("roundtrip");
        let store = StateStore::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let locked = store.lock("alice").unwrap();
        assert_eq!(locked.load().unwrap(), None);
        let state = State {
            version: 1,
            fingerprint: "f".into(),
            failures: 3,
            ..State::default()
        };
        locked.save(&state, Durability::Synced).unwrap();
        assert_eq!(locked.load().unwrap(), Some(state));
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
        assert!(locked.remove().unwrap());
        assert_eq!(locked.load().unwrap(), None);
    }

    #[test]
    fn unsafe_user_names_are_refused_and_make_no_file() {
        require_root();
        let dir = scratch("names");
        let store = StateStore::open(&dir).unwrap();
        for name in ["a\0b", "../x", "a/b", "..", ".lock", ""] {
            assert!(
                matches!(store.lock(name), Err(StoreError::BadUserName(_))),
                "{name:?}"
            );
        }
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "files made for unsafe names"
        );
        assert!(store.lock("alice").is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_reset() {
        require_root();
        let dir = scratch("corrupt");
        let store = StateStore::open(&dir).unwrap();
        fs::write(dir.join("bob.state"), "garbage").unwrap();
        let locked = store.lock("bob").unwrap();
        assert!(matches!(locked.load(), Err(StoreError::Corrupt { .. })));
        assert_eq!(
            fs::read_to_string(dir.join("bob.state")).unwrap(),
            "garbage"
        );
    }

    #[test]
    fn unsafe_directories_are_refused() {
        require_root();
        let dir = scratch("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            StateStore::open(&dir),
            Err(StoreError::Insecure { .. })
        ));
        let link = scratch("link");
        let real = scratch("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            StateStore::open(&link),
            Err(StoreError::Insecure { .. })
        ));
    }

    #[test]
    fn bad_user_names_are_refused() {
        let store = StateStore {
            dir: std::env::temp_dir(),
        };
        for name in ["../etc/passwd", "a/b", ".hidden", ""] {
            assert!(
                matches!(store.lock(name), Err(StoreError::BadUserName(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn the_lock_serialises_read_modify_write() {
        require_root();
        let dir = scratch("race");
        let store = Arc::new(StateStore::open(&dir).unwrap());
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..25 {
                        let locked = store.lock("carol").unwrap();
                        let mut state = locked.load().unwrap().unwrap_or(State {
                            version: 1,
                            ..State::default()
                        });
                        state.failures += 1;
                        locked.save(&state, Durability::Synced).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total = store
            .lock("carol")
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
            .failures;
        assert_eq!(total, 200, "lost updates");
    }
}
