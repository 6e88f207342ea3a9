//! The user's enrollment (`~/.otp.toml`): its strict parsing, its secret and its fingerprint.

use std::fmt;

use base32ct::{Base32UpperUnpadded, Encoding};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::otp::{Algorithm, HotpKey, MAX_DIGITS, MIN_DIGITS};
use crate::recovery::RecoveryHash;

/// RFC 4226 §4 requires at least 128 bits and recommends 160; 80 bits is the floor here
/// because google-authenticator makes 80-bit secrets, and those must still import.
pub const MIN_SECRET_BYTES: usize = 10;
/// Far above any real key; keeps a hostile file from making us hash megabytes.
pub const MAX_SECRET_BYTES: usize = 128;
/// The shortest TOTP step accepted, in seconds: shorter steps leave no time to type.
pub const MIN_PERIOD: u64 = 5;
/// The longest TOTP step accepted, in seconds (an hour; longer codes live too long).
pub const MAX_PERIOD: u64 = 3600;
/// Enough for any real use; keeps the stored state within TOML's integers.
pub const MAX_COUNTER: u64 = 1 << 60;
/// The most recovery codes an enrollment may hold (keeps the file and the state small).
pub const MAX_RECOVERY_CODES: usize = 100;

/// A shared secret key; wiped from memory when dropped, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of the key bytes (wiped when the secret is dropped).
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The key, for HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as authenticator apps expect it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(Base32UpperUnpadded::encode_string(&self.0))
    }

    /// Decodes base32, ignoring case, white space and `=` padding. Non-zero trailing
    /// bits are accepted: some generators emit them.
    pub fn from_base32(text: &str) -> Result<Secret, EnrollmentError> {
        let cleaned: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace() && *c != '=')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        // Decoded straight into the secret, so a key that fails a later check is wiped too.
        let mut secret = Secret(vec![0; cleaned.len() * 5 / 8]);
        let decoded = Base32UpperUnpadded::decode(cleaned.as_bytes(), &mut secret.0)
            .map_err(|_| EnrollmentError::SecretNotBase32)?
            .len();
        secret.0.truncate(decoded);
        if secret.0.len() < MIN_SECRET_BYTES {
            return Err(EnrollmentError::SecretTooShort(secret.0.len() * 8));
        }
        if secret.0.len() > MAX_SECRET_BYTES {
            return Err(EnrollmentError::SecretTooLong);
        }
        Ok(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Time-based or counter-based codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RFC 6238: the code of the current `period`-second step.
    Totp {
        /// Seconds per step.
        period: u64,
    },
    /// RFC 4226: the code of a counter that moves on with each use.
    Hotp {
        /// The first counter value the enrollment accepts.
        counter: u64,
    },
}

/// A parsed, validated enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// Time-based or counter-based.
    pub kind: Kind,
    /// The HMAC hash.
    pub algorithm: Algorithm,
    /// Digits per code, 6 to 8.
    pub digits: u32,
    /// The shared key.
    pub secret: Secret,
    /// The salted hashes of the one-time recovery codes.
    pub recovery_codes: Vec<RecoveryHash>,
}

/// What is wrong with an enrollment file; the caller adds the file's path.
#[derive(Debug, PartialEq, Eq)]
pub enum EnrollmentError {
    /// Not TOML, an unknown key or a value of the wrong type.
    Syntax(String),
    /// A `version` this build does not know.
    UnsupportedVersion(i64),
    /// A `type` other than "totp" or "hotp".
    UnknownType(String),
    /// An `algorithm` other than SHA1, SHA256 or SHA512.
    UnknownAlgorithm(String),
    /// `digits` outside 6 to 8.
    DigitsOutOfRange(i64),
    /// `period` outside the accepted seconds.
    PeriodOutOfRange(i64),
    /// `counter` negative or beyond the largest accepted.
    CounterOutOfRange(i64),
    /// `secret` is not RFC 4648 base32.
    SecretNotBase32,
    /// `secret` has fewer bytes than the minimum (the count given).
    SecretTooShort(usize),
    /// `secret` is absurdly long.
    SecretTooLong,
    /// More recovery codes than allowed (the count given).
    TooManyRecoveryCodes(usize),
    /// The recovery code at this index is not a stored hash.
    BadRecoveryCode(usize),
}

impl fmt::Display for EnrollmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnrollmentError::Syntax(why) => write!(f, "not a valid enrollment: {why}"),
            EnrollmentError::UnsupportedVersion(v) => {
                write!(f, "version = {v} is not supported (expected 1)")
            }
            EnrollmentError::UnknownType(t) => {
                write!(f, "type = {t:?} is unknown (expected \"totp\" or \"hotp\")")
            }
            EnrollmentError::UnknownAlgorithm(a) => write!(
                f,
                "algorithm = {a:?} is unknown (expected \"SHA1\", \"SHA256\" or \"SHA512\")"
            ),
            EnrollmentError::DigitsOutOfRange(d) => {
                write!(
                    f,
                    "digits = {d} is out of range ({MIN_DIGITS} to {MAX_DIGITS})"
                )
            }
            EnrollmentError::PeriodOutOfRange(p) => {
                write!(
                    f,
                    "period = {p} is out of range ({MIN_PERIOD} to {MAX_PERIOD} seconds)"
                )
            }
            EnrollmentError::CounterOutOfRange(c) => {
                write!(f, "counter = {c} is out of range (0 to {MAX_COUNTER})")
            }
            EnrollmentError::SecretNotBase32 => write!(f, "secret is not valid base32"),
            EnrollmentError::SecretTooShort(bits) => write!(
                f,
                "secret is too short ({bits} bits; at least {} required)",
                MIN_SECRET_BYTES * 8
            ),
            EnrollmentError::SecretTooLong => {
                write!(f, "secret is too long (over {MAX_SECRET_BYTES} bytes)")
            }
            EnrollmentError::TooManyRecoveryCodes(n) => {
                write!(f, "{n} recovery codes (at most {MAX_RECOVERY_CODES})")
            }
            EnrollmentError::BadRecoveryCode(i) => write!(
                f,
                "recovery_codes[{i}] is not a salted hash (expected \"sha256:SALT:DIGEST\")"
            ),
        }
    }
}

impl std::error::Error for EnrollmentError {}

/// The file as written; every key optional but `secret`, nothing else allowed.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct RawEnrollment {
    #[zeroize(skip)]
    version: Option<i64>,
    #[serde(rename = "type")]
    #[zeroize(skip)]
    kind: Option<String>,
    secret: String,
    #[zeroize(skip)]
    algorithm: Option<String>,
    #[zeroize(skip)]
    digits: Option<i64>,
    #[zeroize(skip)]
    period: Option<i64>,
    #[zeroize(skip)]
    counter: Option<i64>,
    #[zeroize(skip)]
    recovery_codes: Option<Vec<String>>,
}

impl Enrollment {
    /// The HMAC keyed with this enrollment's secret, algorithm and code length.
    pub fn hotp_key(&self) -> HotpKey {
        HotpKey::new(self.algorithm, self.secret.as_bytes(), self.digits)
    }

    /// Parses and validates the text of an enrollment file.
    pub fn parse(text: &str) -> Result<Enrollment, EnrollmentError> {
        let raw: RawEnrollment = toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line, which may hold the secret.
            EnrollmentError::Syntax(e.message().to_string())
        })?;
        match raw.version {
            None | Some(1) => {}
            Some(v) => return Err(EnrollmentError::UnsupportedVersion(v)),
        }
        let algorithm = match &raw.algorithm {
            None => Algorithm::Sha1,
            Some(name) => Algorithm::from_name(name)
                .ok_or_else(|| EnrollmentError::UnknownAlgorithm(name.clone()))?,
        };
        let digits = raw.digits.unwrap_or(6);
        if !(i64::from(MIN_DIGITS)..=i64::from(MAX_DIGITS)).contains(&digits) {
            return Err(EnrollmentError::DigitsOutOfRange(digits));
        }
        let period = raw.period.unwrap_or(30);
        if !(MIN_PERIOD as i64..=MAX_PERIOD as i64).contains(&period) {
            return Err(EnrollmentError::PeriodOutOfRange(period));
        }
        let counter = raw.counter.unwrap_or(0);
        if !(0..=MAX_COUNTER as i64).contains(&counter) {
            return Err(EnrollmentError::CounterOutOfRange(counter));
        }
        let kind = match raw.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("totp") => Kind::Totp {
                period: period as u64,
            },
            Some("hotp") => Kind::Hotp {
                counter: counter as u64,
            },
            Some(_) => {
                return Err(EnrollmentError::UnknownType(
                    raw.kind.clone().unwrap_or_default(),
                ))
            }
        };
        let secret = Secret::from_base32(&raw.secret)?;
        let stored = raw.recovery_codes.as_deref().unwrap_or_default();
        if stored.len() > MAX_RECOVERY_CODES {
            return Err(EnrollmentError::TooManyRecoveryCodes(stored.len()));
        }
        let recovery_codes = stored
            .iter()
            .enumerate()
            .map(|(i, s)| RecoveryHash::parse(s).ok_or(EnrollmentError::BadRecoveryCode(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Enrollment {
            kind,
            algorithm,
            digits: digits as u32,
            secret,
            recovery_codes,
        })
    }

    /// The file text `otp-setup` writes; `parse` reads it back to the same enrollment.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let mut out =
            String::from("# written by otp-setup; enrollment only, never policy\nversion = 1\n");
        match self.kind {
            Kind::Totp { period } => {
                out.push_str(&format!("type = \"totp\"\nperiod = {period}\n"));
            }
            Kind::Hotp { counter } => {
                out.push_str(&format!("type = \"hotp\"\ncounter = {counter}\n"));
            }
        }
        out.push_str(&format!(
            "algorithm = \"{}\"\ndigits = {}\nsecret = \"{}\"\nrecovery_codes = [\n",
            self.algorithm.name(),
            self.digits,
            self.secret.to_base32().as_str()
        ));
        for code in &self.recovery_codes {
            out.push_str(&format!("    \"{}\",\n", code.to_stored()));
        }
        out.push_str("]\n");
        Zeroizing::new(out)
    }

    /// Identifies this enrollment in the state file: re-enrolling starts fresh state.
    /// A hash, so the root-only state file never holds the secret itself.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"pam-otp enrollment v1\0");
        match self.kind {
            Kind::Totp { period } => {
                hasher.update(b"totp\0");
                hasher.update(period.to_be_bytes());
            }
            Kind::Hotp { counter } => {
                hasher.update(b"hotp\0");
                hasher.update(counter.to_be_bytes());
            }
        }
        hasher.update(self.algorithm.name().as_bytes());
        hasher.update(self.digits.to_be_bytes());
        hasher.update((self.secret.0.len() as u64).to_be_bytes());
        hasher.update(&self.secret.0);
        for code in &self.recovery_codes {
            hasher.update(code.to_stored().as_bytes());
        }
        base16ct::lower::encode_string(&hasher.finalize()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
type = "totp"
secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
algorithm = "SHA1"
digits = 6
period = 30
counter = 0
recovery_codes = []
"#;

    #[test]
    fn spec_example_parses() {
        let e = Enrollment::parse(GOOD).unwrap();
        assert_eq!(e.kind, Kind::Totp { period: 30 });
        assert_eq!(e.algorithm, Algorithm::Sha1);
        assert_eq!(e.digits, 6);
        assert_eq!(e.secret.as_bytes().len(), 20);
    }

    #[test]
    fn defaults_apply_with_only_a_secret() {
        let e = Enrollment::parse("secret = \"JBSWY3DPEHPK3PXP\"").unwrap();
        assert_eq!(e.kind, Kind::Totp { period: 30 });
        assert_eq!(e.digits, 6);
        assert!(e.recovery_codes.is_empty());
    }

    #[test]
    fn secret_ignores_case_spaces_and_padding() {
        let a = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let b = Secret::from_base32("jbsw y3dp ehpk 3pxp====").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn hotp_takes_its_counter() {
        let e = Enrollment::parse("type = \"hotp\"\ncounter = 7\nsecret = \"JBSWY3DPEHPK3PXP\"")
            .unwrap();
        assert_eq!(e.kind, Kind::Hotp { counter: 7 });
    }

    fn error_of(text: &str) -> EnrollmentError {
        Enrollment::parse(text).unwrap_err()
    }

    #[test]
    fn broken_files_are_refused_with_a_reason() {
        let s = "secret = \"JBSWY3DPEHPK3PXP\"\n";
        assert!(
            matches!(error_of(&format!("{s}window = 3")), EnrollmentError::Syntax(m) if m.contains("window"))
        );
        assert!(matches!(
            error_of(&format!("{s}digits = \"6\"")),
            EnrollmentError::Syntax(_)
        ));
        assert!(
            matches!(error_of("digits = 6"), EnrollmentError::Syntax(m) if m.contains("secret"))
        );
        assert_eq!(
            error_of("secret = \"not base32!\""),
            EnrollmentError::SecretNotBase32
        );
        assert_eq!(
            error_of("secret = \"JBSWY3DP\""),
            EnrollmentError::SecretTooShort(40)
        );
        assert_eq!(
            error_of(&format!("{s}digits = 5")),
            EnrollmentError::DigitsOutOfRange(5)
        );
        assert_eq!(
            error_of(&format!("{s}digits = 9")),
            EnrollmentError::DigitsOutOfRange(9)
        );
        assert_eq!(
            error_of(&format!("{s}period = 0")),
            EnrollmentError::PeriodOutOfRange(0)
        );
        assert_eq!(
            error_of(&format!("{s}counter = -1")),
            EnrollmentError::CounterOutOfRange(-1)
        );
        assert_eq!(
            error_of(&format!("{s}version = 2")),
            EnrollmentError::UnsupportedVersion(2)
        );
        assert_eq!(
            error_of(&format!("{s}type = \"sms\"")),
            EnrollmentError::UnknownType("sms".into())
        );
        assert_eq!(
            error_of(&format!("{s}algorithm = \"MD5\"")),
            EnrollmentError::UnknownAlgorithm("MD5".into())
        );
        assert_eq!(
            error_of(&format!("{s}recovery_codes = [\"plain\"]")),
            EnrollmentError::BadRecoveryCode(0)
        );
        assert!(matches!(
            error_of("garbage \u{0}\u{1}"),
            EnrollmentError::Syntax(_)
        ));
    }

    #[test]
    fn syntax_errors_never_quote_the_secret() {
        let text = "secret = \"JBSWY3DPEHPK3PXP\" junk";
        let message = error_of(text).to_string();
        assert!(!message.contains("JBSWY3DPEHPK3PXP"), "{message}");
    }

    #[test]
    fn written_text_parses_back_identically() {
        let mut e = Enrollment::parse(GOOD).unwrap();
        e.recovery_codes.push(RecoveryHash::new("abc", [3; 16]));
        e.algorithm = Algorithm::Sha512;
        e.digits = 8;
        let again = Enrollment::parse(&e.to_toml()).unwrap();
        assert_eq!(again, e);
        assert_eq!(again.fingerprint(), e.fingerprint());
    }

    #[test]
    fn fingerprint_changes_with_the_secret() {
        let a = Enrollment::parse(GOOD).unwrap();
        let b = Enrollment::parse("secret = \"JBSWY3DPEHPK3PXQ\"").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let e = Enrollment::parse(GOOD).unwrap();
        let shown = format!("{e:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("72, 101"), "{shown}");
    }

    /// data-encoding's base32 without the trailing-bit check: a codec other than ours.
    fn reference_base32() -> data_encoding::Encoding {
        let mut spec = data_encoding::BASE32_NOPAD.specification();
        spec.check_trailing_bits = false;
        spec.encoding().unwrap()
    }

    #[test]
    fn trailing_bits_and_lower_case_are_accepted_and_bad_lengths_are_not() {
        // 16 bytes take 26 characters, 130 bits: the last two bits are padding, and a
        // final "D" in place of "A" sets them.
        let strict = Secret::from_base32("AEBAGBAFAYDQQCIKBMGA2DQPCA").unwrap();
        let lenient = Secret::from_base32("aebagbafaydqqcikbmga2dqpcd").unwrap();
        assert_eq!(strict.as_bytes(), (1..=16).collect::<Vec<u8>>());
        assert_eq!(strict.as_bytes(), lenient.as_bytes());
        for bad_length in [
            "JBSWY3DPEHPK3PXPJ",
            "JBSWY3DPEHPK3PXPJBS",
            "JBSWY3DPEHPK3PXPJBSWY3",
        ] {
            assert!(
                matches!(
                    Secret::from_base32(bad_length),
                    Err(EnrollmentError::SecretNotBase32)
                ),
                "{bad_length}"
            );
        }
        assert!(matches!(
            Secret::from_base32("JBSWY3DPEHPK3PX1"),
            Err(EnrollmentError::SecretNotBase32)
        ));
    }

    proptest::proptest! {
        #[test]
        fn base32_agrees_with_another_codec(
            key in proptest::collection::vec(proptest::prelude::any::<u8>(), 10..=64),
            last in 0u8..32,
        ) {
            let text = data_encoding::BASE32_NOPAD.encode(&key);
            let ours = Secret::from_base32(&text).unwrap();
            proptest::prop_assert_eq!(ours.as_bytes(), &key[..]);
            proptest::prop_assert_eq!(&ours.to_base32()[..], &text[..]);
            // Any last character: both accept it or both refuse it, with the same bytes.
            let mut varied = text.into_bytes();
            *varied.last_mut().unwrap() = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[usize::from(last)];
            let varied = String::from_utf8(varied).unwrap();
            let theirs = reference_base32().decode(varied.as_bytes()).ok();
            let ours = Secret::from_base32(&varied).ok().map(|s| s.as_bytes().to_vec());
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
