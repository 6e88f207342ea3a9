//! Fuzzes the enrollment file parser: `~/.otp.toml` is written by the user, so every byte is hostile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_otp_core::enrollment::{Enrollment, Kind};

fuzz_target!(|data: &[u8]| {
    // The module refuses a file that is not UTF-8 before parsing (user_file::read_enrollment).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Enrollment::parse(text) {
        Err(error) => {
            // The message goes to syslog: it must render, on one line per the logger's rules.
            let _ = error.to_string();
        }
        Ok(enrollment) => {
            // Bounds the rest of the module relies on.
            assert!((6..=8).contains(&enrollment.digits));
            assert!((10..=128).contains(&enrollment.secret.as_bytes().len()));
            assert!(enrollment.recovery_codes.len() <= 100);
            match enrollment.kind {
                Kind::Totp { period } => assert!((5..=3600).contains(&period)),
                Kind::Hotp { counter } => assert!(counter <= 1 << 60),
            }
            // What otp-setup writes must read back as the same enrollment, same fingerprint.
            let written = enrollment.to_toml();
            let again = Enrollment::parse(&written).expect("a written enrollment parses back");
            assert_eq!(again, enrollment);
            assert_eq!(again.fingerprint(), enrollment.fingerprint());
        }
    }
});
