//! Applying one attempt's outcomes to a queued message (pure, so the retry
//! and expiry rules are tested without a transport or a store).

use smtpy_core::model::{QueuedMessage, RecipientState, RemoteReply};
use smtpy_core::time::Timestamp;
use smtpy_core::transport::DeliveryOutcome;

use super::RetrySchedule;

/// Records `outcomes` (one per index in `tried`, in order) on `message`
/// at `now`, schedules the next attempt, and returns the indexes of the
/// recipients that failed for good in this attempt (they need a DSN).
///
/// * Delivered → final.
/// * Permanent failure → final, failed.
/// * Temporary failure → stays pending with the reply kept, unless the
///   message's lifetime is over: then it fails ("expired").
/// * A missing outcome (a transport that returned too few) counts as a
///   temporary failure, so nothing is dropped.
///
/// The next attempt is `now + retry.delay_after(attempts)`, but never later
/// than the expiry, so the last attempt happens when the lifetime ends.
pub fn apply_outcomes(
    message: &mut QueuedMessage,
    tried: &[usize],
    outcomes: Vec<DeliveryOutcome>,
    now: Timestamp,
    retry: &RetrySchedule,
) -> Vec<usize> {
    message.attempts = message.attempts.saturating_add(1);
    let expired = now >= message.expires_at;
    let mut outcomes = outcomes.into_iter();
    let mut failed = Vec::new();
    for &i in tried {
        let Some(r) = message.recipients.get_mut(i) else {
            continue;
        };
        if r.state.is_final() {
            continue;
        }
        r.attempts = r.attempts.saturating_add(1);
        let outcome = outcomes.next().unwrap_or_else(|| {
            DeliveryOutcome::temporary("the transport returned no outcome for this recipient")
        });
        match outcome {
            DeliveryOutcome::Delivered(reply) => {
                r.state = RecipientState::Delivered { at: now, reply };
            }
            DeliveryOutcome::Permanent(reply) => {
                r.state = RecipientState::Failed {
                    at: now,
                    reason: reply.to_string(),
                    reply: Some(reply),
                };
                failed.push(i);
            }
            DeliveryOutcome::Temporary(reply) => {
                if expired {
                    r.state = RecipientState::Failed {
                        at: now,
                        reason: format!(
                            "gave up after {} attempts; last reply: {reply}",
                            r.attempts
                        ),
                        reply: Some(expired_reply(&reply)),
                    };
                    failed.push(i);
                }
                r.last_reply = Some(reply);
            }
            // Outcomes added later are treated as temporary: retried, never lost.
            _ => {}
        }
    }
    let next = now.saturating_add(retry.delay_after(message.attempts));
    message.next_attempt_at = if next > message.expires_at && !expired {
        message.expires_at
    } else {
        next
    };
    failed
}

fn expired_reply(last: &RemoteReply) -> RemoteReply {
    RemoteReply {
        code: last.code,
        enhanced: Some("4.4.7".into()),
        text: format!("message expired; last reply: {}", last.text),
    }
}
