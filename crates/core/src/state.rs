//! What the module remembers about one person between logins, and its versioned binary
//! form; no I/O. Per person:
//! failures and lockouts, user-wide and per source. Per enrollment: the replay guard, the
//! HOTP counter and the spent recovery codes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{lockout_length, Limits, MAX_WINDOW};
use crate::enrollment::{Enrollment, Kind};
use crate::otp::{totp_step, HotpKey};
use crate::source::{Source, MAX_SOURCE_BYTES};

/// The state format written and read: a compact binary form (postcard: the fields in
/// declaration order, integers as varints), which a login reads and writes far faster
/// than text. A state of any other format is refused, never guessed at: `otp-admin
/// reset` is the way out.
pub const STATE_VERSION: u32 = 4;
/// Sources remembered per person; see [`State::record_failure`] for the eviction rule.
pub const MAX_SOURCES: usize = 32;
/// Enrollment records kept per person; see [`State::accept`] for the eviction rule.
pub const MAX_ENROLLMENTS: usize = 8;
/// An enrollment record unused this long may make room for another enrollment: longer than
/// any TOTP window can reach back (100 steps of at most 3600 s is 4.2 days).
pub const ENROLLMENT_IDLE_SECONDS: u64 = 7 * 86_400;
/// The largest encoded state: every bound above at its maximum fits well inside it.
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// The longest enrollment file path kept in a record.
const MAX_FILE_BYTES: usize = 4096;

/// Failures and lockouts of one scope (the person, one source, or the sources that did
/// not fit in the table).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    /// Failures since the last success or lockout of this scope.
    pub failures: u32,
    /// Lockouts since the last success; each doubles the next one's length.
    pub lockouts: u32,
    /// Unix time until which this scope is refused unseen (0: not locked).
    pub locked_until: u64,
    /// Unix time of the last failure (0: none); the oldest unlocked source is forgotten first.
    pub last_failure: u64,
}

impl Tally {
    /// Whether this scope is locked at `now`.
    pub fn is_locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// Counts one failure; after `threshold` of them (0: never) a lockout starts, doubling
    /// with each one since the last success. Returns the lockout's end if one started.
    fn fail(&mut self, threshold: u32, limits: &Limits, now: u64) -> Option<u64> {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if threshold == 0 || self.failures < threshold {
            return None;
        }
        self.lockouts = self.lockouts.saturating_add(1);
        self.failures = 0;
        self.locked_until = now.saturating_add(lockout_length(limits, self.lockouts));
        Some(self.locked_until)
    }
}

/// The replay guard a new TOTP enrollment takes over from `old`, the record of the
/// enrollment written before it in the same file. The file may hold the same secret again
/// (new recovery codes change only the fingerprint), so a code accepted a moment ago must
/// stay spent: no step at or before the one `old` accepted, or the step at which it was
/// accepted, whichever is later. A new secret loses at most the steps up to that one.
/// A guard counted in another period (far from the moment it was set, once read in this
/// period) says nothing here, and only the moment is kept.
fn carried_totp_guard(old: &EnrollmentRecord, period: u64) -> Option<u64> {
    let accepted = old.last_totp_step?;
    let moment = totp_step(old.last_used, period);
    if accepted.abs_diff(moment) <= MAX_WINDOW {
        Some(accepted.max(moment))
    } else {
        Some(moment)
    }
}

/// What the module keeps for one enrollment, found by its fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRecord {
    /// The enrollment file this enrollment was last used from.
    pub file: String,
    /// Unix time of the last accepted code.
    pub last_used: u64,
    /// TOTP: the newest time step accepted; no step at or before it is accepted again.
    pub last_totp_step: Option<u64>,
    /// HOTP: the smallest counter value still acceptable.
    pub next_hotp_counter: Option<u64>,
    /// Indexes into the enrollment's `recovery_codes` that have been used.
    pub spent_recovery_codes: Vec<u32>,
}

/// An enrollment as one login uses it: fingerprinted once, with the file it came from.
#[derive(Clone, Debug)]
pub struct EnrollmentRef<'a> {
    /// The parsed enrollment.
    pub enrollment: &'a Enrollment,
    /// `Enrollment::fingerprint`, computed once per login.
    pub fingerprint: String,
    /// The enrollment's keyed HMAC, keyed once per login for every code it checks.
    pub key: HotpKey,
    /// The enrollment file's path, as the record remembers it.
    pub file: String,
    /// Who can change that file.
    pub custody: Custody,
}

impl<'a> EnrollmentRef<'a> {
    /// Fingerprints `enrollment` (read from `file`, which `custody` can change) for one
    /// login.
    pub fn new(enrollment: &'a Enrollment, file: &str, custody: Custody) -> EnrollmentRef<'a> {
        EnrollmentRef {
            enrollment,
            fingerprint: enrollment.fingerprint(),
            key: enrollment.hotp_key(),
            file: file.to_string(),
            custody,
        }
    }

    /// The record of an enrollment never used to log in.
    pub fn fresh_record(&self) -> EnrollmentRecord {
        EnrollmentRecord {
            file: self.file.clone(),
            next_hotp_counter: match self.enrollment.kind {
                Kind::Hotp { counter } => Some(counter),
                Kind::Totp { .. } => None,
            },
            ..EnrollmentRecord::default()
        }
    }
}

/// Who can change an enrollment's file. It decides what a success with that enrollment
/// may clear: a success with a file the user can write proves only that someone running
/// as the user wrote a code into it, so it must not lower what guards an enrollment the
/// user cannot even read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Custody {
    /// The user, and so anything running as the user: the user's own file.
    User,
    /// Only the administrator: a root-owned file in the store, which the user cannot read.
    Administrator,
}

/// What a lockout covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockScope {
    /// The person, from every source (the user-wide ceiling).
    User,
    /// This source only.
    Source,
    /// Every source the table could not remember (all its entries were locked).
    OtherSources,
}

/// A lockout in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    /// Unix time the lockout ends.
    pub until: u64,
    /// What it covers.
    pub scope: LockScope,
}

/// What [`State::unlock`] clears.
#[derive(Clone, Copy, Debug)]
pub enum Unlock<'a> {
    /// What a success from this source with an enrollment of this custody clears: the
    /// source's tally and the user-wide one; those guarding the administrator's enrollments
    /// only if the success was with one of them. Other sources stay as they are (a
    /// stranger's locked address stays locked).
    Success(&'a Source, Custody),
    /// `otp-admin unlock --source`: the source's tallies and the user-wide ones.
    Source(&'a Source),
    /// `otp-admin unlock`: every tally.
    Everything,
}

/// Failures and lockouts of one set of enrollments: the person's from all sources
/// together, per source, and of the sources that did not fit in the table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tallies {
    /// The person's failures and lockouts from all sources together.
    pub user: Tally,
    /// Failures from sources that found every table entry locked (see `record_failure`).
    pub overflow: Tally,
    /// Per source key (`Source`), at most [`MAX_SOURCES`].
    pub sources: BTreeMap<String, Tally>,
}

impl Tallies {
    /// Whether `source` has its own entry, may get one, or counts with the overflow.
    fn routes_to_overflow(&self, source: &Source, now: u64) -> bool {
        !self.sources.contains_key(source.as_str())
            && self.sources.len() >= MAX_SOURCES
            && self.sources.values().all(|t| t.is_locked(now))
    }

    /// The lockout that refuses a login from `source` at `now`, if any: the user-wide
    /// one or the source's own, whichever ends later.
    pub fn lock_for(&self, source: &Source, now: u64) -> Option<Lock> {
        let own = if self.routes_to_overflow(source, now) {
            Some((&self.overflow, LockScope::OtherSources))
        } else {
            self.sources
                .get(source.as_str())
                .map(|t| (t, LockScope::Source))
        };
        [Some((&self.user, LockScope::User)), own]
            .into_iter()
            .flatten()
            .filter(|(tally, _)| tally.is_locked(now))
            .map(|(tally, scope)| Lock {
                until: tally.locked_until,
                scope,
            })
            .max_by_key(|lock| lock.until)
    }

    /// The sources locked at `now`, with their tallies.
    pub fn locked_sources(&self, now: u64) -> impl Iterator<Item = (&str, &Tally)> {
        self.sources
            .iter()
            .filter(move |(_, t)| t.is_locked(now))
            .map(|(k, t)| (k.as_str(), t))
    }

    /// The latest end of a lockout in force at `now`, user-wide or of any source.
    pub fn latest_lock_end(&self, now: u64) -> Option<u64> {
        [&self.user, &self.overflow]
            .into_iter()
            .chain(self.sources.values())
            .filter(|t| t.is_locked(now))
            .map(|t| t.locked_until)
            .max()
    }

    /// Counts one failed answer from `source` against the source and against the person.
    /// Returns the source's failures, the person's, and the lockout it started, if any.
    ///
    /// A source without an entry gets one; when the table is full the oldest *unlocked*
    /// entry is forgotten (a locked source is never forgotten, so rotating addresses cannot
    /// flush a lock). Every failure also counts on the user-wide tally, so nothing evicted
    /// escapes the ceiling. If every entry is locked, the new source is not remembered:
    /// its failure counts on the user-wide tally only, which bounds it; the owner arriving
    /// from a new address is then not locked out by strangers' sources. Only with the
    /// ceiling off (`max_failures_user=0`) do such sources share one overflow tally, which
    /// locks them all like one source (else they would be unlimited).
    fn record_failure(
        &mut self,
        source: &Source,
        limits: &Limits,
        now: u64,
    ) -> (u32, u32, Option<Lock>) {
        // max_failures=0 turns every lockout off, the ceiling included.
        let user_threshold = if limits.max_failures == 0 {
            0
        } else {
            limits.max_failures_user
        };
        let (own, scope) = if self.routes_to_overflow(source, now) {
            if user_threshold > 0 {
                let user_lock = self.user.fail(user_threshold, limits, now);
                let lock = user_lock.map(|until| Lock {
                    until,
                    scope: LockScope::User,
                });
                return (self.user.failures, self.user.failures, lock);
            }
            (&mut self.overflow, LockScope::OtherSources)
        } else {
            if !self.sources.contains_key(source.as_str()) && self.sources.len() >= MAX_SOURCES {
                let oldest_unlocked = self
                    .sources
                    .iter()
                    .filter(|(_, t)| !t.is_locked(now))
                    .min_by_key(|(key, t)| (t.last_failure, key.as_str()))
                    .map(|(key, _)| key.clone());
                if let Some(key) = oldest_unlocked {
                    self.sources.remove(&key);
                }
            }
            let entry = self.sources.entry(source.as_str().to_string()).or_default();
            (entry, LockScope::Source)
        };
        let own_lock = own.fail(limits.max_failures, limits, now);
        let own_failures = own.failures;
        let user_lock = self.user.fail(user_threshold, limits, now);
        let lock = match (user_lock, own_lock) {
            (Some(u), Some(o)) if o > u => Some(Lock { until: o, scope }),
            (Some(until), _) => Some(Lock {
                until,
                scope: LockScope::User,
            }),
            (None, Some(until)) => Some(Lock { until, scope }),
            (None, None) => None,
        };
        (own_failures, self.user.failures, lock)
    }

    /// Clears the user-wide tally and `source`'s (every source's and the overflow with
    /// `None`).
    fn clear(&mut self, source: Option<&Source>) {
        self.user = Tally::default();
        match source {
            Some(source) => {
                self.sources.remove(source.as_str());
            }
            None => {
                self.sources.clear();
                self.overflow = Tally::default();
            }
        }
    }
}

/// The later of two lockouts.
fn later(a: Option<Lock>, b: Option<Lock>) -> Option<Lock> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.until > a.until { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// What the module remembers between logins for one person (one UID).
///
/// The binary form is the fields in declaration order: reordering, adding or removing a
/// field here (or in [`Tallies`], [`Tally`] or [`EnrollmentRecord`]) is a new
/// [`STATE_VERSION`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The format version, [`STATE_VERSION`].
    pub version: u32,
    /// Unix time of the last accepted code, whichever enrollment (0: never).
    pub last_success: u64,
    /// Failures with every enrollment. A success with any enrollment clears its source's
    /// tally and the user-wide one.
    pub all: Tallies,
    /// Failures with the enrollments only the administrator can change (the store),
    /// counted here as well as in `all`. Only a success with such an enrollment, or
    /// `otp-admin unlock`, clears them: a success with a file the user can write never
    /// lowers what guards the store.
    pub protected: Tallies,
    /// Per enrollment fingerprint, at most [`MAX_ENROLLMENTS`].
    pub enrollments: BTreeMap<String, EnrollmentRecord>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: STATE_VERSION,
            last_success: 0,
            all: Tallies::default(),
            protected: Tallies::default(),
            enrollments: BTreeMap::new(),
        }
    }
}

/// Why a state file could not be read, or a state not written.
#[derive(Debug, PartialEq, Eq)]
pub struct StateParseError(pub String);

impl fmt::Display for StateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt state: {}", self.0)
    }
}

impl std::error::Error for StateParseError {}

impl State {
    /// The record of this enrollment: the stored one, else a fresh one (a new enrollment
    /// starts its counter and recovery codes afresh, and its replay guard too unless it is
    /// TOTP in a file used before: see `carried_totp_guard`; failures stay).
    pub fn record(&self, enrolled: &EnrollmentRef) -> EnrollmentRecord {
        if let Some(record) = self.enrollments.get(&enrolled.fingerprint) {
            return record.clone();
        }
        let mut fresh = enrolled.fresh_record();
        if let Kind::Totp { period } = enrolled.enrollment.kind {
            fresh.last_totp_step = self
                .enrollments
                .values()
                .find(|old| old.file == enrolled.file)
                .and_then(|old| carried_totp_guard(old, period));
        }
        fresh
    }

    /// The tallies that guard an enrollment of `custody`.
    fn guarding(&self, custody: Custody) -> impl Iterator<Item = &Tallies> {
        let protected = (custody == Custody::Administrator).then_some(&self.protected);
        std::iter::once(&self.all).chain(protected)
    }

    /// The lockout that refuses a login from `source` with an enrollment of `custody` at
    /// `now`, if any: the latest of those in force.
    pub fn lock_for(&self, source: &Source, custody: Custody, now: u64) -> Option<Lock> {
        self.guarding(custody)
            .map(|tallies| tallies.lock_for(source, now))
            .fold(None, later)
    }

    /// Whether anything is locked at `now`, in any set, user-wide or from any source.
    pub fn any_locked(&self, now: u64) -> bool {
        [&self.all, &self.protected]
            .iter()
            .any(|tallies| tallies.latest_lock_end(now).is_some())
    }

    /// Counts one failed answer from `source` with an enrollment of `custody`: in `all`,
    /// and for the administrator's enrollments in `protected` too. Returns the source's
    /// failures and the person's (the higher of the sets counted) and the lockout it
    /// started, if any (the later one). See [`Tallies::record_failure`] for the rules.
    pub fn record_failure(
        &mut self,
        source: &Source,
        custody: Custody,
        limits: &Limits,
        now: u64,
    ) -> (u32, u32, Option<Lock>) {
        let mut counted = self.all.record_failure(source, limits, now);
        if custody == Custody::Administrator {
            let (own, user, lock) = self.protected.record_failure(source, limits, now);
            counted = (
                counted.0.max(own),
                counted.1.max(user),
                later(counted.2, lock),
            );
        }
        counted
    }

    /// The one way failures and lockouts are cleared, by a success and by `otp-admin unlock`.
    /// Returns whether anything changed.
    pub fn unlock(&mut self, what: Unlock) -> bool {
        let before = self.clone();
        match what {
            Unlock::Success(source, custody) => {
                self.all.clear(Some(source));
                if custody == Custody::Administrator {
                    self.protected.clear(Some(source));
                }
            }
            Unlock::Source(source) => {
                self.all.clear(Some(source));
                self.protected.clear(Some(source));
            }
            Unlock::Everything => {
                self.all.clear(None);
                self.protected.clear(None);
            }
        }
        *self != before
    }

    /// Saves `record` as this enrollment's after a success at `now`, keeping at most
    /// [`MAX_ENROLLMENTS`] records. Room is made, in this order:
    /// 1. a record last used from the same file for another enrollment is replaced: that
    ///    enrollment was overwritten there, and only someone who can write that file (its
    ///    owner, or root for the administrator's store) can bring it back, who could as
    ///    well write a new enrollment with a secret of their choosing;
    /// 2. else the least recently used record idle for [`ENROLLMENT_IDLE_SECONDS`] goes
    ///    (its TOTP steps are out of every window by then; its HOTP counter and spent
    ///    recovery codes would start over if that enrollment came back: only reached
    ///    with more than eight enrollment files per person, which SECURITY.md warns of).
    ///
    /// Returns false if no record could make room (more than eight enrollments used within
    /// a week): the success must then not be granted.
    pub fn accept(&mut self, enrolled: &EnrollmentRef, record: EnrollmentRecord, now: u64) -> bool {
        if !self.make_room(enrolled, now) {
            return false;
        }
        let record = EnrollmentRecord {
            file: enrolled.file.clone(),
            last_used: now,
            ..record
        };
        self.enrollments
            .insert(enrolled.fingerprint.clone(), record);
        self.last_success = now;
        true
    }

    /// Keeps `record` as this enrollment's as it is (its last use unchanged), making room
    /// by the rules of [`State::accept`]; false if there is none. For a record that was
    /// used before, elsewhere: the fleet host's floor laid under the shared record.
    pub fn keep(&mut self, enrolled: &EnrollmentRef, record: EnrollmentRecord, now: u64) -> bool {
        if !self.make_room(enrolled, now) {
            return false;
        }
        self.enrollments
            .insert(enrolled.fingerprint.clone(), record);
        true
    }

    /// Makes room for this enrollment's record if it has none (see [`State::accept`]).
    fn make_room(&mut self, enrolled: &EnrollmentRef, now: u64) -> bool {
        let key = &enrolled.fingerprint;
        if !self.enrollments.contains_key(key) {
            let same_file = self
                .enrollments
                .iter()
                .find(|(_, r)| r.file == enrolled.file)
                .map(|(k, _)| k.clone());
            if let Some(old) = same_file {
                self.enrollments.remove(&old);
            } else if self.enrollments.len() >= MAX_ENROLLMENTS {
                let idle = self
                    .enrollments
                    .iter()
                    .filter(|(_, r)| r.last_used.saturating_add(ENROLLMENT_IDLE_SECONDS) <= now)
                    .min_by_key(|(k, r)| (r.last_used, k.as_str()))
                    .map(|(k, _)| k.clone());
                match idle {
                    Some(old) => {
                        self.enrollments.remove(&old);
                    }
                    None => return false,
                }
            }
        }
        true
    }

    /// Reads the binary form (a record's payload) strictly: exactly one state of this
    /// format, nothing after it, nothing out of bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<State, StateParseError> {
        check_size(bytes)?;
        // The version leads, so a state of another format is named as such rather than
        // reported as undecodable.
        let (version, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| StateParseError(format!("no format version: {e}")))?;
        if version != STATE_VERSION {
            return Err(StateParseError(format!(
                "format {version} is not supported (this module reads format {STATE_VERSION})"
            )));
        }
        let (state, rest) = postcard::take_from_bytes::<State>(bytes)
            .map_err(|e| StateParseError(format!("does not decode: {e}")))?;
        if !rest.is_empty() {
            return Err(StateParseError(format!(
                "{} bytes after the state",
                rest.len()
            )));
        }
        state.check_bounds()?;
        Ok(state)
    }

    /// The binary form, at most [`MAX_STATE_BYTES`]. Fails for a state out of bounds or
    /// of another format, which must never be written.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateParseError> {
        let unwritable = |why: String| StateParseError(format!("cannot be written: {why}"));
        if self.version != STATE_VERSION {
            return Err(unwritable(format!("format {}", self.version)));
        }
        self.check_bounds().map_err(|e| unwritable(e.0))?;
        let bytes = postcard::to_allocvec(self).map_err(|e| unwritable(e.to_string()))?;
        if bytes.len() > MAX_STATE_BYTES {
            return Err(unwritable(format!(
                "larger than {} KiB",
                MAX_STATE_BYTES / 1024
            )));
        }
        Ok(bytes)
    }

    fn check_bounds(&self) -> Result<(), StateParseError> {
        let too_many = |what: &str, n: usize, max: usize| {
            StateParseError(format!("{n} {what} (at most {max})"))
        };
        for tallies in [&self.all, &self.protected] {
            if tallies.sources.len() > MAX_SOURCES {
                return Err(too_many("sources", tallies.sources.len(), MAX_SOURCES));
            }
            if let Some(key) = tallies.sources.keys().find(|k| k.len() > MAX_SOURCE_BYTES) {
                return Err(StateParseError(format!(
                    "source key of {} bytes",
                    key.len()
                )));
            }
        }
        if self.enrollments.len() > MAX_ENROLLMENTS {
            return Err(too_many(
                "enrollments",
                self.enrollments.len(),
                MAX_ENROLLMENTS,
            ));
        }
        for record in self.enrollments.values() {
            if record.file.len() > MAX_FILE_BYTES {
                return Err(StateParseError("enrollment file path too long".into()));
            }
            let spent = record.spent_recovery_codes.len();
            if spent > crate::enrollment::MAX_RECOVERY_CODES {
                return Err(too_many(
                    "spent recovery codes",
                    spent,
                    crate::enrollment::MAX_RECOVERY_CODES,
                ));
            }
        }
        Ok(())
    }
}

/// Refuses input larger than any state this module writes, before decoding it.
fn check_size(bytes: &[u8]) -> Result<(), StateParseError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(StateParseError(format!(
            "larger than {} KiB",
            MAX_STATE_BYTES / 1024
        )));
    }
    Ok(())
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

    fn limits() -> Limits {
        Limits::default()
    }

    /// A state with something in every field.
    fn busy_state() -> State {
        let e = enrollment("totp");
        let enrolled = EnrollmentRef::new(&e, "/home/a/.otp.toml", Custody::User);
        let mut state = State::default();
        let record = EnrollmentRecord {
            last_totp_step: Some(123),
            spent_recovery_codes: vec![0, 3],
            ..enrolled.fresh_record()
        };
        assert!(state.accept(&enrolled, record, 7));
        state.record_failure(
            &Source::from_rhost("2001:db8::1"),
            Custody::User,
            &limits(),
            9,
        );
        state.record_failure(&Source::from_rhost(""), Custody::User, &limits(), 9);
        state.all.overflow.failures = 1;
        state
    }

    #[test]
    fn binary_form_round_trips() {
        let state = busy_state();
        assert!(state.all.sources.contains_key("2001:db8::/64"));
        assert!(state.all.sources.contains_key("local"));
        let bytes = state.to_bytes().unwrap();
        assert_eq!(State::from_bytes(&bytes).unwrap(), state);
        assert_eq!(bytes[0], STATE_VERSION as u8, "the version leads");
    }

    #[test]
    fn every_u64_round_trips() {
        let state = State {
            last_success: u64::MAX,
            all: Tallies {
                user: Tally {
                    failures: u32::MAX,
                    lockouts: u32::MAX,
                    locked_until: u64::MAX,
                    last_failure: u64::MAX,
                },
                ..Tallies::default()
            },
            enrollments: BTreeMap::from([(
                "f".to_string(),
                EnrollmentRecord {
                    file: "/f".into(),
                    last_used: u64::MAX,
                    last_totp_step: Some(u64::MAX),
                    next_hotp_counter: Some(u64::MAX),
                    spent_recovery_codes: vec![u32::MAX],
                },
            )]),
            ..State::default()
        };
        let bytes = state.to_bytes().unwrap();
        assert_eq!(State::from_bytes(&bytes).unwrap(), state);
    }

    #[test]
    fn a_state_out_of_bounds_or_of_another_format_cannot_be_written() {
        let mut crowded = State::default();
        for i in 0..=MAX_SOURCES {
            crowded
                .all
                .sources
                .insert(format!("10.0.0.{i}"), Tally::default());
        }
        let mut long_key = State::default();
        long_key
            .protected
            .sources
            .insert("x".repeat(MAX_SOURCE_BYTES + 1), Tally::default());
        let mut spent = State::default();
        spent.enrollments.insert(
            "f".into(),
            EnrollmentRecord {
                spent_recovery_codes: vec![0; crate::enrollment::MAX_RECOVERY_CODES + 1],
                ..EnrollmentRecord::default()
            },
        );
        let older = State {
            version: STATE_VERSION - 1,
            ..State::default()
        };
        for state in [crowded, long_key, spent, older] {
            let error = state.to_bytes().unwrap_err();
            assert!(error.0.starts_with("cannot be written"), "{error}");
        }
    }

    #[test]
    fn a_fresh_hotp_record_starts_at_the_enrolled_counter() {
        let (h, t) = (enrollment("hotp"), enrollment("totp"));
        let state = State::default();
        assert_eq!(
            state
                .record(&EnrollmentRef::new(&h, "/f", Custody::User))
                .next_hotp_counter,
            Some(5)
        );
        assert_eq!(
            state
                .record(&EnrollmentRef::new(&t, "/f", Custody::User))
                .next_hotp_counter,
            None
        );
    }

    #[test]
    fn enrollments_keep_their_own_records_and_share_the_tally() {
        let (h, t) = (enrollment("hotp"), enrollment("totp"));
        let (a, b) = (
            EnrollmentRef::new(&h, "/home/u/.otp.toml", Custody::User),
            EnrollmentRef::new(&t, "/var/lib/pam-otp/secrets/u.toml", Custody::User),
        );
        let mut state = State::default();
        let used = EnrollmentRecord {
            next_hotp_counter: Some(50),
            ..a.fresh_record()
        };
        assert!(state.accept(&a, used, 100));
        assert_eq!(state.record(&a).next_hotp_counter, Some(50));
        assert_eq!(state.record(&b), b.fresh_record());
        state.record_failure(&Source::from_rhost(""), Custody::User, &limits(), 200);
        assert!(state.accept(&b, b.fresh_record(), 300));
        assert_eq!(state.record(&a).next_hotp_counter, Some(50), "b wiped a");
        assert_eq!(state.all.user.failures, 1, "accept must not clear failures");
    }

    #[test]
    fn a_new_enrollment_in_the_same_file_replaces_the_old_record() {
        let (h, t) = (enrollment("hotp"), enrollment("totp"));
        let mut state = State::default();
        let old = EnrollmentRef::new(&h, "/home/u/.otp.toml", Custody::User);
        assert!(state.accept(&old, old.fresh_record(), 1));
        let new = EnrollmentRef::new(&t, "/home/u/.otp.toml", Custody::User);
        assert!(state.accept(&new, new.fresh_record(), 2));
        assert_eq!(state.enrollments.len(), 1);
        assert!(state.enrollments.contains_key(&new.fingerprint));
    }

    fn numbered(n: usize) -> Enrollment {
        Enrollment::parse(&format!(
            "secret = \"JBSWY3DPEHPK3PX{}\"",
            ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"][n]
        ))
        .unwrap()
    }

    #[test]
    fn only_an_idle_record_makes_room_for_a_ninth_enrollment() {
        let all: Vec<Enrollment> = (0..10).map(numbered).collect();
        let refs: Vec<EnrollmentRef> = all
            .iter()
            .enumerate()
            .map(|(i, e)| EnrollmentRef::new(e, &format!("/etc/otp/{i}"), Custody::User))
            .collect();
        let mut state = State::default();
        for (i, r) in refs.iter().take(8).enumerate() {
            assert!(state.accept(r, r.fresh_record(), 1000 + i as u64));
        }
        // All eight used within the week: no room, and nothing forgotten.
        let later = 1000 + ENROLLMENT_IDLE_SECONDS - 1;
        let before = state.clone();
        assert!(!state.accept(&refs[8], refs[8].fresh_record(), later));
        assert_eq!(state, before);
        // A week on, the least recently used one (the first) makes room.
        let week = 1000 + ENROLLMENT_IDLE_SECONDS;
        assert!(state.accept(&refs[8], refs[8].fresh_record(), week));
        assert_eq!(state.enrollments.len(), MAX_ENROLLMENTS);
        assert!(!state.enrollments.contains_key(&refs[0].fingerprint));
        assert!(state.enrollments.contains_key(&refs[1].fingerprint));
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        let good = busy_state().to_bytes().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut bad_option = State::default();
        bad_option
            .enrollments
            .insert("f".into(), EnrollmentRecord::default());
        // The first Option tag (last_totp_step: None) is the third byte from the end:
        // tag, tag, empty list.
        let mut bad_option = bad_option.to_bytes().unwrap();
        let at = bad_option.len() - 3;
        assert_eq!(bad_option[at], 0);
        bad_option[at] = 2;
        let other_format = |version: u32| {
            postcard::to_allocvec(&State {
                version,
                ..busy_state()
            })
            .unwrap()
        };
        for (what, bad) in [
            ("empty", vec![]),
            ("text", b"version = 3".to_vec()),
            ("trailing byte", trailing),
            ("Option tag 2", bad_option),
            ("format 3", other_format(STATE_VERSION - 1)),
            ("format 5", other_format(STATE_VERSION + 1)),
            ("oversized", vec![STATE_VERSION as u8; MAX_STATE_BYTES + 1]),
        ] {
            assert!(State::from_bytes(&bad).is_err(), "{what}");
        }
        for end in 0..good.len() {
            assert!(State::from_bytes(&good[..end]).is_err(), "cut at {end}");
        }
        let crowded = State {
            protected: Tallies {
                sources: (0..=MAX_SOURCES)
                    .map(|i| (format!("10.0.0.{i}"), Tally::default()))
                    .collect(),
                ..Tallies::default()
            },
            ..State::default()
        };
        let crowded = postcard::to_allocvec(&crowded).unwrap();
        assert!(State::from_bytes(&crowded).is_err(), "out of bounds");
    }

    #[test]
    fn the_largest_state_fits_the_bound() {
        let mut state = State::default();
        for i in 0..MAX_SOURCES {
            let key = format!("{i:0>width$}", width = MAX_SOURCE_BYTES);
            state.all.sources.insert(
                key,
                Tally {
                    failures: u32::MAX,
                    lockouts: u32::MAX,
                    locked_until: u64::MAX,
                    last_failure: u64::MAX,
                },
            );
        }
        for i in 0..MAX_ENROLLMENTS {
            state.enrollments.insert(
                format!("{i:032}"),
                EnrollmentRecord {
                    file: "/".repeat(MAX_FILE_BYTES),
                    last_used: u64::MAX,
                    last_totp_step: Some(u64::MAX),
                    next_hotp_counter: Some(u64::MAX),
                    spent_recovery_codes: (u32::MAX - 99..=u32::MAX).collect(),
                },
            );
        }
        let bytes = state.to_bytes().unwrap();
        assert!(bytes.len() <= MAX_STATE_BYTES, "{}", bytes.len());
    }

    /// The fuzzing seeds: states of this format (`NAME`), and one of a newer format.
    const SEEDS: [&str; 3] = ["totp", "hotp-locked", "huge-values"];
    const FUTURE_SEED: &str = "future-version";

    fn seed_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/state")
    }

    /// The same tallies in both sets, as for a user who only ever used the store's
    /// enrollment.
    fn seed_state(last_success: u64, tallies: Tallies, record: (&str, EnrollmentRecord)) -> State {
        State {
            last_success,
            protected: tallies.clone(),
            all: tallies,
            enrollments: BTreeMap::from([(record.0.to_string(), record.1)]),
            ..State::default()
        }
    }

    /// The state each seed holds.
    fn seed(name: &str) -> State {
        match name {
            // Two sources, one with a lockout, after a TOTP success.
            "totp" => seed_state(
                1_111_111_109,
                Tallies {
                    user: Tally {
                        failures: 2,
                        ..Tally::default()
                    },
                    sources: BTreeMap::from([
                        (
                            "192.0.2.1".to_string(),
                            Tally {
                                failures: 2,
                                last_failure: 1_111_111_000,
                                ..Tally::default()
                            },
                        ),
                        (
                            "2001:db8::/64".to_string(),
                            Tally {
                                lockouts: 1,
                                locked_until: 1_111_111_169,
                                last_failure: 1_111_111_109,
                                ..Tally::default()
                            },
                        ),
                    ]),
                    ..Tallies::default()
                },
                (
                    "00112233445566778899aabbccddeeff",
                    EnrollmentRecord {
                        file: "/home/u/.otp.toml".into(),
                        last_used: 1_111_111_109,
                        last_totp_step: Some(37_037_036),
                        ..EnrollmentRecord::default()
                    },
                ),
            ),
            // The local source locked at the fuzzer's time, an HOTP counter, spent codes.
            "hotp-locked" => seed_state(
                0,
                Tallies {
                    user: Tally {
                        failures: 3,
                        ..Tally::default()
                    },
                    sources: BTreeMap::from([(
                        "local".to_string(),
                        Tally {
                            lockouts: 3,
                            locked_until: 1_700_000_240,
                            last_failure: 1_700_000_000,
                            ..Tally::default()
                        },
                    )]),
                    ..Tallies::default()
                },
                (
                    "ffeeddccbbaa99887766554433221100",
                    EnrollmentRecord {
                        file: "/home/u/.otp.toml".into(),
                        last_used: 1_690_000_000,
                        next_hotp_counter: Some(11),
                        spent_recovery_codes: vec![0, 3],
                        ..EnrollmentRecord::default()
                    },
                ),
            ),
            // Counters at their limits, an empty fingerprint and file.
            "huge-values" => {
                let huge = i64::MAX as u64;
                seed_state(
                    huge,
                    Tallies {
                        user: Tally {
                            failures: u32::MAX,
                            lockouts: u32::MAX,
                            locked_until: huge,
                            last_failure: huge,
                        },
                        overflow: Tally {
                            failures: u32::MAX,
                            ..Tally::default()
                        },
                        ..Tallies::default()
                    },
                    (
                        "",
                        EnrollmentRecord {
                            file: String::new(),
                            last_used: huge,
                            last_totp_step: Some(huge),
                            next_hotp_counter: Some(huge),
                            spent_recovery_codes: vec![],
                        },
                    ),
                )
            }
            _ => unreachable!("no seed {name}"),
        }
    }

    fn future_seed() -> Vec<u8> {
        postcard::to_allocvec(&State {
            version: STATE_VERSION + 1,
            ..busy_state()
        })
        .unwrap()
    }

    #[test]
    fn the_fuzzing_seeds_are_in_these_formats() {
        let dir = seed_dir();
        for name in SEEDS {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(State::from_bytes(&bytes), Ok(seed(name)), "{name}");
            assert_eq!(bytes, seed(name).to_bytes().unwrap(), "{name}");
        }
        let future = std::fs::read(dir.join(FUTURE_SEED)).unwrap();
        assert_eq!(future, future_seed());
        assert!(State::from_bytes(&future).is_err());
    }

    /// Writes the seeds: `cargo test --lib -- --ignored write_the_fuzzing_seeds`.
    #[test]
    #[ignore]
    fn write_the_fuzzing_seeds() {
        let dir = seed_dir();
        for name in SEEDS {
            std::fs::write(dir.join(name), seed(name).to_bytes().unwrap()).unwrap();
        }
        std::fs::write(dir.join(FUTURE_SEED), future_seed()).unwrap();
    }
}
