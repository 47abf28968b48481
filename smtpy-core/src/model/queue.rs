//! The durable outbound queue: messages accepted and not yet delivered to
//! every recipient.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::address::EmailAddress;
use crate::ids::{AliasId, MessageId, UserId};
use crate::time::Timestamp;

/// Why a message is in the queue (for operators and for the delivery
/// worker's choice of what to do on failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageKind {
    /// Mail to an alias, forwarded to its mailboxes.
    Forward,
    /// A bounce coming back through an SRS address, relayed to the original sender.
    BounceRelay,
    /// A delivery status notification we generated.
    Dsn,
    /// A reply or new mail sent from an alias.
    Reply,
    /// A notification to an owner.
    Notification,
}

/// An SMTP reply as received from a remote server: code, enhanced status
/// and text (lines joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReply {
    /// Basic reply code (e.g. 250, 451, 550).
    pub code: u16,
    /// Enhanced status code (`5.1.1`), when the server gave one.
    pub enhanced: Option<String>,
    /// Reply text.
    pub text: String,
}

impl fmt::Display for RemoteReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

/// Where one recipient of a queued message stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecipientState {
    /// Not delivered yet; retried when the message is next due.
    Pending,
    /// Accepted by the next hop.
    Delivered {
        /// When.
        at: Timestamp,
        /// What the next hop answered (`None` for transports without replies).
        reply: Option<RemoteReply>,
    },
    /// Given up: a permanent failure, or the message expired. A DSN is due
    /// to the sender unless it was the null sender.
    Failed {
        /// When.
        at: Timestamp,
        /// The last reply, or why we gave up.
        reply: Option<RemoteReply>,
        /// Why, for the DSN and the event log.
        reason: String,
    },
}

impl RecipientState {
    /// Delivered or failed: nothing more to do for this recipient.
    #[must_use]
    pub fn is_final(&self) -> bool {
        !matches!(self, RecipientState::Pending)
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    /// Where to deliver (a mailbox, or the original sender for relayed bounces).
    pub address: EmailAddress,
    /// The alias the mail came in through, if any: a DSN names the alias,
    /// never the mailbox.
    pub alias: Option<AliasId>,
    /// What the DSN calls this recipient: the alias address for forwards
    /// (so the mailbox never appears), the address itself otherwise.
    pub original: Option<EmailAddress>,
    /// Delivery state.
    pub state: RecipientState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last temporary failure, for operators.
    pub last_reply: Option<RemoteReply>,
}

impl QueuedRecipient {
    /// A pending recipient.
    #[must_use]
    pub fn new(address: EmailAddress) -> Self {
        Self {
            address,
            alias: None,
            original: None,
            state: RecipientState::Pending,
            attempts: 0,
            last_reply: None,
        }
    }
}

/// A message in the queue.
///
/// The body is kept as received (after line-ending normalisation) and
/// shared (`Arc`) so the mail path never copies it. Per-recipient rewriting
/// (headers, signatures) happens when delivering.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// Identifier (time-ordered).
    pub id: MessageId,
    /// Why it is queued.
    pub kind: MessageKind,
    /// Envelope sender to use when delivering (already SRS-rewritten for
    /// forwards); `None` is the null reverse-path `<>`.
    pub reverse_path: Option<EmailAddress>,
    /// The sender as the client gave it, for DSNs; `None` for `<>`.
    pub original_sender: Option<EmailAddress>,
    /// The message, CRLF line endings.
    pub body: Arc<[u8]>,
    /// Recipients and their state.
    pub recipients: Vec<QueuedRecipient>,
    /// The owner whose traffic this is, for usage and events.
    pub owner: Option<UserId>,
    /// When it was accepted.
    pub received_at: Timestamp,
    /// Not leased before this instant (the retry schedule).
    pub next_attempt_at: Timestamp,
    /// After this instant pending recipients fail (queue lifetime).
    pub expires_at: Timestamp,
    /// Delivery attempts made (of the whole message).
    pub attempts: u32,
    /// Held by an operator: never leased until released.
    pub held: bool,
    /// Ties log lines of one message together, from SMTP to delivery.
    pub correlation_id: String,
}

impl fmt::Debug for QueuedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedMessage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("recipients", &self.recipients.len())
            .field("body_len", &self.body.len())
            .field("next_attempt_at", &self.next_attempt_at)
            .field("attempts", &self.attempts)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl QueuedMessage {
    /// True when every recipient is delivered or failed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.recipients.iter().all(|r| r.state.is_final())
    }
}

/// A lease on a queued message: the instance holding it is delivering it;
/// nobody else may until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// The message as stored when leased.
    pub message: QueuedMessage,
    /// Opaque token proving the lease; required to record the outcome.
    pub token: LeaseToken,
    /// When the lease lapses and another instance may take the message.
    pub until: Timestamp,
}

/// Proof of a lease (random, per lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub uuid::Uuid);

impl LeaseToken {
    /// A fresh random token.
    #[must_use]
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}
