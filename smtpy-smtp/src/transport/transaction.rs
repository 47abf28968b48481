//! One transaction on an open session: MAIL FROM, RCPT TO with a reply per
//! recipient, DATA with the transparency procedure, and what each reply
//! means for each recipient.

use std::fmt::Write as _;

use smtp_proto::{EXT_8BIT_MIME, EXT_SIZE, EXT_SMTP_UTF8, Response};
use smtpy_core::address::EmailAddress;
use smtpy_core::transport::DeliveryOutcome;
use tokio::io::AsyncWriteExt;

use super::client::Connection;
use super::config::Timeouts;
use super::wire::{
    DotStuffer, failure_of, local_reply, outcome_of, remote_reply, reply_text, wire_address,
};

/// How much of the message is stuffed and written at a time.
const DATA_CHUNK: usize = 64 * 1024;

/// One transaction: MAIL FROM, RCPT TO per recipient, DATA.
pub(crate) struct Transaction<'a> {
    pub(crate) reverse_path: Option<&'a EmailAddress>,
    pub(crate) recipients: &'a [&'a EmailAddress],
    pub(crate) message: &'a [u8],
}

/// What a transaction produced.
pub(crate) struct Sent {
    /// One per recipient, in order.
    pub(crate) outcomes: Vec<DeliveryOutcome>,
    /// Whether the session is still in step with the server (every command
    /// got a reply, none was 421), so it may be reused after RSET.
    pub(crate) reusable: bool,
}

impl Connection {
    /// Runs one transaction; never fails as a whole (see [`Sent`]).
    pub(crate) async fn send(&mut self, txn: &Transaction<'_>, t: &Timeouts) -> Sent {
        let mut outcomes: Vec<Option<DeliveryOutcome>> = vec![None; txn.recipients.len()];
        let reusable = self.run(txn, t, &mut outcomes).await;
        let outcomes = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| DeliveryOutcome::temporary("no reply for this recipient")))
            .collect();
        Sent { outcomes, reusable }
    }

    /// Fills `outcomes`; returns whether the session can be reused.
    async fn run(
        &mut self,
        txn: &Transaction<'_>,
        t: &Timeouts,
        outcomes: &mut [Option<DeliveryOutcome>],
    ) -> bool {
        let smtputf8 = self.ehlo.has_capability(EXT_SMTP_UTF8);
        if txn
            .reverse_path
            .is_some_and(EmailAddress::requires_smtputf8)
            && !smtputf8
        {
            fill(outcomes, &no_smtputf8("the sender address"));
            return true;
        }
        let size = self.ehlo.size;
        if self.ehlo.has_capability(EXT_SIZE) && size > 0 && txn.message.len() > size {
            let reply = local_reply(
                552,
                "5.3.4",
                format!(
                    "message of {} bytes exceeds the {size} bytes {} accepts",
                    txn.message.len(),
                    self.peer
                ),
            );
            fill(outcomes, &DeliveryOutcome::Permanent(reply));
            return true;
        }
        for (slot, recipient) in outcomes.iter_mut().zip(txn.recipients) {
            if recipient.requires_smtputf8() && !smtputf8 {
                *slot = Some(no_smtputf8("the recipient address"));
            }
        }
        if outcomes.iter().all(Option::is_some) {
            return true;
        }

        let mut mail = format!(
            "MAIL FROM:<{}>",
            txn.reverse_path.map(wire_address).unwrap_or_default()
        );
        if self.ehlo.has_capability(EXT_SIZE) {
            let _ = write!(mail, " SIZE={}", txn.message.len());
        }
        if !txn.message.is_ascii() && self.ehlo.has_capability(EXT_8BIT_MIME) {
            mail.push_str(" BODY=8BITMIME");
        }
        let needs_smtputf8 = txn
            .reverse_path
            .is_some_and(EmailAddress::requires_smtputf8)
            || txn.recipients.iter().any(|r| r.requires_smtputf8());
        if needs_smtputf8 && smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let reply = match self.command(mail.as_bytes(), t).await {
            Ok(reply) => reply,
            Err(e) => return self.lost(outcomes, "MAIL FROM", &e),
        };
        if reply.code / 100 != 2 {
            tracing::debug!(peer = %self.peer, reply = %reply_text(&reply), "MAIL FROM refused");
            fill(outcomes, &failure_of(&reply));
            return in_step(&reply);
        }

        let mut accepted = Vec::with_capacity(txn.recipients.len());
        for (i, recipient) in txn.recipients.iter().enumerate() {
            if outcomes[i].is_some() {
                continue;
            }
            let rcpt = format!("RCPT TO:<{}>\r\n", wire_address(recipient));
            let reply = match self.command(rcpt.as_bytes(), t).await {
                Ok(reply) => reply,
                Err(e) => return self.lost(outcomes, "RCPT TO", &e),
            };
            if reply.code / 100 == 2 {
                accepted.push(i);
                continue;
            }
            outcomes[i] = Some(outcome_of(&reply));
            if !in_step(&reply) {
                // 421 or an out-of-sequence reply: the session is over and
                // nothing else can be trusted.
                fill(outcomes, &DeliveryOutcome::Temporary(remote_reply(&reply)));
                return false;
            }
        }
        if accepted.is_empty() {
            return true;
        }

        let reply = match self.command(b"DATA\r\n", t).await {
            Ok(reply) => reply,
            Err(e) => return self.lost(outcomes, "DATA", &e),
        };
        if reply.code != 354 {
            let outcome = failure_of(&reply);
            for &i in &accepted {
                outcomes[i] = Some(outcome.clone());
            }
            return in_step(&reply);
        }
        let reply = match tokio::time::timeout(t.data, self.write_data(txn.message)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return self.lost(outcomes, "end of data", &e),
            Err(_) => {
                return self.lost(outcomes, "end of data", &mail_send::Error::Timeout);
            }
        };
        self.transactions = self.transactions.saturating_add(1);
        let outcome = outcome_of(&reply);
        for &i in &accepted {
            outcomes[i] = Some(outcome.clone());
        }
        tracing::debug!(peer = %self.peer, tls = self.tls, reply = %reply_text(&reply), recipients = accepted.len(), "end of data");
        reply.code / 100 == 2 || in_step(&reply)
    }

    /// Writes the message with the transparency procedure and `.CRLF`, and
    /// reads the final reply.
    async fn write_data(&mut self, message: &[u8]) -> mail_send::Result<Response<String>> {
        let mut stuffer = DotStuffer::default();
        let mut buf = Vec::with_capacity(DATA_CHUNK.min(message.len()) + 64);
        for chunk in message.chunks(DATA_CHUNK) {
            buf.clear();
            stuffer.push(chunk, &mut buf);
            self.client.stream.write_all(&buf).await?;
        }
        buf.clear();
        stuffer.finish(&mut buf);
        self.client.stream.write_all(&buf).await?;
        self.client.stream.flush().await?;
        self.client.read().await
    }

    /// The connection broke during `stage`: every recipient without an
    /// outcome fails temporarily, and the session is not reusable.
    fn lost(
        &self,
        outcomes: &mut [Option<DeliveryOutcome>],
        stage: &str,
        error: &mail_send::Error,
    ) -> bool {
        let what = match error {
            mail_send::Error::Timeout => "timed out".to_owned(),
            mail_send::Error::UnparseableReply => {
                "connection closed or unparseable reply".to_owned()
            }
            other => other.to_string(),
        };
        tracing::info!(peer = %self.peer, stage, error = %what, "SMTP session lost");
        let outcome = DeliveryOutcome::Temporary(local_reply(
            451,
            "4.4.2",
            format!("{}: connection lost at {stage}: {what}", self.peer),
        ));
        fill(outcomes, &outcome);
        false
    }
}

/// Sets every empty slot to `outcome`.
fn fill(outcomes: &mut [Option<DeliveryOutcome>], outcome: &DeliveryOutcome) {
    for slot in outcomes.iter_mut().filter(|slot| slot.is_none()) {
        *slot = Some(outcome.clone());
    }
}

/// A negative reply that leaves the session usable: 4xx or 5xx, but not
/// 421 (the server is closing the connection).
fn in_step(reply: &Response<String>) -> bool {
    matches!(reply.code / 100, 4 | 5) && reply.code != 421
}

fn no_smtputf8(what: &str) -> DeliveryOutcome {
    DeliveryOutcome::Permanent(local_reply(
        553,
        "5.6.7",
        format!("{what} needs SMTPUTF8, which the server does not support"),
    ))
}
