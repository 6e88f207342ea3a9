//! Fleet mode's shared record: the keys of one person's record in Redis, the arguments of
//! the one atomic script that changes it (`fleet.lua`), and what its replies mean; no I/O.
//!
//! The host finds locally, from the secret, which TOTP step, HOTP counter or recovery code
//! an answer is; only that number crosses the network, never a code or a secret. The
//! script then accepts it only if it is newer than both the shared record and the host's
//! own floor (its file state), so neither a second host nor a Redis that lost a write
//! makes a code work twice.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::core::decision::{decide, Limits, Method, Verdict};
use crate::core::enrollment::{Enrollment, Kind};
use crate::core::state::State;

/// The script; Redis keeps it by its SHA-1 (`EVALSHA`, loaded again after `NOSCRIPT`).
pub const SCRIPT: &str = include_str!("fleet.lua");

/// How many sources the record remembers per person; the oldest go first.
pub const MAX_SOURCES: u32 = 32;

/// The source of a login with no remote host (a console, `su`, `sudo`).
pub const LOCAL_SOURCE: &str = "local";

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

/// The names of one person's three keys. They share a hash tag (the UID, as the host's
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
        }
    }

    /// The keys in the order the script expects them.
    pub fn all(&self) -> [&str; 3] {
        [&self.enrollments, &self.person, &self.sources]
    }
}

/// Whether `prefix` can start a key: printable, no braces (they would move the hash tag).
pub fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= 64
        && prefix
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '{' && c != '}')
}

/// The source a login counts against: the remote host (IPv6 by its /64, so one network
/// cannot rotate addresses), else `"local"`.
pub fn source_of(rhost: Option<&str>) -> String {
    let rhost = rhost.map(str::trim).unwrap_or("");
    if rhost.is_empty() {
        return LOCAL_SOURCE.into();
    }
    match rhost.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Err(_) => rhost.chars().take(255).collect::<String>().to_lowercase(),
    }
}

/// What the host recognised the answer as (computed locally from the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    /// Nothing acceptable: counts as a failure.
    Nothing,
    Totp(u64),
    Hotp(u64),
    /// Index into the enrollment's recovery codes, and how many were unspent before it.
    Recovery {
        index: u32,
        unspent: usize,
    },
}

/// The replay guards as the shared record holds them for one enrollment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedGuards {
    pub last_totp_step: Option<u64>,
    pub next_hotp_counter: Option<u64>,
    pub spent_recovery_codes: Vec<u32>,
}

/// One call of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<'a> {
    /// Before prompting: is this source or the person locked, and what are the guards?
    Check {
        fingerprint: &'a str,
        source: &'a str,
    },
    /// The decision: accept `candidate` if it is newer than record and floor, else count a failure.
    Decide {
        fingerprint: &'a str,
        source: &'a str,
        candidate: Candidate,
        /// The host's own file state for this enrollment.
        floor: &'a State,
        limits: &'a Limits,
    },
    /// The whole record, for `otp-admin status`.
    Status,
    /// Lift the lockouts: of one source, or (None) all of them and the user-wide one.
    Unlock { source: Option<&'a str> },
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

impl Call<'_> {
    /// The script's arguments (`ARGV`).
    pub fn arguments(&self) -> Result<Vec<String>, FleetError> {
        Ok(match self {
            Call::Check {
                fingerprint,
                source,
            } => vec![
                "check".into(),
                fingerprint.to_string(),
                source.to_string(),
                MAX_SOURCES.to_string(),
            ],
            Call::Decide {
                fingerprint,
                source,
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
            Call::Unlock { source } => vec!["unlock".into(), source.unwrap_or("").to_string()],
            Call::Reset => vec!["reset".into()],
        })
    }
}

/// A reply as Redis returns it, reduced to what the script can produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Text(String),
    List(Vec<Value>),
    Nil,
}

/// What a lockout covers (as the file state's lockouts do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// The person, from every source (the user-wide ceiling, `max_failures_user`).
    User,
    /// This source only (`max_failures`).
    Source,
    /// Every source the record could not remember (all its entries were locked).
    OtherSources,
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
    Locked {
        now: u64,
        until: u64,
        scope: LockScope,
    },
    Open {
        now: u64,
        guards: SharedGuards,
    },
    Accepted {
        now: u64,
    },
    /// A code that was good once and is used up: refused, not counted.
    Replayed {
        now: u64,
    },
    Rejected {
        now: u64,
        /// Failures of the answer's source (or, unremembered, of the person).
        source_failures: u32,
        user_failures: u32,
        /// Set when this failure started a lockout: its end and what it covers.
        locked: Option<(u64, LockScope)>,
        lockouts: u32,
    },
    Status {
        now: u64,
        record: SharedRecord,
    },
    /// Unlock or reset: how many keys or fields went.
    Changed {
        removed: u64,
    },
}

/// The whole record of one person, as `otp-admin status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRecord {
    /// (field, value) of the enrollments hash: `FINGERPRINT:step|hotp|spent|used`.
    pub enrollments: Vec<(String, String)>,
    /// The user-wide tally.
    pub user: Tally,
    /// The tally of sources the record could not remember.
    pub overflow: Tally,
    /// Per source.
    pub sources: Vec<(String, Tally)>,
}

/// Failures and lockouts of one scope, as the file state's tallies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub failures: u32,
    pub lockouts: u32,
    pub locked_until: u64,
    pub last_failure: u64,
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

fn record(
    enrollments: Vec<(String, String)>,
    person: Vec<(String, String)>,
    sources: Vec<(String, String)>,
) -> Result<SharedRecord, FleetError> {
    let person_tally = |name: &str| {
        person
            .iter()
            .find(|(k, _)| k == name)
            .map_or(Ok(Tally::default()), |(_, v)| tally(v))
    };
    Ok(SharedRecord {
        enrollments,
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
            until: unsigned(field(2))?,
            scope: scope(field(3))?,
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
                until => Some((until, scope(field(5))?)),
            };
            Ok(Reply::Rejected {
                now,
                source_failures: small(field(2))?,
                user_failures: small(field(3))?,
                locked,
                lockouts: small(field(6))?,
            })
        }
        "status" => Ok(Reply::Status {
            now,
            record: record(pairs(field(2))?, pairs(field(3))?, pairs(field(4))?)?,
        }),
        "changed" => Ok(Reply::Changed {
            removed: unsigned(field(2))?,
        }),
        other => Err(bad(format!("unknown reply {other:?}"))),
    }
}

/// What the host knows before deciding: its own floor with the shared guards laid over it
/// (the newer of each, every spent code of either).
pub fn merged_view(floor: &State, shared: &SharedGuards) -> State {
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
    // Lockouts are the shared record's to decide; the local tallies play no part.
    view.failures = 0;
    view.locked_until = 0;
    view
}

/// Which step, counter or recovery code `answer` is, judged at `now` (the host's clock,
/// which places the TOTP window) by the same rules as a file-store login: first against
/// `view`; failing that, against the codes `view` has used up, so that the script can tell
/// a replay (refused, not counted) from a wrong code (counted).
pub fn candidate(
    enrollment: &Enrollment,
    view: &State,
    limits: &Limits,
    answer: &str,
    now: u64,
) -> Candidate {
    let matched = |state: &State| match decide(enrollment, state, limits, answer, now).verdict {
        Verdict::Accepted(Method::Totp { step }) => Candidate::Totp(step),
        Verdict::Accepted(Method::Hotp { counter }) => Candidate::Hotp(counter),
        Verdict::Accepted(Method::Recovery { index, remaining }) => Candidate::Recovery {
            index,
            unspent: remaining + 1,
        },
        Verdict::Rejected { .. } | Verdict::Locked { .. } => Candidate::Nothing,
    };
    match matched(view) {
        Candidate::Nothing => {}
        fresh => return fresh,
    }
    let mut used_up = view.clone();
    used_up.last_totp_step = None;
    used_up.spent_recovery_codes.clear();
    if let (Some(next), Kind::Hotp { counter }) = (view.next_hotp_counter, enrollment.kind) {
        // The codes the app showed last: as many as one look-ahead reaches back.
        let oldest = next.saturating_sub(limits.hotp_lookahead.saturating_add(1));
        used_up.next_hotp_counter = Some(oldest.max(counter));
    }
    match matched(&used_up) {
        // Only a number the view has used up; anything else the view refused is wrong.
        Candidate::Totp(step) if Some(step) <= view.last_totp_step => Candidate::Totp(step),
        Candidate::Hotp(c) if view.next_hotp_counter.is_some_and(|next| c < next) => {
            Candidate::Hotp(c)
        }
        Candidate::Recovery { index, unspent } if view.spent_recovery_codes.contains(&index) => {
            Candidate::Recovery { index, unspent }
        }
        _ => Candidate::Nothing,
    }
}

/// The host's floor after the record accepted `candidate`: written to the local file
/// before the login succeeds, so this host never accepts it again, whatever Redis loses.
pub fn floor_after(floor: &State, candidate: Candidate, now: u64) -> State {
    let mut next = floor.clone();
    match candidate {
        Candidate::Totp(step) => next.last_totp_step = next.last_totp_step.max(Some(step)),
        Candidate::Hotp(counter) => {
            let after = counter.saturating_add(1);
            next.next_hotp_counter = Some(next.next_hotp_counter.map_or(after, |n| n.max(after)));
        }
        Candidate::Recovery { index, .. } => {
            if !next.spent_recovery_codes.contains(&index) {
                next.spent_recovery_codes.push(index);
            }
        }
        Candidate::Nothing => return next,
    }
    next.last_success = now;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totp_state() -> State {
        let e = Enrollment::parse("secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"").unwrap();
        State::fresh(&e)
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
    fn sources_group_ipv6_by_64_and_default_to_local() {
        assert_eq!(source_of(None), "local");
        assert_eq!(source_of(Some(" ")), "local");
        assert_eq!(source_of(Some("192.0.2.7")), "192.0.2.7");
        assert_eq!(source_of(Some("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(
            source_of(Some("2001:db8:1:2:aaaa::1")),
            source_of(Some("2001:db8:1:2:bbbb::9"))
        );
        assert_eq!(source_of(Some("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(source_of(Some("Host.Example")), "host.example");
    }

    #[test]
    fn decide_arguments_carry_numbers_never_codes() {
        let limits = Limits::default();
        let mut floor = totp_state();
        floor.last_totp_step = Some(100);
        let call = Call::Decide {
            fingerprint: "fp",
            source: "local",
            candidate: Candidate::Totp(101),
            floor: &floor,
            limits: &limits,
        };
        let args = call.arguments().unwrap();
        assert_eq!(
            args,
            [
                "decide", "fp", "local", "32", "totp", "101", "100", "-1", "5", "20", "60",
                "86400", "259200"
            ]
        );
        let huge = Call::Decide {
            fingerprint: "fp",
            source: "local",
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
                until: 70,
                scope: LockScope::Source
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
                locked: Some((70, LockScope::User)),
                lockouts: 1,
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
        let mut floor = totp_state();
        floor.last_totp_step = Some(50);
        floor.next_hotp_counter = Some(9);
        floor.spent_recovery_codes = vec![1];
        floor.failures = 3;
        let shared = SharedGuards {
            last_totp_step: Some(40),
            next_hotp_counter: Some(12),
            spent_recovery_codes: vec![1, 2],
        };
        let view = merged_view(&floor, &shared);
        assert_eq!(view.last_totp_step, Some(50));
        assert_eq!(view.next_hotp_counter, Some(12));
        assert_eq!(view.spent_recovery_codes, vec![1, 2]);
        assert_eq!(view.failures, 0);
    }

    #[test]
    fn the_floor_only_moves_forward() {
        let mut floor = totp_state();
        floor.last_totp_step = Some(50);
        assert_eq!(
            floor_after(&floor, Candidate::Totp(49), 1).last_totp_step,
            Some(50)
        );
        assert_eq!(
            floor_after(&floor, Candidate::Totp(51), 1).last_totp_step,
            Some(51)
        );
        assert_eq!(
            floor_after(&floor, Candidate::Hotp(4), 1).next_hotp_counter,
            Some(5)
        );
        let spent = floor_after(
            &floor,
            Candidate::Recovery {
                index: 2,
                unspent: 3,
            },
            1,
        );
        assert_eq!(spent.spent_recovery_codes, vec![2]);
        assert_eq!(floor_after(&floor, Candidate::Nothing, 1), floor);
    }
}
