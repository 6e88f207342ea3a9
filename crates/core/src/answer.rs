//! What the user typed: telling a code from anything else, and splitting "password + code".

use zeroize::Zeroizing;

/// The answer as a code of `digits` digits, if that is what it is (surrounding white space ignored).
pub fn as_code(answer: &str, digits: u32) -> Option<u32> {
    let trimmed = answer.trim();
    if trimmed.len() != digits as usize || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    trimmed.parse().ok()
}

/// `split_pass`: one answer holds the password followed by the code.
/// Returns (password, code); the code is the last `digits` characters after
/// trailing white space is dropped. `None` when the answer is too short or does
/// not end in digits, so that no part of a password is ever taken as a code.
pub fn split_password_and_code(
    answer: &str,
    digits: u32,
) -> Option<(Zeroizing<String>, Zeroizing<String>)> {
    let trimmed = answer.trim_end();
    let digits = digits as usize;
    if trimmed.len() < digits {
        return None;
    }
    let split_at = trimmed.len() - digits;
    if !trimmed.is_char_boundary(split_at) {
        return None;
    }
    let (password, code) = trimmed.split_at(split_at);
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        Zeroizing::new(password.to_string()),
        Zeroizing::new(code.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_exactly_the_right_number_of_digits() {
        assert_eq!(as_code("012345", 6), Some(12345));
        assert_eq!(as_code("  012345\n", 6), Some(12345));
        assert_eq!(as_code("12345", 6), None);
        assert_eq!(as_code("1234567", 6), None);
        assert_eq!(as_code("12 345", 5), None);
        assert_eq!(as_code("+12345", 6), None);
        assert_eq!(as_code("", 6), None);
        assert_eq!(as_code("١٢٣٤٥٦", 6), None);
        assert_eq!(as_code("12345678", 8), Some(12345678));
    }

    #[test]
    fn the_code_is_the_trailing_digits() {
        let (password, code) = split_password_and_code("hunter2123456", 6).unwrap();
        assert_eq!((password.as_str(), code.as_str()), ("hunter2", "123456"));
        let (password, code) = split_password_and_code("123456\n", 6).unwrap();
        assert_eq!((password.as_str(), code.as_str()), ("", "123456"));
        assert!(split_password_and_code("hunter", 6).is_none());
        assert!(split_password_and_code("password12345x", 6).is_none());
        assert!(split_password_and_code("pässwörd", 6).is_none());
    }
}
