//! Fleet mode's shared record: the keys of one person's record in Redis, the arguments of
//! the one atomic script that changes it (`fleet.lua`), and what its replies mean; no I/O.
//!
//! The host finds locally, from the secret, which TOTP step, HOTP counter or recovery code
//! an answer is; only that number crosses the network, never a code or a secret. The
//! script then accepts it only if it is newer than both the shared record and the host's
//! own floor (its file state), so neither a second host nor a Redis that lost a write
//! makes a code work twice.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{decide, Limits, Method, Replay, Verdict};
use crate::source::Source;
use crate::state::{
    Custody, EnrollmentRecord, EnrollmentRef, Lock, LockScope, State, Tallies, Tally, MAX_SOURCES,
};

/// The script; Redis keeps it by its SHA-1 (`EVALSHA`, loaded again after `NOSCRIPT`).
pub const SCRIPT: &str = include_str!("fleet.lua");

/// Lua numbers are doubles: above this a step or counter is not compared exactly.
const LARGEST_EXACT: u64 = 1 << 53;

/// Why the shared record could not be used; every one refuses the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// The script answered something this version does not understand.
    Reply(String),
    /// A number the script cannot compare exactly.
    OutOfRange(u64),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetError::Reply(why) => write!(f, "unexpected reply from the fleet script: {why}"),
            FleetError::OutOfRange(n) => write!(
                f,
                "counter {n} is beyond what the shared record compares exactly (2^53)"
            ),
        }
    }
}

impl std::error::Error for FleetError {}

/// The names of one person's five keys. They share a hash tag (the UID, as the host's
/// file state is keyed; digits cannot end the tag early), which keeps them in one slot of
/// a Redis Cluster. Every host of a fleet must agree on UIDs, as NFS homes need anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKeys {
    /// Replay guards per enrollment fingerprint.
    pub enrollments: String,
    /// The user-wide failure tally and lockout.
    pub person: String,
    /// Failure tallies and lockouts per source.
    pub sources: String,
    /// `person` for the failures with the administrator's enrollments.
    pub protected_person: String,
    /// `sources` for the failures with the administrator's enrollments.
    pub protected_sources: String,
}

impl RecordKeys {
    /// The keys of the person with `uid` under `prefix` (which tells fleets sharing one
    /// Redis apart).
    pub fn new(prefix: &str, uid: u32) -> RecordKeys {
        let tag = format!("uid-{uid}");
        let key = |part: &str| format!("{prefix}{{{tag}}}:{part}");
        RecordKeys {
            enrollments: key("enrollments"),
            person: key("person"),
            sources: key("sources"),
            protected_person: key("protected-person"),
            protected_sources: key("protected-sources"),
        }
    }

    /// The keys in the order the script expects them.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.enrollments,
            &self.person,
            &self.sources,
            &self.protected_person,
            &self.protected_sources,
        ]
    }
}

/// Whether `prefix` can start a key: printable, no braces (they would move the hash tag).
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
}

/// What the host recognised the answer as (computed locally from the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// Nothing acceptable: counts as a failure.
    Nothing,
    /// This TOTP time step.
    Totp(u64),
    /// This HOTP counter.
    Hotp(u64),
    /// A recovery code.
    Recovery {
        /// Its index into the enrollment's recovery codes.
        index: u32,
        /// How many were unspent before it.
        unspent: usize,
    },
}

/// The replay guards as the shared record holds them for one enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedGuards {
    /// TOTP: the newest step accepted through the fleet.
    pub last_totp_step: Option<u64>,
    /// HOTP: the smallest counter still acceptable.
    pub next_hotp_counter: Option<u64>,
    /// Indexes of the recovery codes spent through the fleet.
    pub spent_recovery_codes: Vec<u32>,
}

/// One call of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<'a> {
    /// Before prompting: is this source or the person locked, and what are the guards?
    Check {
        /// The enrollment's fingerprint.
        fingerprint: &'a str,
        /// Where the login comes from.
        source: &'a Source,
        /// Who can change the enrollment: which tallies guard it.
        custody: Custody,
    },
    /// The decision: accept `candidate` if it is newer than record and floor, else count a failure.
    Decide {
        /// The enrollment's fingerprint.
        fingerprint: &'a str,
        /// Where the login comes from.
        source: &'a Source,
        /// Who can change the enrollment: which tallies guard it.
        custody: Custody,
        /// What the host recognised the answer as.
        candidate: Candidate,
        /// The host's own record of this enrollment (its file state).
        floor: &'a EnrollmentRecord,
        /// The lockout policy.
        limits: &'a Limits,
    },
    /// The whole record, for `otp-admin status`.
    Status,
    /// Lift the lockouts: of one source, or (None) all of them and the user-wide one.
    Unlock {
        /// The source to unlock; `None`: every source and the user-wide lock.
        source: Option<&'a Source>,
    },
    /// Drop the whole record (guards too), for `otp-admin reset`.
    Reset,
}

fn exact(n: u64) -> Result<String, FleetError> {
    if n >= LARGEST_EXACT {
        return Err(FleetError::OutOfRange(n));
    }
    Ok(n.to_string())
}

fn optional(n: Option<u64>) -> Result<String, FleetError> {
    n.map_or(Ok("-1".into()), exact)
}

/// Seconds after which the tallies of a person nobody tries any more expire: well past
/// the longest lockout, so expiry never shortens one.
fn idle_seconds(limits: &Limits) -> u64 {
    limits.max_lockout.saturating_mul(2).saturating_add(86_400)
}

/// The script's name for a custody.
fn custody_argument(custody: Custody) -> &'static str {
    match custody {
        Custody::User => "user",
        Custody::Administrator => "administrator",
    }
}

impl Call<'_> {
    /// The script's arguments (`ARGV`).
    pub fn arguments(&self) -> Result<Vec<String>, FleetError> {
        Ok(match self {
            Call::Check {
                fingerprint,
                source,
                custody,
            } => vec![
                "check".into(),
                fingerprint.to_string(),
                source.as_str().to_string(),
                MAX_SOURCES.to_string(),
                custody_argument(*custody).into(),
            ],
            Call::Decide {
                fingerprint,
                source,
                custody,
                candidate,
                floor,
                limits,
            } => {
                let (kind, value) = match *candidate {
                    Candidate::Nothing => ("none", "0".to_string()),
                    Candidate::Totp(step) => ("totp", exact(step)?),
                    Candidate::Hotp(counter) => ("hotp", exact(counter)?),
                    Candidate::Recovery { index, .. } => ("recovery", index.to_string()),
                };
                vec![
                    "decide".into(),
                    fingerprint.to_string(),
                    source.to_string(),
                    MAX_SOURCES.to_string(),
                    custody_argument(*custody).into(),
                    kind.into(),
                    value,
                    optional(floor.last_totp_step)?,
                    optional(floor.next_hotp_counter)?,
                    limits.max_failures.to_string(),
                    limits.max_failures_user.to_string(),
                    limits.lockout.to_string(),
                    limits.max_lockout.to_string(),
                    idle_seconds(limits).to_string(),
                ]
            }
            Call::Status => vec!["status".into()],
            Call::Unlock { source } => vec![
                "unlock".into(),
                source.map_or("", Source::as_str).to_string(),
            ],
            Call::Reset => vec!["reset".into()],
        })
    }
}

/// A reply as Redis returns it, reduced to what the script can produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// An integer reply.
    Int(i64),
    /// A bulk or status string.
    Text(String),
    /// An array.
    List(Vec<Value>),
    /// A nil reply.
    Nil,
}

fn scope(value: Option<&Value>) -> Result<LockScope, FleetError> {
    match text(value)?.as_str() {
        "user" => Ok(LockScope::User),
        "source" => Ok(LockScope::Source),
        "others" => Ok(LockScope::OtherSources),
        other => Err(bad(format!("lock scope {other:?}"))),
    }
}

/// What the script decided. `now` is the server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The person or this source is locked: nothing was looked at.
    Locked {
        /// The server's time.
        now: u64,
        /// The lockout in force.
        lock: Lock,
    },
    /// Not locked (the pre-prompt check): the shared guards of the enrollment.
    Open {
        /// The server's time.
        now: u64,
        /// The enrollment's guards in the shared record.
        guards: SharedGuards,
    },
    /// The candidate was newer than record and floor; the record retired it.
    Accepted {
        /// The server's time.
        now: u64,
    },
    /// A code that was good once and is used up: refused, not counted.
    Replayed {
        /// The server's time.
        now: u64,
    },
    /// Nothing acceptable: counted as a failure.
    Rejected {
        /// The server's time.
        now: u64,
        /// Failures of the answer's source (or, unremembered, of the person).
        source_failures: u32,
        /// Failures of the person from all sources.
        user_failures: u32,
        /// Set when this failure started a lockout.
        locked: Option<Lock>,
    },
    /// The whole record (`otp-admin status`).
    Status {
        /// The server's time.
        now: u64,
        /// The record.
        record: SharedRecord,
    },
    /// Unlock or reset: how many keys or fields went.
    Changed {
        /// Keys or fields removed.
        removed: u64,
    },
}

/// The whole record of one person, as `otp-admin status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRecord {
    /// (field, value) of the enrollments hash: `FINGERPRINT:step|hotp|spent|used`.
    pub enrollments: Vec<(String, String)>,
    /// The failures with every enrollment.
    pub all: Tallies,
    /// The failures with the administrator's enrollments (see `State::protected`).
    pub protected: Tallies,
}

fn bad(why: impl Into<String>) -> FleetError {
    FleetError::Reply(why.into())
}

fn int(value: Option<&Value>) -> Result<i64, FleetError> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Text(t)) => t.parse().map_err(|_| bad(format!("{t:?} is not a number"))),
        other => Err(bad(format!("expected a number, got {other:?}"))),
    }
}

fn unsigned(value: Option<&Value>) -> Result<u64, FleetError> {
    let n = int(value)?;
    u64::try_from(n).map_err(|_| bad(format!("{n} is negative")))
}

fn small(value: Option<&Value>) -> Result<u32, FleetError> {
    let n = unsigned(value)?;
    u32::try_from(n).map_err(|_| bad(format!("{n} is too large")))
}

/// A guard stored as -1 for "none yet".
fn guard(value: Option<&Value>) -> Result<Option<u64>, FleetError> {
    let n = int(value)?;
    Ok((n >= 0).then_some(n as u64))
}

fn text(value: Option<&Value>) -> Result<String, FleetError> {
    match value {
        Some(Value::Text(t)) => Ok(t.clone()),
        Some(Value::Int(n)) => Ok(n.to_string()),
        Some(Value::Nil) => Ok(String::new()),
        other => Err(bad(format!("expected text, got {other:?}"))),
    }
}

fn pairs(value: Option<&Value>) -> Result<Vec<(String, String)>, FleetError> {
    let Some(Value::List(items)) = value else {
        return Err(bad(format!("expected a hash, got {value:?}")));
    };
    items
        .chunks(2)
        .map(|pair| Ok((text(pair.first())?, text(pair.get(1))?)))
        .collect()
}

fn spent_list(packed: &str) -> Result<Vec<u32>, FleetError> {
    packed
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(format!("spent index {s:?}"))))
        .collect()
}

fn tally(packed: &str) -> Result<Tally, FleetError> {
    let numbers: Vec<u64> = packed
        .split(':')
        .map(|n| n.parse().map_err(|_| bad(format!("tally {packed:?}"))))
        .collect::<Result<_, _>>()?;
    let [failures, lockouts, locked_until, last_failure] = numbers[..] else {
        return Err(bad(format!("tally {packed:?}")));
    };
    let clamp = |n: u64| n.min(u32::MAX.into()) as u32;
    Ok(Tally {
        failures: clamp(failures),
        lockouts: clamp(lockouts),
        locked_until,
        last_failure,
    })
}

fn tallies(
    person: Vec<(String, String)>,
    sources: Vec<(String, String)>,
) -> Result<Tallies, FleetError> {
    let person_tally = |name: &str| {
        person
            .iter()
            .find(|(k, _)| k == name)
            .map_or(Ok(Tally::default()), |(_, v)| tally(v))
    };
    Ok(Tallies {
        user: person_tally("user")?,
        overflow: person_tally("overflow")?,
        sources: sources
            .into_iter()
            .map(|(name, packed)| Ok((name, tally(&packed)?)))
            .collect::<Result<_, FleetError>>()?,
    })
}

/// Reads the script's reply.
pub fn parse_reply(value: &Value) -> Result<Reply, FleetError> {
    let Value::List(items) = value else {
        return Err(bad(format!("expected a list, got {value:?}")));
    };
    let field = |i: usize| items.get(i);
    let now = unsigned(field(1))?;
    match text(field(0))?.as_str() {
        "locked" => Ok(Reply::Locked {
            now,
            lock: Lock {
                until: unsigned(field(2))?,
                scope: scope(field(3))?,
            },
        }),
        "open" => Ok(Reply::Open {
            now,
            guards: SharedGuards {
                last_totp_step: guard(field(2))?,
                next_hotp_counter: guard(field(3))?,
                spent_recovery_codes: spent_list(&text(field(4))?)?,
            },
        }),
        "accepted" => Ok(Reply::Accepted { now }),
        "replayed" => Ok(Reply::Replayed { now }),
        "rejected" => {
            let locked_until = unsigned(field(4))?;
            let locked = match locked_until {
                0 => None,
                until => Some(Lock {
                    until,
                    scope: scope(field(5))?,
                }),
            };
            Ok(Reply::Rejected {
                now,
                source_failures: small(field(2))?,
                user_failures: small(field(3))?,
                locked,
            })
        }
        "status" => Ok(Reply::Status {
            now,
            record: SharedRecord {
                enrollments: pairs(field(2))?,
                all: tallies(pairs(field(3))?, pairs(field(4))?)?,
                protected: tallies(pairs(field(5))?, pairs(field(6))?)?,
            },
        }),
        "changed" => Ok(Reply::Changed {
            removed: unsigned(field(2))?,
        }),
        other => Err(bad(format!("unknown reply {other:?}"))),
    }
}

/// What the host knows before deciding: its own record of the enrollment (the floor)
/// with the shared guards laid over it (the newer of each, every spent code of either).
pub fn merged_view(floor: &EnrollmentRecord, shared: &SharedGuards) -> EnrollmentRecord {
    let mut view = floor.clone();
    view.last_totp_step = floor.last_totp_step.max(shared.last_totp_step);
    view.next_hotp_counter = match (floor.next_hotp_counter, shared.next_hotp_counter) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    for &index in &shared.spent_recovery_codes {
        if !view.spent_recovery_codes.contains(&index) {
            view.spent_recovery_codes.push(index);
        }
    }
    view
}

/// How the host judged an answer against the merged view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// For the script to decide: a fresh step, counter or recovery code, or nothing
    /// (a failure to count).
    Candidate(Candidate),
    /// A code the view has used up: refused here, not counted, the record not asked.
    Replayed(Replay),
}

/// Which step, counter or recovery code `answer` is, judged at `now` (the host's clock,
/// which places the TOTP window) by the same rules as a file-store login against `view`
/// (lockouts are the shared record's to decide, so none play a part here).
pub fn judge(
    enrolled: &EnrollmentRef,
    source: &Source,
    view: &EnrollmentRecord,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Judgement {
    let mut state = State::default();
    state
        .enrollments
        .insert(enrolled.fingerprint.clone(), view.clone());
    match decide(enrolled, source, &state, limits, answer, now).verdict {
        Verdict::Accepted(Method::Totp { step }) => Judgement::Candidate(Candidate::Totp(step)),
        Verdict::Accepted(Method::Hotp { counter }) => {
            Judgement::Candidate(Candidate::Hotp(counter))
        }
        Verdict::Accepted(Method::Recovery { index, remaining }) => {
            Judgement::Candidate(Candidate::Recovery {
                index,
                unspent: remaining + 1,
            })
        }
        Verdict::Replayed(replay) => Judgement::Replayed(replay),
        Verdict::Rejected { .. } | Verdict::Locked(_) | Verdict::NoRoom => {
            Judgement::Candidate(Candidate::Nothing)
        }
    }
}

/// The host's floor after the record accepted `candidate`: written to the local file
/// before the login succeeds, so this host never accepts it again, whatever Redis loses.
/// `None` if the floor has no room for this enrollment's record (see `State::accept`).
pub fn floor_after(
    floor: &State,
    enrolled: &EnrollmentRef,
    candidate: Candidate,
    now: u64,
) -> Option<State> {
    let mut record = floor.record(enrolled);
    match candidate {
        Candidate::Totp(step) => record.last_totp_step = record.last_totp_step.max(Some(step)),
        Candidate::Hotp(counter) => {
            let after = counter.saturating_add(1);
            record.next_hotp_counter =
                Some(record.next_hotp_counter.map_or(after, |n| n.max(after)));
        }
        Candidate::Recovery { index, .. } => {
            if !record.spent_recovery_codes.contains(&index) {
                record.spent_recovery_codes.push(index);
            }
        }
        Candidate::Nothing => return Some(floor.clone()),
    }
    let mut next = floor.clone();
    next.accept(enrolled, record, now).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Enrollment;

    fn totp_enrollment() -> Enrollment {
        Enrollment::parse("secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"").unwrap()
    }

    #[test]
    fn keys_share_a_tag_and_prefixes_cannot_move_it() {
        let keys = RecordKeys::new("otp:", 1000);
        assert_eq!(keys.person, "otp:{uid-1000}:person");
        for key in keys.all() {
            assert!(key.starts_with("otp:{uid-1000}:"), "{key}");
        }
        assert!(is_valid_prefix("pam-otp:site-a:"));
        assert!(!is_valid_prefix("x{y}"));
        assert!(!is_valid_prefix("with space"));
    }

    #[test]
    fn decide_arguments_carry_numbers_never_codes() {
        let limits = Limits::default();
        let local = Source::from_rhost("");
        let floor = EnrollmentRecord {
            last_totp_step: Some(100),
            ..EnrollmentRecord::default()
        };
        let call = Call::Decide {
            fingerprint: "fp",
            source: &local,
            custody: Custody::User,
            candidate: Candidate::Totp(101),
            floor: &floor,
            limits: &limits,
        };
        let args = call.arguments().unwrap();
        assert_eq!(
            args,
            [
                "decide", "fp", "local", "32", "user", "totp", "101", "100", "-1", "5", "20", "60",
                "86400", "259200"
            ]
        );
        let huge = Call::Decide {
            fingerprint: "fp",
            source: &local,
            custody: Custody::User,
            candidate: Candidate::Hotp(1 << 60),
            floor: &floor,
            limits: &limits,
        };
        assert_eq!(huge.arguments(), Err(FleetError::OutOfRange(1 << 60)));
    }

    #[test]
    fn replies_are_read_and_nonsense_is_an_error() {
        let t = |s: &str| Value::Text(s.into());
        let locked = Value::List(vec![
            t("locked"),
            Value::Int(10),
            Value::Int(70),
            t("source"),
        ]);
        assert_eq!(
            parse_reply(&locked),
            Ok(Reply::Locked {
                now: 10,
                lock: Lock {
                    until: 70,
                    scope: LockScope::Source
                }
            })
        );
        let open = Value::List(vec![
            t("open"),
            Value::Int(10),
            Value::Int(-1),
            Value::Int(7),
            t("0,3"),
        ]);
        assert_eq!(
            parse_reply(&open),
            Ok(Reply::Open {
                now: 10,
                guards: SharedGuards {
                    last_totp_step: None,
                    next_hotp_counter: Some(7),
                    spent_recovery_codes: vec![0, 3]
                }
            })
        );
        let rejected = Value::List(vec![
            t("rejected"),
            Value::Int(10),
            Value::Int(2),
            Value::Int(9),
            Value::Int(70),
            t("user"),
            Value::Int(1),
        ]);
        assert_eq!(
            parse_reply(&rejected),
            Ok(Reply::Rejected {
                now: 10,
                source_failures: 2,
                user_failures: 9,
                locked: Some(Lock {
                    until: 70,
                    scope: LockScope::User
                }),
            })
        );
        for nonsense in [
            Value::Nil,
            Value::List(vec![]),
            Value::List(vec![t("accepted")]),
            Value::List(vec![t("maybe"), Value::Int(1)]),
            Value::List(vec![t("locked"), Value::Int(1), Value::Int(2), t("moon")]),
            Value::List(vec![
                t("open"),
                Value::Int(1),
                Value::Int(1),
                Value::Int(1),
                t("x"),
            ]),
        ] {
            assert!(parse_reply(&nonsense).is_err(), "{nonsense:?}");
        }
    }

    #[test]
    fn the_view_takes_the_newer_guard_and_every_spent_code() {
        let floor = EnrollmentRecord {
            last_totp_step: Some(50),
            next_hotp_counter: Some(9),
            spent_recovery_codes: vec![1],
            ..EnrollmentRecord::default()
        };
        let shared = SharedGuards {
            last_totp_step: Some(40),
            next_hotp_counter: Some(12),
            spent_recovery_codes: vec![1, 2],
        };
        let view = merged_view(&floor, &shared);
        assert_eq!(view.last_totp_step, Some(50));
        assert_eq!(view.next_hotp_counter, Some(12));
        assert_eq!(view.spent_recovery_codes, vec![1, 2]);
    }

    #[test]
    fn a_used_up_step_is_a_replay_and_a_fresh_one_a_candidate() {
        let e = totp_enrollment();
        let enrolled = EnrollmentRef::new(&e, "/f", Custody::User);
        let local = Source::from_rhost("");
        let now = 1_700_000_000;
        let fresh = EnrollmentRecord::default();
        let limits = Limits::default();
        // The code comes from oathtool (an independent implementation), never from here.
        let out = std::process::Command::new("oathtool")
            .args(["--totp", "-b", "--now=@1700000000"])
            .arg("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
            .output()
            .expect("oathtool (Debian package oathtool) must be installed");
        let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(
            judge(&enrolled, &local, &fresh, &limits, &code, now),
            Judgement::Candidate(Candidate::Totp(now / 30))
        );
        let step = now / 30;
        let used = EnrollmentRecord {
            last_totp_step: Some(step),
            ..EnrollmentRecord::default()
        };
        assert_eq!(
            judge(&enrolled, &local, &used, &limits, &code, now),
            Judgement::Replayed(Replay::Code)
        );
        assert_eq!(
            judge(&enrolled, &local, &fresh, &limits, "not a code", now),
            Judgement::Candidate(Candidate::Nothing)
        );
    }

    #[test]
    fn the_floor_only_moves_forward() {
        let e = totp_enrollment();
        let enrolled = EnrollmentRef::new(&e, "/f", Custody::User);
        let mut floor = State::default();
        assert!(floor.accept(
            &enrolled,
            EnrollmentRecord {
                last_totp_step: Some(50),
                ..EnrollmentRecord::default()
            },
            1
        ));
        let step_after = |c| {
            floor_after(&floor, &enrolled, c, 2)
                .unwrap()
                .record(&enrolled)
        };
        assert_eq!(step_after(Candidate::Totp(49)).last_totp_step, Some(50));
        assert_eq!(step_after(Candidate::Totp(51)).last_totp_step, Some(51));
        assert_eq!(step_after(Candidate::Hotp(4)).next_hotp_counter, Some(5));
        let spent = step_after(Candidate::Recovery {
            index: 2,
            unspent: 3,
        });
        assert_eq!(spent.spent_recovery_codes, vec![2]);
        assert_eq!(
            floor_after(&floor, &enrolled, Candidate::Nothing, 2),
            Some(floor.clone())
        );
    }
}
