//! Output: the queue of replies and actions, and the ways a session ends.

use smtpy_core::reply::Reply;

use super::event::{Action, Awaiting, Event};
use super::{Pending, Phase, Session, SyncKind, replies};

impl Session {
    /// Queues a reply.
    pub(super) fn reply(&mut self, reply: &Reply) {
        self.sync = None;
        replies::encode(reply, &mut self.write_buf);
    }

    /// Queues a reply that counts as a protocol error; past the limit the
    /// session answers `421 4.7.0` instead and closes.
    pub(super) fn protocol_error(&mut self, reply: &Reply) {
        self.errors += 1;
        if self.errors > self.config.max_errors {
            tracing::debug!(peer = %self.peer.ip, errors = self.errors, "too many errors");
            self.reply(&replies::TOO_MANY_ERRORS);
            self.close();
        } else {
            self.reply(reply);
        }
    }

    /// Queues an action after the replies so far.
    pub(super) fn push_action(&mut self, action: Action) {
        self.sync = None;
        if !self.write_buf.is_empty() {
            self.out
                .push_back(Event::Write(std::mem::take(&mut self.write_buf)));
        }
        self.out.push_back(Event::Action(action));
    }

    /// Ends the session: [`Action::Close`] after the queued replies.
    pub(super) fn close(&mut self) {
        self.push_action(Action::Close);
        self.closed = true;
        self.pending = None;
        self.txn = None;
        self.phase = Phase::Command;
        self.input = Vec::new();
    }

    /// The client sent input before it could have read a synchronising
    /// reply: take that reply back, refuse, close.
    pub(super) fn sync_violation(&mut self) {
        let Some(sync) = self.sync.take() else {
            return;
        };
        self.write_buf.truncate(sync.mark);
        let reply = match sync.kind {
            SyncKind::Greeting => &replies::EARLY_TALKER,
            SyncKind::Data => &replies::DATA_SYNC_ERROR,
        };
        tracing::debug!(peer = %self.peer.ip, kind = ?sync.kind, "pipelining synchronisation violated");
        self.reply(reply);
        self.close();
    }

    /// Takes the pending answer if it is the expected kind.
    pub(super) fn take_pending(&mut self, expected: Awaiting) -> Option<Pending> {
        if self.awaiting() == Some(expected) {
            self.pending.take()
        } else {
            tracing::warn!(?expected, awaiting = ?self.awaiting(), "unexpected driver answer ignored");
            None
        }
    }
}
