//! The account a login is for: the user database lookup, and which user names are safe
//! to put in a path.

use std::fmt;
use std::path::PathBuf;

/// The account a login is for, as the system's user database gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Why the user database gave no account.
#[derive(Debug)]
pub enum AccountError {
    /// A name that could escape a directory (`/`, `..`, NUL) or is otherwise unusable.
    UnsafeName(String),
    /// The user database itself failed (not "no such user").
    Database(nix::Error),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::UnsafeName(name) => write!(f, "{name:?} is not a usable user name"),
            AccountError::Database(e) => write!(f, "cannot read the user database: {e}"),
        }
    }
}

impl std::error::Error for AccountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AccountError::UnsafeName(_) => None,
            AccountError::Database(e) => Some(e),
        }
    }
}

impl Account {
    /// Looks `name` up in the system's user database (NSS); `Ok(None)` if there is no such user.
    pub fn lookup(name: &str) -> Result<Option<Account>, AccountError> {
        if !is_safe_user_name(name) {
            return Err(AccountError::UnsafeName(name.into()));
        }
        let user = nix::unistd::User::from_name(name).map_err(AccountError::Database)?;
        Ok(user.map(|user| Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }))
    }
}

/// Whether a user name is safe to use as a file name and in paths: no `/`, no NUL,
/// not `.` or `..` or hidden, not absurdly long.
pub fn is_safe_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_a_directory_are_unsafe() {
        for name in [
            "", "a\0b", "\0", "..", ".", ".x", "a/b", "/", "../x", "a\nb", "a\u{7f}b",
        ] {
            assert!(!is_safe_user_name(name), "{name:?}");
        }
        assert!(!is_safe_user_name(&"x".repeat(201)));
        for good in ["alice", "alice.smith-2", "a..b", "x-y_z", "user@example"] {
            assert!(is_safe_user_name(good), "{good:?}");
        }
        assert!(is_safe_user_name(&"x".repeat(200)));
    }

    #[test]
    fn an_unsafe_name_is_refused_before_the_user_database_is_asked() {
        assert!(matches!(
            Account::lookup("../root"),
            Err(AccountError::UnsafeName(_))
        ));
        assert!(Account::lookup("root").unwrap().is_some_and(|a| a.uid == 0));
    }

    #[test]
    fn the_user_databases_error_is_the_source() {
        use std::error::Error;
        let e = AccountError::Database(nix::Error::EIO);
        assert_eq!(
            e.source().and_then(|e| e.downcast_ref::<nix::Error>()),
            Some(&nix::Error::EIO)
        );
        assert!(AccountError::UnsafeName("..".into()).source().is_none());
    }
}
