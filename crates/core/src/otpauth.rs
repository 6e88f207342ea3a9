//! The `otpauth://` key URI that authenticator apps scan (Google's "Key Uri Format").
//!
//! `otpauth://TYPE/ISSUER:LABEL?secret=…&issuer=…&algorithm=…&digits=…&period=…|counter=…`.
//! `algorithm`, `digits` and `period` are left out when they are the format's defaults
//! (SHA1, 6, 30): every app assumes those, and the shorter URI gives a smaller QR code,
//! one that fits a 24-row terminal.
//! Issuer and label are percent-encoded byte by byte (UTF-8), leaving only RFC 3986
//! unreserved characters as they are: a space becomes `%20` (never `+`, which some apps
//! show literally), `@` becomes `%40`, and a `:` inside either becomes `%3A` so that
//! the one literal `:` still separates issuer from label.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use zeroize::Zeroizing;

use crate::enrollment::{Enrollment, Kind};
use crate::otp::Algorithm;

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
    let issuer = encode_component(issuer);
    let mut uri = Zeroizing::new(format!(
        "otpauth://{kind}/{issuer}:{label}?secret={secret}&issuer={issuer}",
        kind = match enrollment.kind {
            Kind::Totp { .. } => "totp",
            Kind::Hotp { .. } => "hotp",
        },
        label = encode_component(label),
        secret = enrollment.secret.to_base32().as_str(),
    ));
    if enrollment.algorithm != Algorithm::Sha1 {
        uri.push_str(&format!("&algorithm={}", enrollment.algorithm.name()));
    }
    if enrollment.digits != DEFAULT_DIGITS {
        uri.push_str(&format!("&digits={}", enrollment.digits));
    }
    match enrollment.kind {
        Kind::Totp { period } if period != DEFAULT_PERIOD => {
            uri.push_str(&format!("&period={period}"));
        }
        Kind::Totp { .. } => {}
        // Required for HOTP: there is no default counter.
        Kind::Hotp { counter } => uri.push_str(&format!("&counter={counter}")),
    }
    uri
}

/// The key URI format's defaults, which apps assume when a parameter is left out.
const DEFAULT_DIGITS: u32 = 6;
const DEFAULT_PERIOD: u64 = 30;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Secret;

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
    fn defaults_are_left_out() {
        let mut plain = enrollment(Kind::Totp { period: 30 });
        plain.algorithm = Algorithm::Sha1;
        plain.digits = 6;
        assert_eq!(
            key_uri(&plain, "host", "alice@host").as_str(),
            "otpauth://totp/host:alice%40host?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=host"
        );
        plain.kind = Kind::Hotp { counter: 0 };
        assert!(key_uri(&plain, "h", "u").ends_with("&issuer=h&counter=0"));
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
