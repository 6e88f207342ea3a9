//! Fuzzes the state file parser, and the decision on whatever state it yields.
//! The state file is root's, but a torn or hand-edited one must fail closed, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pam_otp::core::decision::{decide, Limits, Verdict};
use pam_otp::core::enrollment::Enrollment;
use pam_otp::core::state::State;

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
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = State::parse(text) else {
        return;
    };
    // What the module writes must read back unchanged.
    let written = state
        .to_toml()
        .expect("a state that parsed must be writable");
    assert_eq!(State::parse(&written), Ok(state.clone()), "{written:?}");

    for enrollment in enrollments() {
        // A stored state that claims this enrollment, as if the fingerprint matched.
        let stored = State {
            fingerprint: enrollment.fingerprint(),
            ..state.clone()
        };
        let current = State::for_enrollment(Some(stored.clone()), enrollment);
        assert_eq!(current, stored);
        for answer in ["000000", "", "aaaa-bbbb", "12345678"] {
            let decision = decide(enrollment, &current, &Limits::default(), answer, NOW);
            if let Verdict::Locked { .. } = decision.verdict {
                assert_eq!(decision.state, current);
            }
            assert!(decision.state.last_totp_step >= current.last_totp_step);
            assert!(decision.state.next_hotp_counter >= current.next_hotp_counter);
            // Whatever came in, the new state must read back exactly, or be refused
            // as unwritable (the module then fails closed); never written half.
            let Ok(next_text) = decision.state.to_toml() else {
                continue;
            };
            assert_eq!(
                State::parse(&next_text),
                Ok(decision.state.clone()),
                "{next_text:?}"
            );
        }
    }
});
