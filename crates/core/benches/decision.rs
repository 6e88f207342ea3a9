//! Micro-benchmarks of the pure decision (`decision::decide`): how its cost grows with
//! the TOTP window and the HOTP look-ahead. Worst case: a wrong code, so every
//! candidate step or counter is computed. `cargo bench --bench decision`.
//!
//! Under `cargo test` (no `--bench` argument) each case runs once and must reject the
//! wrong code (the worst case really is measured), so the benchmark cannot rot.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use pam_otp_core::decision::{decide, Limits, Verdict};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::source::Source;
use pam_otp_core::state::{Custody, EnrollmentRef, State};

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const NOW: u64 = 1_700_000_000;

struct Case {
    group: &'static str,
    /// Window (TOTP) or look-ahead (HOTP).
    size: u64,
    enrollment: Enrollment,
    limits: Limits,
    /// Candidates computed for a wrong code.
    candidates: u64,
}

fn cases() -> Vec<Case> {
    let totp = Enrollment::parse(&format!("secret = \"{SECRET}\"")).expect("TOTP enrollment");
    let hotp = Enrollment::parse(&format!("type = \"hotp\"\nsecret = \"{SECRET}\""))
        .expect("HOTP enrollment");
    let lockout_off = Limits {
        max_failures: 0,
        ..Limits::default()
    };
    let mut cases = Vec::new();
    for window in [1, 10, 100] {
        cases.push(Case {
            group: "totp_wrong_code_window",
            size: window,
            enrollment: totp.clone(),
            limits: Limits {
                window,
                ..lockout_off
            },
            candidates: 2 * window + 1,
        });
    }
    for lookahead in [10, 100, 1000] {
        cases.push(Case {
            group: "hotp_wrong_code_lookahead",
            size: lookahead,
            enrollment: hotp.clone(),
            limits: Limits {
                hotp_lookahead: lookahead,
                ..lockout_off
            },
            candidates: lookahead + 1,
        });
    }
    cases
}

/// Where the enrollment would be read from (only recorded, never opened).
const FILE: &str = "/home/bench/.otp.toml";

/// A login without a remote host.
fn local() -> Source {
    Source::from_rhost("")
}

/// A six-digit code `decide` rejects for every case: wrong for every candidate.
fn wrong_code(cases: &[Case]) -> String {
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|code| {
            cases.iter().all(|c| {
                let state = State::default();
                let enrolled = EnrollmentRef::new(&c.enrollment, FILE, Custody::User);
                matches!(
                    decide(&enrolled, &local(), &state, &c.limits, code, NOW).verdict,
                    Verdict::Rejected { .. }
                )
            })
        })
        .expect("some six-digit code is wrong for every candidate")
}

fn bench(c: &mut Criterion, cases: &[Case], wrong: &str) {
    for group_name in ["totp_wrong_code_window", "hotp_wrong_code_lookahead"] {
        let mut group = c.benchmark_group(group_name);
        for case in cases.iter().filter(|c| c.group == group_name) {
            let state = State::default();
            let enrolled = EnrollmentRef::new(&case.enrollment, FILE, Custody::User);
            let source = local();
            group.throughput(Throughput::Elements(case.candidates));
            group.bench_with_input(BenchmarkId::from_parameter(case.size), case, |b, case| {
                b.iter(|| {
                    decide(
                        black_box(&enrolled),
                        black_box(&source),
                        black_box(&state),
                        black_box(&case.limits),
                        black_box(wrong),
                        black_box(NOW),
                    )
                })
            });
        }
        group.finish();
    }
}

fn main() {
    let cases = cases();
    let wrong = wrong_code(&cases);
    if std::env::args().any(|a| a == "--bench") {
        let mut criterion = Criterion::default().configure_from_args();
        bench(&mut criterion, &cases, &wrong);
        criterion.final_summary();
    } else {
        // `cargo test` passes libtest's arguments, which Criterion would refuse: check
        // instead that every case really takes the worst-case path.
        for case in &cases {
            let state = State::default();
            let enrolled = EnrollmentRef::new(&case.enrollment, FILE, Custody::User);
            let d = decide(&enrolled, &local(), &state, &case.limits, &wrong, NOW);
            assert!(
                matches!(d.verdict, Verdict::Rejected { .. }),
                "{} {}: {:?}",
                case.group,
                case.size,
                d.verdict
            );
        }
        println!(
            "decision benchmark: {} cases reject the wrong code (use `cargo bench --bench decision` to measure)",
            cases.len()
        );
    }
}
