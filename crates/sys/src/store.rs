//! The state store: one root-owned record file per person (UID) under `state_dir`,
//! changed only under that person's exclusive lock and rewritten in place (see
//! `sys::record_file`); the record holds the state's binary form (`core::state`).

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::record_file::{self, Contents, RecordError, RecordFile};
use crate::safe_path::{
    check_root_owned_dir, check_root_owned_file_metadata, check_root_owned_parents, UnsafePath,
};
use pam_otp_core::state::{State, MAX_STATE_BYTES, STATE_VERSION};

pub use crate::record_file::Durability;

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

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Insecure { .. }
            | StoreError::Corrupt { .. }
            | StoreError::BadUserName(_) => None,
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

/// One person's state, locked until this is dropped.
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
    /// Opens `dir`, creating it (0700) if it is missing. Refuses it unless it and every
    /// directory above it is root-owned, writable by no one else and not a symbolic link:
    /// whoever could rename the state away could reset a lockout or replay a code.
    pub fn open(dir: &Path) -> Result<StateStore, StoreError> {
        let insecure = |e: UnsafePath| StoreError::Insecure {
            path: dir.into(),
            why: e.to_string(),
        };
        match check_root_owned_dir(dir) {
            Ok(()) => return Ok(StateStore { dir: dir.into() }),
            Err(e) if !e.is_not_found() => return Err(insecure(e)),
            Err(_) => {}
        }
        // Missing: the directories above first, so nothing is created in a place that is
        // not safe; then the new directory itself (another login may have made it).
        check_root_owned_parents(dir).map_err(insecure)?;
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(dir, "create the directory")(e)),
        }
        check_root_owned_dir(dir).map_err(insecure)?;
        Ok(StateStore { dir: dir.into() })
    }

    /// Where the state of the person with this UID lives, whether or not it exists yet.
    /// Keyed by UID, not name: accounts that share a UID are one person to the kernel
    /// (same files, same processes), so they share one replay guard and one lockout; and
    /// a name never becomes part of a path.
    pub fn state_path(&self, uid: u32) -> PathBuf {
        self.dir.join(state_file_name(uid))
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

    /// Reads the person's state without taking the lock. Safe because a record is never
    /// rewritten in the slot a reader would choose (a half-written slot fails its
    /// checksum and the other is read). For the lockout check before prompting; every
    /// decision re-reads under the lock.
    pub fn peek(&self, uid: u32) -> Result<Option<Snapshot>, StoreError> {
        Ok(read_state(&self.state_path(uid), false, None)?.map(|(snapshot, _)| snapshot))
    }

    /// Takes the person's exclusive lock, waiting for any other login of the same UID.
    pub fn lock(&self, uid: u32) -> Result<LockedState, StoreError> {
        let state_path = self.state_path(uid);
        let lock_path = self.dir.join(format!("uid-{uid}.lock"));
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
            temp_path: self.dir.join(format!(".uid-{uid}.state.tmp")),
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
            Some((snapshot, record)) => (Some(snapshot.state), Some(record)),
            None => (None, None),
        };
        *self.record.borrow_mut() = record;
        Ok(state)
    }

    /// Saves `state` as the newest record. `Synced`: on stable storage before this
    /// returns. A missing state file, or a record grown past its slots, is replaced by a
    /// new record file, atomically.
    pub fn save(&self, state: &State, durability: Durability) -> Result<(), StoreError> {
        let bytes = state.to_bytes().map_err(|e| StoreError::Corrupt {
            path: self.state_path.clone(),
            why: e.to_string(),
        })?;
        let payload = bytes.as_slice();
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

/// `uid-UID.state`: a number, so no account name reaches a path or another's state.
pub fn state_file_name(uid: u32) -> String {
    format!("uid-{uid}.state")
}

/// A state as read, with the bytes it was parsed from: a later read of the same bytes
/// (the decision under the lock, after the check before the prompt) skips the parse.
pub struct Snapshot {
    payload: Vec<u8>,
    pub state: State,
}

/// A state file open for reading (and for rewriting with `for_writing`), with its length;
/// `None` if there is none yet. Only root may have written it.
fn open_state_file(path: &Path, for_writing: bool) -> Result<Option<(File, u64)>, StoreError> {
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
    check_root_owned_file_metadata(path, &meta).map_err(|e| StoreError::Insecure {
        path: path.into(),
        why: e.to_string(),
    })?;
    Ok(Some((file, meta.len())))
}

/// Reads a state file; `None` if there is none yet. With `for_writing`, also the record
/// file open for rewriting. `seen`: an earlier read to reuse.
fn read_state(
    path: &Path,
    for_writing: bool,
    seen: Option<&Snapshot>,
) -> Result<Option<(Snapshot, RecordFile)>, StoreError> {
    let Some((file, len)) = open_state_file(path, for_writing)? else {
        return Ok(None);
    };
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.into(),
        why,
    };
    let (bytes, record) = match record_file::read(file, path, len)? {
        Contents::Record { payload, file } => (payload, file),
        // Never replaced by the next save: whatever it held (a replay guard, a lockout)
        // would be lost without anyone deciding so.
        Contents::Foreign => {
            return Err(corrupt(format!(
                "not a state record file (this module reads state format {STATE_VERSION})"
            )))
        }
    };
    if bytes.len() > MAX_STATE_BYTES {
        return Err(corrupt(format!(
            "larger than {} KiB",
            MAX_STATE_BYTES / 1024
        )));
    }
    let state = match seen {
        Some(seen) if seen.payload == bytes => seen.state.clone(),
        _ => State::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))?,
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
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::{Arc, Barrier};

    fn scratch(name: &str) -> PathBuf {
        // Under /run, not /tmp: the store wants root's directories all the way down.
        let dir = Path::new("/run").join(format!("pam-otp-store-{}-{name}", std::process::id()));
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
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn saved_state_loads_back_and_no_temp_file_remains() {
        require_root();
        let dir = scratch("roundtrip");
        let store = StateStore::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let locked = store.lock(1000).unwrap();
        assert_eq!(locked.load().unwrap(), None);
        let mut state = State::default();
        state.all.user.failures = 3;
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
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn the_secret_store_inside_the_state_directory_is_left_alone() {
        // The administrator's secret store defaults to <state_dir>/secrets/.
        require_root();
        let dir = scratch("secrets-subdir");
        let store = StateStore::open(&dir).unwrap();
        let secrets = dir.join("secrets");
        fs::DirBuilder::new().mode(0o700).create(&secrets).unwrap();
        fs::write(secrets.join("alice.toml"), "secret = \"x\"\n").unwrap();
        // State files sit beside it, named by uid.
        for uid in [0, 1000] {
            let locked = store.lock(uid).unwrap();
            let state = State::default();
            locked.save(&state, Durability::Synced).unwrap();
            assert_eq!(store.peek(uid).unwrap().map(|s| s.state), Some(state));
            assert!(locked.remove().unwrap());
        }
        assert!(StateStore::open(&dir).is_ok());
        assert!(fs::metadata(&secrets).unwrap().is_dir());
        assert_eq!(
            fs::read_to_string(secrets.join("alice.toml")).unwrap(),
            "secret = \"x\"\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn the_file_is_named_by_uid_only() {
        require_root();
        let dir = scratch("names");
        let store = StateStore::open(&dir).unwrap();
        let locked = store.lock(4242).unwrap();
        locked.save(&State::default(), Durability::Synced).unwrap();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["uid-4242.lock", "uid-4242.state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn corrupt_state_is_an_error_not_a_reset() {
        require_root();
        let dir = scratch("corrupt");
        let store = StateStore::open(&dir).unwrap();
        fs::write(dir.join("uid-1001.state"), "garbage").unwrap();
        let locked = store.lock(1001).unwrap();
        assert!(matches!(locked.load(), Err(StoreError::Corrupt { .. })));
        assert_eq!(
            fs::read_to_string(dir.join("uid-1001.state")).unwrap(),
            "garbage"
        );
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
    fn a_state_of_another_format_is_refused_with_the_way_out() {
        require_root();
        let dir = scratch("format");
        let store = StateStore::open(&dir).unwrap();
        let path = dir.join("uid-1003.state");
        let older = postcard::to_allocvec(&State {
            version: STATE_VERSION - 1,
            ..State::default()
        })
        .unwrap();
        // A record holding a state of format 3, and text that is no record file at all.
        let text = b"version = 2\nlast_success = 7\n".to_vec();
        for (what, make) in [("format 3", true), ("text", false)] {
            if make {
                record_file::create(&path, &dir.join(".tmp"), &older).unwrap();
            } else {
                fs::write(&path, &text).unwrap();
            }
            let before = fs::read(&path).unwrap();
            let locked = store.lock(1003).unwrap();
            match locked.load() {
                Err(e @ StoreError::Corrupt { .. }) => {
                    let e = e.to_string();
                    assert!(
                        e.contains("format 4") && e.contains("otp-admin reset"),
                        "{e}"
                    );
                }
                other => panic!("{what}: {:?}", other.map(|_| ())),
            }
            assert!(store.peek(1003).is_err(), "{what}");
            assert!(locked.save(&State::default(), Durability::Synced).is_err());
            assert_eq!(fs::read(&path).unwrap(), before, "{what}: changed");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
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
    #[cfg_attr(
        not(feature = "system-tests"),
        ignore = "needs root: make test runs it"
    )]
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
                        let locked = store.lock(1002).unwrap();
                        let mut state = locked.load().unwrap().unwrap_or_default();
                        state.all.user.failures += 1;
                        locked.save(&state, Durability::Synced).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let total = store
            .lock(1002)
            .unwrap()
            .load()
            .unwrap()
            .unwrap()
            .all
            .user
            .failures;
        assert_eq!(total, 200, "lost updates");
    }

    #[test]
    fn a_record_files_io_error_stays_the_source_of_the_store_error() {
        use std::error::Error;
        let record = RecordError::Io {
            path: "/run/x".into(),
            action: "read",
            error: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let kind = |e: &dyn Error| e.source()?.downcast_ref::<io::Error>().map(io::Error::kind);
        assert_eq!(kind(&record), Some(io::ErrorKind::PermissionDenied));
        let store = StoreError::from(record);
        assert_eq!(kind(&store), Some(io::ErrorKind::PermissionDenied));
        let corrupt = StoreError::Corrupt {
            path: "/run/x".into(),
            why: "no intact record".into(),
        };
        assert!(corrupt.source().is_none());
    }
}
