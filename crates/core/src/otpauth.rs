//! The `otpauth://` key URI that authenticator apps scan (Google's "Key Uri Format").
//!
//! `otpauth://TYPE/ISSUER:LABEL?secret=…&issuer=…&algorithm=…&digits=…&period=…|counter=…`.
//! Issuer and label are percent-encoded byte by byte (UTF-8), leaving only RFC 3986
//! unreserved characters as they are: a space becomes `%20` (never `+`, which some apps
//! show literally), `@` becomes `%40`, and a `:` inside either becomes `%3A` so that
//! the one literal `:` still separates issuer from label.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use crate::enrollment::{Enrollment, Kind};

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one component of the URI.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, NOT_UNRESERVED).to_string()
}

/// The key URI for `enrollment`, shown as `issuer` and `label` in the app.
/// It holds the secret, so it is wiped from memory when dropped.
pub fn key_uri(enrollment: &Enrollment, issuer: &str, label: &str) -> Zeroizing<String> {
    let (kind, moving_factor) = match enrollment.kind {
        Kind::Totp { period } => ("totp", format!("period={period}")),
        Kind::Hotp { counter } => ("hotp", format!("counter={counter}")),
    };
    let issuer = encode_component(issuer);
    Zeroizing::new(format!(
        "otpauth://{kind}/{issuer}:{label}?secret={secret}&issuer={issuer}&algorithm={algorithm}&digits={digits}&{moving_factor}",
        label = encode_component(label),
        secret = enrollment.secret.to_base32().as_str(),
        algorithm = enrollment.algorithm.name(),
        digits = enrollment.digits,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Secret;
    use crate::otp::Algorithm;

    fn enrollment(kind: Kind) -> Enrollment {
        Enrollment {
            kind,
            algorithm: Algorithm::Sha512,
            digits: 8,
            secret: Secret::new(b"12345678901234567890".to_vec()),
            recovery_codes: Vec::new(),
        }
    }

    #[test]
    fn totp_uri_carries_every_parameter() {
        let uri = key_uri(&enrollment(Kind::Totp { period: 60 }), "host", "alice@host");
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/host:alice%40host?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=host&algorithm=SHA512&digits=8&period=60"
        );
    }

    #[test]
    fn hotp_uri_carries_the_counter() {
        let uri = key_uri(&enrollment(Kind::Hotp { counter: 7 }), "h", "u");
        assert!(uri.starts_with("otpauth://hotp/h:u?"), "{}", *uri);
        assert!(uri.ends_with("&counter=7"), "{}", *uri);
        assert!(!uri.contains("period="));
    }

    #[test]
    fn issuer_and_label_are_percent_encoded() {
        assert_eq!(encode_component("ACME Corp"), "ACME%20Corp");
        assert_eq!(
            encode_component("a:b/c?d&e=f#g+h"),
            "a%3Ab%2Fc%3Fd%26e%3Df%23g%2Bh"
        );
        assert_eq!(encode_component("Jörg"), "J%C3%B6rg");
        assert_eq!(encode_component("a-b.c_d~e"), "a-b.c_d~e");
        let uri = key_uri(&enrollment(Kind::Totp { period: 30 }), "My Co", "x:y");
        assert!(uri.starts_with("otpauth://totp/My%20Co:x%3Ay?"), "{}", *uri);
        assert!(uri.contains("&issuer=My%20Co&"), "{}", *uri);
    }
}
