//! Outbound delivery seam: a [`Transport`] hands one message to the next
//! hop for a set of recipients and says, per recipient, what happened.

use async_trait::async_trait;

use crate::address::EmailAddress;
use crate::model::RemoteReply;

/// Envelope of one outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM; `None` is the null reverse-path `<>` (DSNs).
    pub reverse_path: Option<EmailAddress>,
    /// RCPT TO, in order.
    pub recipients: Vec<EmailAddress>,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// The next hop accepted responsibility.
    Delivered(Option<RemoteReply>),
    /// Try again later (4xx, connection failure, timeout, DNS temporary failure).
    Temporary(RemoteReply),
    /// Do not try again (5xx, no such domain).
    Permanent(RemoteReply),
}

impl DeliveryOutcome {
    /// A temporary failure with a locally made reason (no remote reply).
    #[must_use]
    pub fn temporary(reason: impl Into<String>) -> Self {
        Self::Temporary(RemoteReply {
            code: 451,
            enhanced: Some("4.4.1".into()),
            text: reason.into(),
        })
    }
    /// A permanent failure with a locally made reason.
    #[must_use]
    pub fn permanent(enhanced: &str, reason: impl Into<String>) -> Self {
        Self::Permanent(RemoteReply {
            code: 550,
            enhanced: Some(enhanced.into()),
            text: reason.into(),
        })
    }
}

/// Delivers messages to the next hop.
///
/// Implementations never return an error for the whole call: a connection
/// that cannot be made is a [`DeliveryOutcome::Temporary`] for every
/// recipient. The returned vector has one outcome per recipient of the
/// envelope, in the same order.
#[async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Delivers `message` (CRLF line endings, dot-stuffing not applied) to
    /// every recipient of `envelope`.
    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Vec<DeliveryOutcome>;
}
