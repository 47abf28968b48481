//! How a queued message maps to the `queue` and `queue_bodies` tables, and
//! the one insert every path shares (enqueue, group commit, follow-ups).

use std::sync::Arc;

use smtpy_core::StoreResult;
use smtpy_core::ids::{MessageId, UserId};
use smtpy_core::model::{LeaseToken, QueuedMessage};
use uuid::Uuid;

use crate::codec::{enum_text, json_text};
use crate::db::{Arg, DbError, Dialect, Row, Session, args};

/// Entity name in errors (the in-memory store's).
pub(crate) const ENTITY: &str = "queued message";

/// The columns of `queue` a message is read from, qualified by the table
/// name (an `UPDATE … FROM` on PostgreSQL would find `id` ambiguous); the
/// result columns keep the bare names [`message_from_row`] reads. Every
/// query selecting them also selects the body as `body`.
macro_rules! queue_columns {
    () => {
        "queue.id, queue.kind, queue.reverse_path, queue.original_sender, queue.recipients, \
         queue.owner_id, queue.received_at, queue.next_attempt_at, queue.expires_at, \
         queue.attempts, queue.held, queue.correlation_id"
    };
}
pub(crate) use queue_columns;

/// The body of the row's message, as a scalar subquery (usable in a
/// `RETURNING` list, which cannot name a joined table on SQLite).
macro_rules! body_column {
    () => {
        "(SELECT b.body FROM queue_bodies b WHERE b.id = queue.id) AS body"
    };
}
pub(crate) use body_column;

/// A message ready to insert: its columns encoded (on the caller's task,
/// before any lock is taken) and its body copied once into the argument.
#[derive(Debug)]
pub(crate) struct NewMessage {
    pub(crate) id: Uuid,
    /// The values of [`insert_columns!`], in order.
    pub(crate) row: Vec<Arg>,
    pub(crate) body: Vec<u8>,
}

/// The columns an insert into `queue` writes, [`NewMessage::row`]'s order
/// (the lease starts empty).
macro_rules! insert_columns {
    () => {
        "id, kind, reverse_path, original_sender, recipients, owner_id, received_at, \
         next_attempt_at, expires_at, attempts, held, correlation_id"
    };
}
pub(crate) use insert_columns;

/// How many columns [`insert_columns!`] names.
pub(crate) const INSERT_COLUMNS: usize = 12;

impl NewMessage {
    /// Encodes `m`; `Invalid` if a value cannot be stored.
    pub(crate) fn new(m: &QueuedMessage) -> StoreResult<Self> {
        Ok(Self {
            id: *m.id.as_uuid(),
            row: args![
                *m.id.as_uuid(),
                enum_text(&m.kind, ENTITY)?,
                m.reverse_path.as_ref().map(ToString::to_string),
                m.original_sender.as_ref().map(ToString::to_string),
                json_text(&m.recipients, ENTITY)?,
                m.owner,
                m.received_at,
                m.next_attempt_at,
                m.expires_at,
                i64::from(m.attempts),
                m.held,
                m.correlation_id.as_str(),
            ],
            body: m.body.to_vec(),
        })
    }

    /// Size of the body in bytes.
    pub(crate) fn body_len(&self) -> usize {
        self.body.len()
    }
}

/// Inserts a message: its row, then its body. `Ok(false)` — and nothing
/// written — if the id is taken (`ON CONFLICT DO NOTHING`, so a duplicate
/// never aborts the surrounding transaction).
///
/// On PostgreSQL both rows go in one statement (one round trip): the body's
/// `INSERT` reads the id the row's `INSERT` returned.
pub(crate) async fn insert(s: &mut Session, m: NewMessage) -> Result<bool, DbError> {
    let NewMessage { id, mut row, body } = m;
    match s.dialect() {
        Dialect::Sqlite => {
            const ROW: &str = concat!(
                "INSERT INTO queue (",
                insert_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (id) DO NOTHING"
            );
            if s.execute(ROW, row).await? == 0 {
                return Ok(false);
            }
            s.execute(
                "INSERT INTO queue_bodies (id, body) VALUES ($1, $2)",
                args![id, body],
            )
            .await?;
            Ok(true)
        }
        Dialect::Postgres => {
            row.push(Arg::from(body));
            const BOTH: &str = concat!(
                "WITH m AS (INSERT INTO queue (",
                insert_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (id) DO NOTHING RETURNING id) \
                 INSERT INTO queue_bodies (id, body) SELECT id, $13 FROM m"
            );
            Ok(s.execute(BOTH, row).await? > 0)
        }
    }
}

/// A message read with [`queue_columns!`] and [`body_column!`].
pub(crate) fn message_from_row(r: &Row) -> StoreResult<QueuedMessage> {
    let attempts =
        u32::try_from(r.u64("attempts")?).map_err(|_| r.corrupt("attempts is out of range"))?;
    let body: Option<Vec<u8>> = r.get("body")?;
    let body = body.ok_or_else(|| r.corrupt("a queued message has no body"))?;
    Ok(QueuedMessage {
        id: MessageId::from_uuid(r.uuid("id")?),
        kind: r.enum_value("kind")?,
        reverse_path: r.opt_address("reverse_path")?,
        original_sender: r.opt_address("original_sender")?,
        body: Arc::from(body),
        recipients: r.json("recipients")?,
        owner: r.opt_uuid("owner_id")?.map(UserId::from_uuid),
        received_at: r.ts("received_at")?,
        next_attempt_at: r.ts("next_attempt_at")?,
        expires_at: r.ts("expires_at")?,
        attempts,
        held: r.get("held")?,
        correlation_id: r.get("correlation_id")?,
    })
}

/// The `lease_token` column of a leased row.
pub(crate) fn lease_token(r: &Row) -> StoreResult<LeaseToken> {
    r.opt_uuid("lease_token")?
        .map(LeaseToken)
        .ok_or_else(|| r.corrupt("a leased message has no lease token"))
}
