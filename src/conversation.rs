//! The conversation with the user, behind a small trait so a login can be scripted in tests.

use std::fmt;

use ::pam::constants::PamResultCode;
use ::pam::constants::{PamMessageStyle, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO};
use ::pam::conv::Conv;
use zeroize::Zeroizing;

/// The application's conversation function failed or gave no answer.
#[derive(Debug, PartialEq, Eq)]
pub struct ConversationError(pub String);

impl fmt::Display for ConversationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conversation failed: {}", self.0)
    }
}

impl std::error::Error for ConversationError {}

/// What the module needs from the application: ask (without echo), tell, warn.
pub trait Conversation {
    fn prompt(&mut self, text: &str) -> Result<Zeroizing<String>, ConversationError>;
    fn info(&mut self, text: &str) -> Result<(), ConversationError>;
    fn error(&mut self, text: &str) -> Result<(), ConversationError>;
}

/// The real conversation, through the application's `pam_conv`.
pub struct PamConversation<'a> {
    conv: Conv<'a>,
    /// PAM_SILENT: the application asked for no informational messages.
    silent: bool,
}

impl<'a> PamConversation<'a> {
    pub fn new(conv: Conv<'a>, silent: bool) -> PamConversation<'a> {
        PamConversation { conv, silent }
    }

    fn tell(&mut self, style: PamMessageStyle, text: &str) -> Result<(), ConversationError> {
        if self.silent {
            return Ok(());
        }
        self.conv
            .send(style, text)
            .map(|_| ())
            .map_err(|code| ConversationError(format!("{code:?}")))
    }
}

impl Conversation for PamConversation<'_> {
    fn prompt(&mut self, text: &str) -> Result<Zeroizing<String>, ConversationError> {
        match self.conv.send(PAM_PROMPT_ECHO_OFF, text) {
            // A non-UTF-8 answer is not a code; it fails like a wrong one.
            Ok(Some(answer)) => Ok(Zeroizing::new(
                String::from_utf8_lossy(answer.as_bytes()).into_owned(),
            )),
            Ok(None) => Err(ConversationError("no answer".into())),
            Err(PamResultCode::PAM_SUCCESS) => Err(ConversationError("no answer".into())),
            Err(code) => Err(ConversationError(format!("{code:?}"))),
        }
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.tell(PAM_TEXT_INFO, text)
    }

    fn error(&mut self, text: &str) -> Result<(), ConversationError> {
        self.tell(PAM_ERROR_MSG, text)
    }
}
