//! `server queue …`: look at and act on the delivery queue.
//!
//! `list` prints one message per line:
//! `<id> <queued|held> attempts=<n> next=<UTC time> rcpts=<pending>/<total> age=<age>`.

use clap::Subcommand;
use smtpy::core::StoreError;
use smtpy::core::ids::MessageId;
use smtpy::core::model::{QueuedMessage, RecipientState};
use smtpy::core::store::{PageRequest, QueueStore};
use smtpy::core::time::{Clock, SystemClock, Timestamp};

use crate::admin::store_err;
use crate::cli::{Out, say};
use crate::run::Failure;

/// `queue …`
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// List queued messages: id, state, attempts, next attempt, recipients, age.
    List {
        /// Only messages held by an operator.
        #[arg(long)]
        held: bool,
    },
    /// One message: envelope, recipients and their last replies (not the body).
    Show {
        /// The message id (from `queue list`).
        id: String,
    },
    /// Make a message (or every message not held) due now.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Retry {
        /// The message id.
        id: Option<String>,
        /// Every message that is not held.
        #[arg(long)]
        all: bool,
    },
    /// Drop one message without delivering it (no bounce is sent).
    Delete {
        /// The message id.
        id: String,
    },
    /// Drop many messages; prints how many.
    Purge {
        /// Only held messages.
        #[arg(long)]
        held: bool,
        /// Only messages received longer ago than this, e.g. `7d`, `12h`.
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
    },
}

/// Runs a `queue` command.
pub async fn run(queue: &dyn QueueStore, action: QueueAction, out: Out<'_>) -> Result<(), Failure> {
    let now = SystemClock.now();
    match action {
        QueueAction::List { held } => {
            let mut shown = 0usize;
            for_each(queue, |m| {
                if !held || m.held {
                    shown += 1;
                    let pending = m.recipients.iter().filter(|r| !r.state.is_final()).count();
                    say!(
                        out,
                        "{} {:<6} attempts={} next={} rcpts={}/{} age={}",
                        m.id,
                        if m.held { "held" } else { "queued" },
                        m.attempts,
                        utc(m.next_attempt_at),
                        pending,
                        m.recipients.len(),
                        age(now, m.received_at)
                    );
                }
                Ok(())
            })
            .await?;
            if shown == 0 {
                tracing::debug!("the queue is empty");
            }
            Ok(())
        }
        QueueAction::Show { id } => {
            let m = get(queue, &id).await?;
            say!(out, "id: {}", m.id);
            say!(out, "kind: {:?}", m.kind);
            say!(out, "state: {}", if m.held { "held" } else { "queued" });
            say!(
                out,
                "from: <{}>",
                m.reverse_path
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            if let Some(s) = &m.original_sender {
                say!(out, "original sender: {s}");
            }
            say!(out, "received: {}", utc(m.received_at));
            say!(out, "next attempt: {}", utc(m.next_attempt_at));
            say!(out, "expires: {}", utc(m.expires_at));
            say!(out, "attempts: {}", m.attempts);
            say!(out, "size: {} bytes", m.body.len());
            say!(out, "correlation id: {}", m.correlation_id);
            for r in &m.recipients {
                let (state, reply) = match &r.state {
                    RecipientState::Pending => ("pending", r.last_reply.as_ref()),
                    RecipientState::Delivered { reply, .. } => ("delivered", reply.as_ref()),
                    RecipientState::Failed { reply, .. } => ("failed", reply.as_ref()),
                    _ => ("unknown", None),
                };
                say!(
                    out,
                    "recipient: {} {state} attempts={} last={}",
                    r.address,
                    r.attempts,
                    reply.map_or_else(|| "-".to_owned(), ToString::to_string)
                );
            }
            Ok(())
        }
        QueueAction::Retry { id: Some(id), .. } => {
            let m = get(queue, &id).await?;
            queue.retry_now(m.id, now).await.map_err(store_err)?;
            say!(out, "message {} is due now", m.id);
            Ok(())
        }
        QueueAction::Retry { id: None, .. } => {
            let mut ids = Vec::new();
            for_each(queue, |m| {
                if !m.held {
                    ids.push(m.id);
                }
                Ok(())
            })
            .await?;
            let mut n = 0usize;
            for id in ids {
                match queue.retry_now(id, now).await {
                    Ok(()) => n += 1,
                    Err(StoreError::NotFound { .. }) => {} // delivered meanwhile
                    Err(e) => return Err(store_err(e)),
                }
            }
            say!(out, "{n} messages are due now");
            Ok(())
        }
        QueueAction::Delete { id } => {
            let m = get(queue, &id).await?;
            queue.delete_queued(m.id).await.map_err(store_err)?;
            say!(
                out,
                "deleted message {} from <{}> to {} recipient(s), received {}",
                m.id,
                m.reverse_path
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                m.recipients.len(),
                utc(m.received_at)
            );
            Ok(())
        }
        QueueAction::Purge { held, older_than } => {
            let cutoff = match older_than {
                Some(text) => {
                    let d = crate::config::parse_duration(&text).ok_or_else(|| {
                        Failure::Usage(format!(
                            "--older-than: {text:?} is not a duration; examples: 7d, 12h, 30m"
                        ))
                    })?;
                    Some(now.saturating_sub(d))
                }
                None => None,
            };
            let mut ids = Vec::new();
            for_each(queue, |m| {
                if (!held || m.held) && cutoff.is_none_or(|c| m.received_at < c) {
                    ids.push(m.id);
                }
                Ok(())
            })
            .await?;
            let mut n = 0usize;
            for id in ids {
                match queue.delete_queued(id).await {
                    Ok(()) => n += 1,
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(store_err(e)),
                }
            }
            say!(out, "{n} messages purged");
            Ok(())
        }
    }
}

/// Calls `f` for every queued message, a page at a time.
async fn for_each(
    queue: &dyn QueueStore,
    mut f: impl FnMut(&QueuedMessage) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut after = None;
    loop {
        let page = queue
            .list_queue(PageRequest { after, limit: 200 })
            .await
            .map_err(store_err)?;
        for m in &page.items {
            f(m)?;
        }
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(()),
        }
    }
}

async fn get(queue: &dyn QueueStore, id: &str) -> Result<QueuedMessage, Failure> {
    let parsed: MessageId = id.parse().map_err(|_| {
        Failure::Usage(format!(
            "{id:?} is not a message id (see `queue list` for ids)"
        ))
    })?;
    match queue.get_queued(parsed).await {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound { .. }) => Err(Failure::Usage(format!(
            "no message {id} in the queue (delivered, expired or deleted)"
        ))),
        Err(e) => Err(store_err(e)),
    }
}

/// `2026-11-25T06:40:00Z`.
pub fn utc(t: Timestamp) -> String {
    let secs = t.as_unix_secs();
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How long ago `then` was: `42s`, `5m`, `3h`, `2d`.
fn age(now: Timestamp, then: Timestamp) -> String {
    let s = now.duration_since(then).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::utc;
    use smtpy::core::time::Timestamp;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(Timestamp::from_unix_secs(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            utc(Timestamp::from_unix_secs(1_709_210_096)),
            "2024-02-29T12:34:56Z"
        );
    }
}
