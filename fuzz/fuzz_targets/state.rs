//! Fuzzes the state parser (the binary record payload), and the decision on whatever
//! state it yields.
//! The state file is root's, but a torn or hand-edited one must fail closed, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pam_otp_core::decision::{decide, Limits, Verdict};
use pam_otp_core::enrollment::Enrollment;
use pam_otp_core::source::Source;
use pam_otp_core::state::{Custody, EnrollmentRef, State, MAX_SOURCES};

const NOW: u64 = 1_700_000_000;

fn enrollments() -> &'static [Enrollment; 2] {
    static ENROLLMENTS: OnceLock<[Enrollment; 2]> = OnceLock::new();
    ENROLLMENTS.get_or_init(|| {
        let secret = "secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"\n";
        [
            Enrollment::parse(secret).unwrap(),
            Enrollment::parse(&format!("type = \"hotp\"\ncounter = 3\n{secret}")).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::from_bytes(data) else {
        return;
    };
    // What the module writes must read back unchanged.
    let written = state
        .to_bytes()
        .expect("a state that parsed must be writable");
    assert_eq!(State::from_bytes(&written), Ok(state.clone()));

    let sources = [
        Source::from_rhost(""),
        Source::from_rhost("192.0.2.1"),
        Source::from_rhost("2001:db8::1"),
    ];
    for enrollment in enrollments() {
        let enrolled = EnrollmentRef::new(enrollment, "/home/fuzz/.otp.toml", Custody::User);
        // Whatever record the state holds for this enrollment, as if the fingerprint matched.
        let mut current = state.clone();
        if let Some(record) = current.enrollments.values().next().cloned() {
            current.enrollments.clear();
            current
                .enrollments
                .insert(enrolled.fingerprint.clone(), record);
        }
        for source in &sources {
            for answer in ["000000", "", "aaaa-bbbb", "12345678"] {
                let decision = decide(&enrolled, source, &current, &Limits::default(), answer, NOW);
                match decision.verdict {
                    Verdict::Locked(_) | Verdict::Replayed(_) | Verdict::NoRoom => {
                        assert_eq!(decision.state, current)
                    }
                    _ => {}
                }
                let (before, after) = (current.record(&enrolled), decision.state.record(&enrolled));
                assert!(after.last_totp_step >= before.last_totp_step);
                assert!(after.next_hotp_counter >= before.next_hotp_counter);
                assert!(decision.state.all.sources.len() <= MAX_SOURCES);
                // Whatever came in, the new state must read back exactly, or be refused
                // as unwritable (the module then fails closed); never written half.
                let Ok(next) = decision.state.to_bytes() else {
                    continue;
                };
                assert_eq!(State::from_bytes(&next), Ok(decision.state.clone()));
            }
        }
    }
});
