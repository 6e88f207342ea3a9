//! One-time recovery codes: how they are normalised, hashed with a salt and checked.
//!
//! A stored entry reads `sha256:SALT:DIGEST` (both lowercase hex), where
//! `DIGEST = SHA-256(salt bytes ‖ normalised code)`. Normalising lowercases the
//! code and drops spaces and dashes, so `ABCD-EFGH` and `abcdefgh` are the same.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const PREFIX: &str = "sha256";
const SALT_BYTES: usize = 16;

/// One stored recovery code hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryHash {
    salt: Vec<u8>,
    digest: [u8; 32],
}

/// Lowercases and drops the separators people type, so the user need not be exact.
pub fn normalise(code: &str) -> Zeroizing<String> {
    Zeroizing::new(
        code.chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    )
}

fn digest_of(salt: &[u8], code: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(normalise(code).as_bytes());
    hasher.finalize().into()
}

impl RecoveryHash {
    /// Hashes `code` with `salt` (16 bytes from the OS random source when enrolling).
    pub fn new(code: &str, salt: [u8; SALT_BYTES]) -> RecoveryHash {
        RecoveryHash {
            salt: salt.to_vec(),
            digest: digest_of(&salt, code),
        }
    }

    /// Parses `sha256:SALT:DIGEST`; `None` names no reason because the caller names the file.
    pub fn parse(stored: &str) -> Option<RecoveryHash> {
        let mut parts = stored.split(':');
        let (prefix, salt, digest) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() {
            return None;
        }
        let salt = base16ct::mixed::decode_vec(salt).ok()?;
        let digest = base16ct::mixed::decode_vec(digest).ok()?;
        if salt.is_empty() || salt.len() > 64 {
            return None;
        }
        Some(RecoveryHash {
            salt,
            digest: digest.try_into().ok()?,
        })
    }

    /// The stored form, `sha256:SALT:DIGEST`.
    pub fn to_stored(&self) -> String {
        format!(
            "{PREFIX}:{}:{}",
            base16ct::lower::encode_string(&self.salt),
            base16ct::lower::encode_string(&self.digest)
        )
    }

    /// Whether `answer` is this code, compared in constant time.
    pub fn matches(&self, answer: &str) -> bool {
        digest_of(&self.salt, answer).ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_hash_in_any_spelling() {
        let hash = RecoveryHash::new("abcde-fghij", [7; 16]);
        assert!(hash.matches("abcde-fghij"));
        assert!(hash.matches(" ABCDE FGHIJ "));
        assert!(!hash.matches("abcde-fghik"));
        assert!(!hash.matches(""));
    }

    #[test]
    fn stored_form_round_trips() {
        let hash = RecoveryHash::new("12345678", [1; 16]);
        let stored = hash.to_stored();
        assert!(stored.starts_with("sha256:01010101"));
        assert_eq!(RecoveryHash::parse(&stored), Some(hash));
    }

    #[test]
    fn digest_is_sha256_of_salt_then_code() {
        // Pins the documented layout (salt first, then the normalised code) so other tools can make entries.
        let hash = RecoveryHash::new("12345678", [0; 16]);
        let stored = hash.to_stored();
        let digest = stored.rsplit(':').next().unwrap();
        let mut hasher = Sha256::new();
        hasher.update([0u8; 16]);
        hasher.update(b"12345678");
        assert_eq!(digest, data_encoding::HEXLOWER.encode(&hasher.finalize()));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "",
            "sha256",
            "md5:00:00",
            "sha256::00",
            "sha256:zz:00",
            "sha256:00:0011",
            "sha256:00:00:00",
        ] {
            assert_eq!(RecoveryHash::parse(bad), None, "{bad:?}");
        }
    }
}
