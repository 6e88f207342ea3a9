//! A user with no enrollment: passed (`nullok`, or before the `enforce_after` deadline,
//! with a reminder) or refused, and told why once an earlier factor has passed.

use std::path::Path;

use ::pam::constants::PamResultCode;

use crate::conversation::Conversation;
use pam_otp_sys::log::Logger;
use pam_otp_sys::policy::Policy;

/// What the person is to do to get an enrollment: run otp-setup for a file in their
/// home, ask the administrator for one in the store (only root can write it).
fn what_to_do(policy: &Policy) -> &'static str {
    if policy.secret.starts_with('~') || policy.secret.starts_with("%h") {
        "run otp-setup to set one up"
    } else {
        "ask your administrator to set one up (otp-admin enroll)"
    }
}

/// Decides the login of a user whose enrollment file `path` does not exist at `now`.
/// `earlier_factor_passed`: the application or an earlier module has proved who the user
/// is (sshd's record of a passed method, or a password taken by an earlier module in a
/// stack that stops on a wrong one); only then is the person told anything, so a
/// stranger learns neither that the account exists nor that it has no enrollment.
pub(crate) fn decide(
    policy: &Policy,
    path: &Path,
    earlier_factor_passed: bool,
    now: u64,
    conversation: &mut dyn Conversation,
    log: &Logger,
) -> PamResultCode {
    let shown = path.display();
    if policy.nullok {
        log.debug(&format!(
            "{shown} does not exist; nullok lets the user pass"
        ));
        return PamResultCode::PAM_IGNORE;
    }
    let tell = |conversation: &mut dyn Conversation, text: &str, as_error: bool| {
        if !earlier_factor_passed {
            return;
        }
        // A failed conversation changes nothing of the outcome: it is only the reason.
        let _ = if as_error {
            conversation.error(text)
        } else {
            conversation.info(text)
        };
    };
    match &policy.enforce_after {
        Some(deadline) => match deadline.days_left(now) {
            Some(days) => {
                log.info(&format!(
                    "{shown} does not exist: user not enrolled, let through until the \
                     enforce_after deadline {} ({days} day(s) left)",
                    deadline.text
                ));
                tell(
                    conversation,
                    &format!(
                        "Verification codes are required here from {} ({days} day{} left), \
                         and this account has none yet: {}.",
                        deadline.text,
                        if days == 1 { "" } else { "s" },
                        what_to_do(policy)
                    ),
                    false,
                );
                PamResultCode::PAM_IGNORE
            }
            None => {
                log.warning(&format!(
                    "{shown} does not exist: user not enrolled, refused (the enforce_after \
                     deadline {} has passed)",
                    deadline.text
                ));
                tell(
                    conversation,
                    &format!(
                        "Login refused: verification codes are required here since {}, and \
                         this account has none: {}.",
                        deadline.text,
                        what_to_do(policy)
                    ),
                    true,
                );
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            }
        },
        None => {
            log.warning(&format!(
                "{shown} does not exist: user not enrolled, refused"
            ));
            tell(
                conversation,
                &format!(
                    "Login refused: this login needs a verification code, and this account \
                     has none: {}.",
                    what_to_do(policy)
                ),
                true,
            );
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::ConversationError;
    use pam_otp_sys::policy::parse;
    use zeroize::Zeroizing;

    /// Records what the person is told; asking anything fails the test.
    #[derive(Default)]
    struct Told {
        infos: Vec<String>,
        errors: Vec<String>,
    }

    impl Conversation for Told {
        fn prompt(&mut self, text: &str) -> Result<Zeroizing<String>, ConversationError> {
            panic!("a user with no enrollment was asked {text:?}")
        }
        fn info(&mut self, text: &str) -> Result<(), ConversationError> {
            self.infos.push(text.into());
            Ok(())
        }
        fn error(&mut self, text: &str) -> Result<(), ConversationError> {
            self.errors.push(text.into());
            Ok(())
        }
    }

    /// 2026-12-13 00:00 UTC (`date -u -d 2026-12-13 +%s`).
    const DEADLINE: u64 = 1_797_120_000;
    const DAY: u64 = 86_400;

    fn decided(args: &[&str], passed: bool, now: u64) -> (PamResultCode, Told, Logger) {
        let policy = parse(args, None).unwrap();
        let mut told = Told::default();
        let log = Logger::memory("test");
        let path = Path::new("/home/tester/.otp.toml");
        let code = decide(&policy, path, passed, now, &mut told, &log);
        (code, told, log)
    }

    #[test]
    fn before_the_deadline_the_user_passes_and_is_reminded() {
        let (code, told, log) =
            decided(&["enforce_after=2026-12-13"], true, DEADLINE - 7 * DAY + 5);
        assert_eq!(code, PamResultCode::PAM_IGNORE);
        assert!(told.errors.is_empty());
        assert_eq!(
            told.infos,
            [
                "Verification codes are required here from 2026-12-13 (7 days left), and this \
              account has none yet: run otp-setup to set one up."
            ]
        );
        assert!(
            log.lines()[0].1.contains("7 day(s) left"),
            "{:?}",
            log.lines()
        );
        let (_, told, _) = decided(&["enforce_after=2026-12-13"], true, DEADLINE - 60);
        assert!(told.infos[0].contains("(1 day left)"), "{:?}", told.infos);
    }

    #[test]
    fn from_the_deadline_on_the_user_is_refused_and_told_why() {
        for now in [DEADLINE, DEADLINE + 30 * DAY] {
            let (code, told, log) = decided(&["enforce_after=2026-12-13"], true, now);
            assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
            assert!(told.infos.is_empty());
            assert_eq!(
                told.errors,
                [
                    "Login refused: verification codes are required here since 2026-12-13, and \
                  this account has none: run otp-setup to set one up."
                ]
            );
            assert!(log.lines()[0].1.contains("has passed"), "{:?}", log.lines());
        }
    }

    #[test]
    fn the_store_sends_the_user_to_the_administrator() {
        let args = [
            "enforce_after=2026-12-13",
            "secret=/var/lib/pam-otp/secrets/%u.toml",
        ];
        let (_, told, _) = decided(&args, true, DEADLINE - DAY);
        assert!(told.infos[0].ends_with("ask your administrator to set one up (otp-admin enroll)."));
        let (_, told, _) = decided(&args[1..], true, DEADLINE);
        assert!(
            told.errors[0].contains("ask your administrator"),
            "{:?}",
            told.errors
        );
    }

    #[test]
    fn without_nullok_or_deadline_the_reason_is_told_after_the_first_factor() {
        let (code, told, _) = decided(&[], true, DEADLINE);
        assert_eq!(code, PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(
            told.errors,
            [
                "Login refused: this login needs a verification code, and this account has \
              none: run otp-setup to set one up."
            ]
        );
    }

    #[test]
    fn before_the_first_factor_nothing_is_told() {
        for (args, now, expected) in [
            (&[][..], DEADLINE, PamResultCode::PAM_AUTHINFO_UNAVAIL),
            (
                &["enforce_after=2026-12-13"][..],
                DEADLINE - DAY,
                PamResultCode::PAM_IGNORE,
            ),
            (
                &["enforce_after=2026-12-13"][..],
                DEADLINE,
                PamResultCode::PAM_AUTHINFO_UNAVAIL,
            ),
        ] {
            let (code, told, log) = decided(args, false, now);
            assert_eq!(code, expected, "{args:?}");
            assert!(told.infos.is_empty() && told.errors.is_empty(), "{args:?}");
            // The log still says why.
            assert!(
                log.lines()[0].1.contains("not enrolled"),
                "{:?}",
                log.lines()
            );
        }
    }

    #[test]
    fn nullok_passes_silently() {
        let (code, told, _) = decided(&["nullok"], true, DEADLINE);
        assert_eq!(code, PamResultCode::PAM_IGNORE);
        assert!(told.infos.is_empty() && told.errors.is_empty());
    }
}
