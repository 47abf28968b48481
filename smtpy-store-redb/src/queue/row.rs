//! How a queued message is stored: its row (everything but the body), its
//! lease, and the writes every queue operation shares so the indexes never
//! drift from the rows.

use std::borrow::Cow;
use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{MessageId, UserId};
use smtpy_core::model::{LeaseToken, MessageKind, QueuedMessage, QueuedRecipient};
use smtpy_core::time::Timestamp;

use crate::codec::{Id, Record, decode, encode, time_id, ts_bytes, ts_from_bytes};
use crate::error::Error;
use crate::schema::Tx;

/// Entity name in errors (the in-memory store's).
pub(crate) const ENTITY: &str = "queued message";

/// A queued message without its id (the key) and body (`queue_bodies`).
///
/// Borrowed when written (enqueue copies nothing but the encoding) and
/// owned when read. Small — envelope, recipients, schedule — so rewriting
/// it on every attempt is cheap.
#[derive(Serialize, Deserialize)]
pub(crate) struct QueueRow<'a> {
    pub(crate) kind: MessageKind,
    pub(crate) reverse_path: Cow<'a, Option<EmailAddress>>,
    pub(crate) original_sender: Cow<'a, Option<EmailAddress>>,
    pub(crate) recipients: Cow<'a, [QueuedRecipient]>,
    pub(crate) owner: Option<UserId>,
    pub(crate) received_at: Timestamp,
    pub(crate) next_attempt_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) attempts: u32,
    pub(crate) held: bool,
    pub(crate) correlation_id: Cow<'a, str>,
}

impl Record for QueueRow<'_> {
    const ENTITY: &'static str = ENTITY;
}

impl<'a> QueueRow<'a> {
    /// The row of `m`, borrowing from it.
    pub(crate) fn of(m: &'a QueuedMessage) -> Self {
        Self {
            kind: m.kind,
            reverse_path: Cow::Borrowed(&m.reverse_path),
            original_sender: Cow::Borrowed(&m.original_sender),
            recipients: Cow::Borrowed(&m.recipients),
            owner: m.owner,
            received_at: m.received_at,
            next_attempt_at: m.next_attempt_at,
            expires_at: m.expires_at,
            attempts: m.attempts,
            held: m.held,
            correlation_id: Cow::Borrowed(&m.correlation_id),
        }
    }

    /// The whole message, with its id and body.
    pub(crate) fn into_message(self, id: Id, body: Arc<[u8]>) -> QueuedMessage {
        QueuedMessage {
            id: MessageId::from_bytes(id),
            kind: self.kind,
            reverse_path: self.reverse_path.into_owned(),
            original_sender: self.original_sender.into_owned(),
            body,
            recipients: self.recipients.into_owned(),
            owner: self.owner,
            received_at: self.received_at,
            next_attempt_at: self.next_attempt_at,
            expires_at: self.expires_at,
            attempts: self.attempts,
            held: self.held,
            correlation_id: self.correlation_id.into_owned(),
        }
    }

    /// When the message can next be leased, given its current lease: its
    /// `queue_due` position. `None` while held (held messages are not in
    /// the index, so leasing never even reads them).
    pub(crate) fn due_at(&self, lease: Option<Lease>) -> Option<Timestamp> {
        if self.held {
            return None;
        }
        Some(lease.map_or(self.next_attempt_at, |l| l.until.max(self.next_attempt_at)))
    }
}

/// A lease as stored in `queue_leases`: `token ‖ until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) token: LeaseToken,
    pub(crate) until: Timestamp,
}

impl Lease {
    pub(crate) fn to_bytes(self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..16].copy_from_slice(self.token.0.as_bytes());
        v[16..].copy_from_slice(&ts_bytes(self.until));
        v
    }

    pub(crate) fn from_bytes(v: &[u8; 24]) -> Self {
        let mut token = [0u8; 16];
        token.copy_from_slice(&v[..16]);
        let mut until = [0u8; 8];
        until.copy_from_slice(&v[16..]);
        Self {
            token: LeaseToken(uuid::Uuid::from_bytes(token)),
            until: ts_from_bytes(until),
        }
    }
}

/// A message ready to insert: the row encoded (by the caller, off the
/// committer thread) and the body shared, not copied.
pub(crate) struct NewMessage {
    pub(crate) id: Id,
    pub(crate) row: Vec<u8>,
    pub(crate) body: Arc<[u8]>,
    pub(crate) received_at: Timestamp,
    pub(crate) due_at: Option<Timestamp>,
    pub(crate) held: bool,
}

impl NewMessage {
    pub(crate) fn new(m: &QueuedMessage) -> Result<Self, Error> {
        let row = QueueRow::of(m);
        Ok(Self {
            id: m.id.to_bytes(),
            row: encode(&row)?,
            body: Arc::clone(&m.body),
            received_at: m.received_at,
            due_at: row.due_at(None),
            held: m.held,
        })
    }
}

/// The row `id`, if queued.
pub(crate) fn load_row(
    rows: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    id: &Id,
) -> Result<Option<QueueRow<'static>>, Error> {
    match rows.get(id)? {
        Some(guard) => decode(guard.value()).map(Some),
        None => Ok(None),
    }
}

/// The body of a queued message (one copy out of the page cache); a row
/// without a body is corruption.
pub(crate) fn load_body(
    bodies: &impl ReadableTable<&'static [u8; 16], &'static [u8]>,
    id: &Id,
) -> Result<Arc<[u8]>, Error> {
    match bodies.get(id)? {
        Some(guard) => Ok(Arc::from(guard.value())),
        None => Err(Error::corrupt(ENTITY, "a queued message has no body")),
    }
}

/// The lease on `id`, if any (lapsed or not).
pub(crate) fn load_lease(
    leases: &impl ReadableTable<&'static [u8; 16], &'static [u8; 24]>,
    id: &Id,
) -> Result<Option<Lease>, Error> {
    Ok(leases.get(id)?.map(|g| Lease::from_bytes(g.value())))
}

/// True if `id` is queued.
pub(crate) fn is_queued(tx: &Tx<'_>, id: &Id) -> Result<bool, Error> {
    Ok(tx.queue()?.get(id)?.is_some())
}

/// Writes a new message: row, body and index entries. The caller checked
/// that the id is free.
pub(crate) fn insert_message(tx: &Tx<'_>, m: &NewMessage) -> Result<(), Error> {
    tx.queue()?.insert(&m.id, m.row.as_slice())?;
    tx.queue_bodies()?.insert(&m.id, &*m.body)?;
    tx.queue_by_received()?
        .insert(&time_id(m.received_at, m.id), ())?;
    if let Some(at) = m.due_at {
        tx.queue_due()?.insert(&time_id(at, m.id), ())?;
    }
    if m.held {
        tx.queue_held()?.insert(&m.id, ())?;
    }
    Ok(())
}

/// Removes a message with its body, lease and index entries; `row` and
/// `lease` are what is stored.
pub(crate) fn remove_message(
    tx: &Tx<'_>,
    id: Id,
    row: &QueueRow<'_>,
    lease: Option<Lease>,
) -> Result<(), Error> {
    tx.queue()?.remove(&id)?;
    tx.queue_bodies()?.remove(&id)?;
    tx.queue_by_received()?
        .remove(&time_id(row.received_at, id))?;
    if lease.is_some() {
        tx.queue_leases()?.remove(&id)?;
    }
    if let Some(at) = row.due_at(lease) {
        tx.queue_due()?.remove(&time_id(at, id))?;
    }
    if row.held {
        tx.queue_held()?.remove(&id)?;
    }
    Ok(())
}

/// Moves `id`'s `queue_due` entry from `before` to `after`.
pub(crate) fn move_due(
    tx: &Tx<'_>,
    id: Id,
    before: Option<Timestamp>,
    after: Option<Timestamp>,
) -> Result<(), Error> {
    if before == after {
        return Ok(());
    }
    let mut due = tx.queue_due()?;
    if let Some(at) = before {
        due.remove(&time_id(at, id))?;
    }
    if let Some(at) = after {
        due.insert(&time_id(at, id), ())?;
    }
    Ok(())
}

/// Rewrites the row of `id` (never its body).
pub(crate) fn save_row(tx: &Tx<'_>, id: Id, row: &QueueRow<'_>) -> Result<(), Error> {
    tx.queue()?.insert(&id, encode(row)?.as_slice())?;
    Ok(())
}
