//! Matching a code against a window of counters: every candidate is computed and compared
//! in constant time, so the time taken says neither which counter matched nor whether any
//! did. Used by the module's decision and by otp-setup's confirmation alike.

use std::ops::RangeInclusive;

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::otp::HotpKey;

/// Which match wins when a code matches more than one counter of the window (possible with
/// short codes: 10^6 values, many steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// TOTP: the newest step, which retires every older one with it.
    Newest,
    /// HOTP: the lowest counter, which skips as few of the app's codes as possible.
    Oldest,
}

/// The counter in `candidates` whose code under `key` is `code`, if any.
pub fn matching_counter(
    key: &HotpKey,
    code: u32,
    candidates: RangeInclusive<u64>,
    prefer: Prefer,
) -> Option<u64> {
    let mut found = 0u64;
    let mut any = Choice::from(0);
    let mut consider = |counter: u64| {
        let expected = key.code(counter);
        let matched = expected.ct_eq(&code);
        // The last match considered wins: walk towards the preferred end.
        found.conditional_assign(&counter, matched);
        any |= matched;
    };
    match prefer {
        Prefer::Newest => candidates.for_each(&mut consider),
        Prefer::Oldest => candidates.rev().for_each(&mut consider),
    }
    bool::from(any).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Enrollment;

    /// RFC 4226 Appendix D: the secret "12345678901234567890" and its codes for counters 0..=9.
    const RFC4226_CODES: [u32; 10] = [
        755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
    ];

    fn rfc4226() -> Enrollment {
        Enrollment::parse("type = \"hotp\"\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"").unwrap()
    }

    #[test]
    fn finds_each_rfc_counter_in_the_window_and_nothing_outside() {
        let key = rfc4226().hotp_key();
        for (counter, &code) in RFC4226_CODES.iter().enumerate() {
            let counter = counter as u64;
            assert_eq!(
                matching_counter(&key, code, 0..=9, Prefer::Oldest),
                Some(counter)
            );
            assert_eq!(
                matching_counter(&key, code, 0..=9, Prefer::Newest),
                Some(counter)
            );
            if counter > 0 {
                assert_eq!(
                    matching_counter(&key, code, 0..=counter - 1, Prefer::Oldest),
                    None
                );
            }
            assert_eq!(
                matching_counter(&key, code, counter + 1..=20, Prefer::Newest),
                None
            );
        }
    }

    #[test]
    fn a_code_that_matches_twice_takes_the_preferred_end() {
        // Find a 6-digit code repeated within the first counters of the RFC secret, so the
        // preference is observable. The codes are made here, with RFC 4226 section 5.3's
        // dynamic truncation written out, not by the crate's `hotp`.
        let code_at = |counter: u64| -> u32 {
            use hmac::{Hmac, KeyInit, Mac};
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"12345678901234567890").unwrap();
            mac.update(&counter.to_be_bytes());
            let digest = mac.finalize().into_bytes();
            let offset = usize::from(digest[19] & 0x0f);
            let bits = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap());
            (bits & 0x7fff_ffff) % 1_000_000
        };
        assert_eq!(
            code_at(0),
            RFC4226_CODES[0],
            "the test's own HOTP matches the RFC"
        );
        let key = rfc4226().hotp_key();
        let mut seen = std::collections::HashMap::new();
        // A repeat is expected after about 1250 counters (birthday bound for 10^6 codes).
        let (first, second) = (0..1_000_000u64)
            .find_map(|c| seen.insert(code_at(c), c).map(|earlier| (earlier, c)))
            .expect("a repeated code");
        let code = code_at(first);
        assert_eq!(
            matching_counter(&key, code, first..=second, Prefer::Oldest),
            Some(first)
        );
        assert_eq!(
            matching_counter(&key, code, first..=second, Prefer::Newest),
            Some(second)
        );
    }
}
