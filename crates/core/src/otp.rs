//! The one-time-password arithmetic of RFC 4226 (HOTP) and RFC 6238 (TOTP); no I/O.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// The HMAC hash behind the codes (RFC 6238 §1.2 allows SHA-1, SHA-256, SHA-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Algorithm {
    /// HMAC-SHA-1, what most apps use and the default.
    #[default]
    #[serde(rename = "SHA1")]
    Sha1,
    /// HMAC-SHA-256.
    #[serde(rename = "SHA256")]
    Sha256,
    /// HMAC-SHA-512.
    #[serde(rename = "SHA512")]
    Sha512,
}

impl Algorithm {
    /// The name used in `~/.otp.toml` and in `otpauth://` URIs.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Parses a name as written in files and on command lines (case-insensitive, `SHA-1` too).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// The fewest digits a code may have (RFC 4226 §5.3).
pub const MIN_DIGITS: u32 = 6;
/// The most digits a code may have.
pub const MAX_DIGITS: u32 = 8;

/// An HMAC keyed for one enrollment, from which the code of any counter is computed.
/// Keying hashes the key's two pad blocks; a window of many counters does that once and
/// clones the keyed state for each counter. Those states are as good as the key: the
/// hashes' cores wipe them when dropped (their `zeroize` feature).
#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

/// HOTP of RFC 4226 §5.3 for one key and code length, for any counter.
#[derive(Clone)]
pub struct HotpKey {
    mac: KeyedMac,
    digits: u32,
}

/// Shows the code length only: the keyed state is as good as the secret.
impl std::fmt::Debug for HotpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotpKey")
            .field("digits", &self.digits)
            .finish_non_exhaustive()
    }
}

impl HotpKey {
    /// Keys the HMAC with `key` once.
    pub fn new(algorithm: Algorithm, key: &[u8], digits: u32) -> HotpKey {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        fn keyed<M: Mac + KeyInit>(key: &[u8]) -> M {
            <M as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
        }
        let mac = match algorithm {
            Algorithm::Sha1 => KeyedMac::Sha1(keyed(key)),
            Algorithm::Sha256 => KeyedMac::Sha256(keyed(key)),
            Algorithm::Sha512 => KeyedMac::Sha512(keyed(key)),
        };
        HotpKey { mac, digits }
    }

    /// HOTP(K, C): dynamic truncation of HMAC(K, C), modulo 10^digits.
    pub fn code(&self, counter: u64) -> u32 {
        fn digest<M: Mac + Clone>(
            mac: &M,
            counter: u64,
            truncate: impl FnOnce(&[u8]) -> u32,
        ) -> u32 {
            let mut mac = mac.clone();
            mac.update(&counter.to_be_bytes());
            truncate(&mac.finalize().into_bytes())
        }
        let truncate = |digest: &[u8]| -> u32 {
            // The last nibble picks the offset; every supported digest is at least 20 bytes.
            let offset = usize::from(digest[digest.len() - 1] & 0x0f);
            let binary = u32::from_be_bytes([
                digest[offset] & 0x7f,
                digest[offset + 1],
                digest[offset + 2],
                digest[offset + 3],
            ]);
            binary % 10u32.pow(self.digits.clamp(MIN_DIGITS, MAX_DIGITS))
        };
        match &self.mac {
            KeyedMac::Sha1(mac) => digest(mac, counter, truncate),
            KeyedMac::Sha256(mac) => digest(mac, counter, truncate),
            KeyedMac::Sha512(mac) => digest(mac, counter, truncate),
        }
    }
}

/// HOTP(K, C) of RFC 4226 §5.3 for a single counter.
pub fn hotp(algorithm: Algorithm, key: &[u8], counter: u64, digits: u32) -> u32 {
    HotpKey::new(algorithm, key, digits).code(counter)
}

/// The TOTP time step `T = floor((now - T0) / X)` of RFC 6238 §4.2, with `T0 = 0`.
pub fn totp_step(unix_time: u64, period: u64) -> u64 {
    unix_time / period.max(1)
}

/// TOTP is HOTP with the time step as counter (RFC 6238 §4.2).
pub fn totp(algorithm: Algorithm, key: &[u8], unix_time: u64, period: u64, digits: u32) -> u32 {
    hotp(algorithm, key, totp_step(unix_time, period), digits)
}

/// Writes a code with its leading zeros, as authenticator apps show it.
pub fn format_code(code: u32, digits: u32) -> String {
    format!("{:0width$}", code, width = digits as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4226_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn the_keyed_states_are_wiped_when_dropped() {
        // Compiles only while each hash core clears its state in Drop: the keyed HMAC
        // holds two such cores per enrollment, derived from the key.
        fn wiped_on_drop<T: hmac::digest::zeroize::ZeroizeOnDrop>() {}
        use hmac::digest::block_api::CoreProxy;
        wiped_on_drop::<<sha1::Sha1 as CoreProxy>::Core>();
        wiped_on_drop::<<sha2::Sha256 as CoreProxy>::Core>();
        wiped_on_drop::<<sha2::Sha512 as CoreProxy>::Core>();
    }

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(Algorithm::Sha1, RFC4226_KEY, counter as u64, 6), *want);
        }
    }

    // RFC 6238 Appendix B: the seed is 20, 32 and 64 bytes for SHA-1, SHA-256, SHA-512.
    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc6238_appendix_b_vectors() {
        let rows: [(u64, &str, Algorithm); 18] = [
            (59, "94287082", Algorithm::Sha1),
            (59, "46119246", Algorithm::Sha256),
            (59, "90693936", Algorithm::Sha512),
            (1111111109, "07081804", Algorithm::Sha1),
            (1111111109, "68084774", Algorithm::Sha256),
            (1111111109, "25091201", Algorithm::Sha512),
            (1111111111, "14050471", Algorithm::Sha1),
            (1111111111, "67062674", Algorithm::Sha256),
            (1111111111, "99943326", Algorithm::Sha512),
            (1234567890, "89005924", Algorithm::Sha1),
            (1234567890, "91819424", Algorithm::Sha256),
            (1234567890, "93441116", Algorithm::Sha512),
            (2000000000, "69279037", Algorithm::Sha1),
            (2000000000, "90698825", Algorithm::Sha256),
            (2000000000, "38618901", Algorithm::Sha512),
            (20000000000, "65353130", Algorithm::Sha1),
            (20000000000, "77737706", Algorithm::Sha256),
            (20000000000, "47863826", Algorithm::Sha512),
        ];
        for (time, want, algorithm) in rows {
            let seed = match algorithm {
                Algorithm::Sha1 => SEED_SHA1,
                Algorithm::Sha256 => SEED_SHA256,
                Algorithm::Sha512 => SEED_SHA512,
            };
            let code = totp(algorithm, seed, time, 30, 8);
            assert_eq!(format_code(code, 8), want, "T={time} {algorithm:?}");
        }
    }

    #[test]
    fn seven_and_six_digits_are_suffixes_of_eight() {
        let eight = totp(Algorithm::Sha1, SEED_SHA1, 59, 30, 8);
        assert_eq!(
            totp(Algorithm::Sha1, SEED_SHA1, 59, 30, 7),
            eight % 10_000_000
        );
        assert_eq!(
            totp(Algorithm::Sha1, SEED_SHA1, 59, 30, 6),
            eight % 1_000_000
        );
    }

    #[test]
    fn steps_follow_the_period() {
        assert_eq!(totp_step(59, 30), 1);
        assert_eq!(totp_step(60, 30), 2);
        assert_eq!(totp_step(119, 60), 1);
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        assert_eq!(Algorithm::from_name("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_name("MD5"), None);
    }

    #[test]
    fn codes_keep_leading_zeros() {
        assert_eq!(format_code(42, 6), "000042");
    }
}
