//! Where the system keeps a person's record, behind the one interface the login uses
//! ([`Records`]): the state file under its lock (`store = "file"`), or the fleet's shared
//! record in Redis, changed by compare-and-set, with the state file as this host's floor
//! (`store = "redis"`).

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::login::{Host, Record, Records, Written};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::fleet::{decode, floor_after, with_floor, RecordKeys};
use pam_otp_core::state::{Custody, EnrollmentRef, State};
use pam_otp_sys::account::{Account, AccountError};
use pam_otp_sys::policy::{Policy, RedisSettings, Store};
use pam_otp_sys::redis_client::RedisClient;
use pam_otp_sys::redis_protocol::{RedisStoreError, WriteOutcome};
use pam_otp_sys::store::{Durability, LockedState, Snapshot, StateStore, StoreError};
use pam_otp_sys::user_file::{read_enrollment_as, ReadAs, UserFileError};

/// Why a record could not be read or written; every one refuses the login.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The state directory or file (the file store, or the fleet host's floor).
    Store(StoreError),
    /// The fleet's Redis.
    Redis(RedisStoreError),
    /// The floor has no room for the record of this enrollment (see `State::accept`).
    NoRoom,
    /// A write-back without the read it follows: a mistake of the login's, refused.
    NotRead,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Store(e) => write!(f, "{e}"),
            RecordError::Redis(e) => write!(f, "{e}"),
            RecordError::NoRoom => f.write_str(
                "this host's state already holds 8 enrollments used within a week and cannot \
                 remember another; refused (see otp-admin status)",
            ),
            RecordError::NotRead => f.write_str("the record was written back without a read"),
        }
    }
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> RecordError {
        RecordError::Store(e)
    }
}

impl From<RedisStoreError> for RecordError {
    fn from(e: RedisStoreError) -> RecordError {
        RecordError::Redis(e)
    }
}

/// The state directory, opened (and checked) at its first use in a login: only root can
/// change the directories it was found safe in, so a second walk would find the same.
struct StateDir<'a> {
    path: &'a Path,
    store: OnceCell<StateStore>,
}

impl StateDir<'_> {
    fn get(&self) -> Result<&StateStore, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let store = StateStore::open(self.path)?;
        Ok(self.store.get_or_init(|| store))
    }
}

/// `store = "file"`: the state file, read and written under the person's lock, so a
/// write-back never finds the record changed.
struct FileRecords<'a> {
    dir: StateDir<'a>,
    /// The state as the check before the prompt read it (a later read of the same bytes
    /// skips the parse).
    peeked: RefCell<Option<Snapshot>>,
    /// The person's lock, from a read to its write-back or release.
    held: RefCell<Option<LockedState>>,
}

impl Records for FileRecords<'_> {
    fn peek(&self, account: &Account) -> Result<Record, RecordError> {
        let store = self.dir.get()?;
        store.check_writable()?;
        let snapshot = store.peek(account.uid)?;
        let state = snapshot.as_ref().map(|snapshot| snapshot.state.clone());
        *self.peeked.borrow_mut() = snapshot;
        Ok(Record {
            state,
            version: 0,
            clock: None,
        })
    }

    fn read(&self, account: &Account, _: &EnrollmentRef) -> Result<Record, RecordError> {
        self.release();
        let locked = self.dir.get()?.lock(account.uid)?;
        let state = locked.load_after(self.peeked.borrow().as_ref())?;
        *self.held.borrow_mut() = Some(locked);
        Ok(Record {
            state,
            version: 0,
            clock: None,
        })
    }

    fn write_if_unchanged(
        &self,
        _: &Account,
        _: &EnrollmentRef,
        _: u64,
        state: &State,
        durability: Durability,
    ) -> Result<Written, RecordError> {
        let held = self.held.borrow();
        let locked = held.as_ref().ok_or(RecordError::NotRead)?;
        locked.save(state, durability)?;
        Ok(Written::Written)
    }

    fn release(&self) {
        self.held.borrow_mut().take();
    }

    fn retry_after_change(&self, _: u32) -> bool {
        // The lock is held from read to write: the record cannot have changed.
        false
    }

    fn replicated(&self) -> Result<(), RecordError> {
        Ok(())
    }
}

/// What a fleet read holds until its write-back: this host's lock and floor, and the
/// server's clock.
struct FloorHeld {
    locked: LockedState,
    floor: State,
    clock: u64,
}

/// `store = "redis"`: the shared record, with the state file as this host's floor. The
/// connection is opened at its first use and kept for the login.
struct FleetRecords<'a> {
    dir: StateDir<'a>,
    settings: &'a RedisSettings,
    connection: RefCell<Option<RedisClient>>,
    /// The record as the check before the prompt read it, and when: the first decision
    /// starts from it (its write-back fails if anything changed since, and reads again).
    peeked: RefCell<Option<(Shared, Instant)>>,
    held: RefCell<Option<FloorHeld>>,
    /// When the first write-back was refused: retries stop once `redis_timeout_ms` is spent.
    first_change: Cell<Option<Instant>>,
    /// The microseconds of the server's last `TIME`: the jitter of the pause before a retry.
    jitter: Cell<u32>,
}

impl FleetRecords<'_> {
    /// Runs `action` on the connection, connecting first if need be. After any error the
    /// connection is dropped: a reply may still be on its way.
    fn with_redis<T>(
        &self,
        action: impl FnOnce(&mut RedisClient) -> Result<T, RedisStoreError>,
    ) -> Result<T, RedisStoreError> {
        let mut slot = self.connection.borrow_mut();
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(RedisClient::connect(self.settings)?),
        };
        let result = action(connection);
        if result.is_err() {
            *slot = None;
        }
        result
    }

    fn keys(&self, account: &Account) -> RecordKeys {
        RecordKeys::new(&self.settings.prefix, account.uid)
    }

    /// The shared record: its state, version and the server's clock.
    fn read_shared(&self, account: &Account) -> Result<Shared, RecordError> {
        let keys = self.keys(account);
        let read = self.with_redis(|redis| redis.read(&keys))?;
        self.jitter.set(read.micros);
        read.refuse_old_format(&keys)?;
        let state = decode(&read.state).map_err(|e| {
            RedisStoreError::Reply(format!(
                "{}: {e}; otp-admin reset USER starts it afresh",
                keys.record
            ))
        })?;
        Ok(Shared {
            state,
            version: read.version,
            time: read.time,
            micros: read.micros,
        })
    }
}

/// The shared record as read, with the server's clock.
#[derive(Clone)]
struct Shared {
    state: Option<State>,
    version: u64,
    time: u64,
    micros: u32,
}

impl Shared {
    /// The server's clock (in seconds) `elapsed` after this was read, measured on this
    /// host's monotonic clock: a length of time, which a skewed wall clock does not change.
    fn time_after(&self, elapsed: Duration) -> u64 {
        let micros = u128::from(self.micros) + elapsed.as_micros();
        self.time
            .saturating_add(u64::try_from(micros / 1_000_000).unwrap_or(u64::MAX))
    }
}

impl Records for FleetRecords<'_> {
    fn peek(&self, account: &Account) -> Result<Record, RecordError> {
        // The floor must be writable before anyone types a code it cannot retire.
        self.dir.get()?.check_writable()?;
        let shared = self.read_shared(account)?;
        *self.peeked.borrow_mut() = Some((shared.clone(), Instant::now()));
        Ok(Record {
            state: shared.state,
            version: shared.version,
            clock: Some(shared.time),
        })
    }

    fn read(&self, account: &Account, enrolled: &EnrollmentRef) -> Result<Record, RecordError> {
        self.release();
        // This host's logins of the person pass one at a time: only other hosts' writes
        // come between a read and its write-back.
        let locked = self.dir.get()?.lock(account.uid)?;
        let floor = locked.load()?.unwrap_or_default();
        let (shared, clock) = match self.peeked.borrow_mut().take() {
            Some((peeked, at)) => {
                let clock = peeked.time_after(at.elapsed());
                (peeked, clock)
            }
            None => {
                let shared = self.read_shared(account)?;
                let clock = shared.time;
                (shared, clock)
            }
        };
        let version = shared.version;
        let shared = shared.state;
        let view = with_floor(
            shared.as_ref().unwrap_or(&State::default()),
            &floor,
            enrolled,
            clock,
        )
        .ok_or(RecordError::NoRoom)?;
        let state = (shared.is_some() || view != State::default()).then_some(view);
        *self.held.borrow_mut() = Some(FloorHeld {
            locked,
            floor,
            clock,
        });
        Ok(Record {
            state,
            version,
            clock: Some(clock),
        })
    }

    fn write_if_unchanged(
        &self,
        account: &Account,
        enrolled: &EnrollmentRef,
        version: u64,
        state: &State,
        _: Durability,
    ) -> Result<Written, RecordError> {
        let held = self.held.borrow();
        let held = held.as_ref().ok_or(RecordError::NotRead)?;
        // Known before the shared record changes: a code the floor cannot hold is refused.
        let floor =
            floor_after(&held.floor, enrolled, state, held.clock).ok_or(RecordError::NoRoom)?;
        let bytes = state
            .to_bytes()
            .map_err(|e| RedisStoreError::Reply(e.to_string()))?;
        let keys = self.keys(account);
        match self.with_redis(|redis| redis.write(&keys, version, bytes))? {
            WriteOutcome::Changed => return Ok(Written::Changed),
            WriteOutcome::Written(_) => {}
        }
        // The floor: on stable storage before the host says yes, so that this host never
        // accepts the code again, whatever Redis loses.
        if floor != held.floor {
            held.locked.save(&floor, Durability::Synced)?;
        }
        Ok(Written::Written)
    }

    fn release(&self) {
        self.held.borrow_mut().take();
    }

    fn retry_after_change(&self, attempt: u32) -> bool {
        let budget = Duration::from_millis(self.settings.timeout_ms);
        let first = self.first_change.get().unwrap_or_else(Instant::now);
        self.first_change.set(Some(first));
        if first.elapsed() >= budget {
            return false;
        }
        // Hosts that collided pause for different times: up to 2, 4, 8 … 64 ms.
        let spread = 1000u64 << attempt.min(6);
        let jitter = (u64::from(self.jitter.get()) ^ u64::from(std::process::id())) % spread;
        std::thread::sleep(Duration::from_micros(jitter));
        true
    }

    fn replicated(&self) -> Result<(), RecordError> {
        Ok(self.with_redis(|redis| redis.wait_for_replicas())?)
    }
}

/// The system itself: the user database, the user's file, and the record store the policy
/// names.
pub(crate) struct SystemHost<'a> {
    records: Box<dyn Records + 'a>,
}

impl<'a> SystemHost<'a> {
    pub fn new(policy: &'a Policy) -> SystemHost<'a> {
        let dir = StateDir {
            path: &policy.state_dir,
            store: OnceCell::new(),
        };
        let records: Box<dyn Records + 'a> = match &policy.store {
            Store::File => Box::new(FileRecords {
                dir,
                peeked: RefCell::new(None),
                held: RefCell::new(None),
            }),
            Store::Redis(settings) => Box::new(FleetRecords {
                dir,
                settings,
                connection: RefCell::new(None),
                peeked: RefCell::new(None),
                held: RefCell::new(None),
                first_change: Cell::new(None),
                jitter: Cell::new(0),
            }),
        };
        SystemHost { records }
    }
}

impl Host for SystemHost<'_> {
    fn account(&self, name: &str) -> Result<Option<Account>, AccountError> {
        Account::lookup(name)
    }

    fn enrollment(
        &self,
        path: &Path,
        account: &Account,
    ) -> Result<(Enrollment, Custody), UserFileError> {
        let (enrollment, read_as) = read_enrollment_as(path, account)?;
        let custody = match read_as {
            ReadAs::Root => Custody::Administrator,
            ReadAs::User => Custody::User,
        };
        Ok((enrollment, custody))
    }

    fn records(&self) -> &dyn Records {
        self.records.as_ref()
    }
}
