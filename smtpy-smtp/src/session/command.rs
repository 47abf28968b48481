//! Command lines: parsed with smtp-proto's [`Request::parse`], then each
//! command's checks and state transitions.

use std::borrow::Cow;

use smtp_proto::{
    Error as ProtoError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_BY_NOTIFY,
    MAIL_BY_RETURN, MAIL_BY_TRACE, MAIL_CONPERM, MAIL_REQUIRETLS, MAIL_RET_FULL, MAIL_RET_HDRS,
    MAIL_SMTPUTF8, MailFrom, RCPT_CONNEG, RCPT_RRVS_CONTINUE, RCPT_RRVS_REJECT, RcptTo, Request,
};
use smtpy_core::address::EmailAddress;
use smtpy_core::reply::Reply;

use super::data::{Body, DotState};
use super::event::{Action, BodyType, Envelope, ForwardPath, MailParams};
use super::{
    BdatChunk, BdatProgress, ChunkFate, ChunkRefusal, Helo, Pending, Phase, Session, SyncKind,
    SyncPoint, Transaction, path, replies,
};

impl Session {
    /// Handles one complete command line (terminator included).
    /// `more_input` says whether input follows it in the buffer.
    pub(super) fn handle_line(&mut self, line: &[u8], more_input: bool) {
        let content = strip_line_ending(line);
        if content.contains(&b'\r') {
            self.protocol_error(&replies::BARE_CR);
            return;
        }
        match Request::parse(&mut line.iter()) {
            Ok(request) => self.dispatch(request, content, more_input),
            Err(error) => self.parse_error(error, content),
        }
    }

    fn dispatch(&mut self, request: Request<Cow<'_, str>>, content: &[u8], more_input: bool) {
        match request {
            Request::Ehlo { host } => self.hello(&host, true),
            Request::Helo { host } => self.hello(&host, false),
            Request::Mail { from } => self.mail(&from, content),
            Request::Rcpt { to } => self.rcpt(&to, content),
            Request::Data => self.data(content, more_input),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                if has_arguments(content) {
                    self.protocol_error(&replies::NO_ARGUMENTS);
                } else {
                    self.txn = None;
                    self.reply(&replies::OK);
                }
            }
            Request::Noop { .. } => self.reply(&replies::OK),
            Request::Help { .. } => self.reply(&replies::HELP),
            Request::Vrfy { .. } => self.reply(&replies::VRFY),
            Request::Quit => {
                self.reply(&replies::BYE);
                self.close();
            }
            Request::StartTls => self.starttls(content),
            // LMTP only.
            Request::Lhlo { .. } => self.protocol_error(&replies::UNKNOWN_COMMAND),
            Request::Auth { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.protocol_error(&replies::NOT_IMPLEMENTED),
        }
    }

    fn parse_error(&mut self, error: ProtoError, content: &[u8]) {
        if verb(content).eq_ignore_ascii_case(b"BDAT") {
            // The chunk's size is unknown, so its octets cannot be skipped:
            // reading them as commands would be smuggling. Give up.
            self.reply(&replies::BAD_BDAT);
            self.close();
            return;
        }
        let reply = match error {
            ProtoError::InvalidSenderAddress => replies::BAD_SENDER,
            ProtoError::InvalidRecipientAddress => Reply::BAD_ADDRESS,
            ProtoError::SyntaxError { syntax } => replies::syntax_error(syntax),
            ProtoError::InvalidParameter { param } => {
                replies::syntax_error(&format!("invalid {param} parameter"))
            }
            ProtoError::UnsupportedParameter { param } => replies::unsupported_parameter(&param),
            ProtoError::UnknownCommand
            | ProtoError::NeedsMoreData { .. }
            | ProtoError::ResponseTooLong
            | ProtoError::InvalidResponse { .. } => replies::UNKNOWN_COMMAND,
        };
        self.protocol_error(&reply);
    }

    /// EHLO and HELO: a fresh start (RFC 5321 §4.1.4: an implicit RSET).
    fn hello(&mut self, host: &str, esmtp: bool) {
        self.txn = None;
        self.helo = Some(Helo {
            name: host.to_owned(),
            esmtp,
        });
        self.sync = None;
        if esmtp {
            let starttls = self.peer.tls_available && !self.tls_active;
            replies::ehlo(
                &self.hostname,
                self.config.max_message_size,
                starttls,
                &mut self.write_buf,
            );
        } else {
            replies::helo(&self.hostname, &mut self.write_buf);
        }
    }

    fn mail(&mut self, from: &MailFrom<Cow<'_, str>>, content: &[u8]) {
        let Some(esmtp) = self.helo.as_ref().map(|helo| helo.esmtp) else {
            self.protocol_error(&replies::NEED_HELO);
            return;
        };
        if self.txn.is_some() {
            self.protocol_error(&replies::NESTED_MAIL);
            return;
        }
        if self.messages >= self.config.max_messages {
            self.reply(&replies::TOO_MANY_MESSAGES);
            self.close();
            return;
        }
        let params = match mail_params(from, esmtp) {
            Ok(params) => params,
            Err(reply) => {
                self.protocol_error(&reply);
                return;
            }
        };
        if params
            .size
            .is_some_and(|size| size > self.config.max_message_size)
        {
            self.too_big += 1;
            self.reply(&replies::TOO_BIG);
            return;
        }
        let Some(raw) = path::bracketed(content) else {
            self.protocol_error(&replies::syntax_error(
                "MAIL FROM:<reverse-path> [parameters]",
            ));
            return;
        };
        let reverse_path = match path::reverse_path(raw, params.smtputf8) {
            Ok(reverse_path) => reverse_path,
            Err(reply) => {
                self.protocol_error(&reply);
                return;
            }
        };
        if self.config.check_sender {
            self.pending = Some(Pending::Sender {
                reverse_path: reverse_path.clone(),
                params,
            });
            self.push_action(Action::CheckSender {
                reverse_path,
                raw: String::from_utf8_lossy(raw).into_owned(),
                params,
            });
        } else {
            self.start_transaction(reverse_path, params);
        }
    }

    /// MAIL accepted: `250 2.1.0` and a new transaction.
    pub(super) fn start_transaction(
        &mut self,
        reverse_path: Option<EmailAddress>,
        params: MailParams,
    ) {
        let (helo, esmtp) = self
            .helo
            .as_ref()
            .map(|helo| (helo.name.clone(), helo.esmtp))
            .unwrap_or_default();
        self.txn = Some(Transaction {
            envelope: Envelope {
                helo,
                esmtp,
                tls: self.tls_active,
                reverse_path,
                recipients: Vec::new(),
                params,
            },
            body: None,
            bdat: None,
        });
        self.reply(&replies::SENDER_OK);
    }

    fn rcpt(&mut self, to: &RcptTo<Cow<'_, str>>, content: &[u8]) {
        if self.helo.is_none() {
            self.protocol_error(&replies::NEED_HELO);
            return;
        }
        let Some((smtputf8, accepted, in_bdat)) = self.txn.as_ref().map(|txn| {
            (
                txn.envelope.params.smtputf8,
                txn.envelope.recipients.len(),
                txn.bdat.is_some(),
            )
        }) else {
            self.protocol_error(&replies::NEED_MAIL);
            return;
        };
        if in_bdat {
            self.protocol_error(&replies::RCPT_AFTER_BDAT);
            return;
        }
        if let Some(param) = unsupported_rcpt_parameter(to) {
            self.protocol_error(&replies::unsupported_parameter(param));
            return;
        }
        let Some(raw) = path::bracketed(content) else {
            self.protocol_error(&replies::syntax_error(
                "RCPT TO:<forward-path> [parameters]",
            ));
            return;
        };
        let forward_path = match path::forward_path(raw, smtputf8) {
            Ok(forward_path) => forward_path,
            Err(reply) => {
                self.protocol_error(&reply);
                return;
            }
        };
        if accepted >= self.config.max_recipients {
            self.reply(&replies::TOO_MANY_RECIPIENTS);
            return;
        }
        match forward_path {
            ForwardPath::Postmaster => {
                if let Some(txn) = self.txn.as_mut()
                    && !txn.envelope.recipients.contains(&ForwardPath::Postmaster)
                {
                    txn.envelope.recipients.push(ForwardPath::Postmaster);
                }
                self.reply(&replies::POSTMASTER_OK);
            }
            ForwardPath::Mailbox(address) => {
                self.pending = Some(Pending::Recipient(address.clone()));
                self.push_action(Action::CheckRecipient {
                    forward_path: address,
                    raw: String::from_utf8_lossy(raw).into_owned(),
                });
            }
        }
    }

    fn data(&mut self, content: &[u8], more_input: bool) {
        if more_input {
            // RFC 2920 §3.1: DATA ends a pipelined group; the client must
            // wait for our reply. What follows would be content sent blind,
            // or commands hidden behind a refused DATA.
            tracing::debug!(peer = %self.peer.ip, "input pipelined after DATA");
            self.reply(&replies::DATA_SYNC_ERROR);
            self.close();
            return;
        }
        // Accepted or not, the reply to DATA is a synchronisation point.
        let mark = self.write_buf.len();
        match self.open_data(content) {
            Ok(()) => self.write_buf.extend_from_slice(replies::START_DATA),
            Err((reply, true)) => self.protocol_error(&reply),
            Err((reply, false)) => self.reply(&reply),
        }
        if !self.closed {
            self.sync = Some(SyncPoint {
                mark,
                kind: SyncKind::Data,
            });
        }
    }

    /// Checks DATA and enters the content phase, or says why not (and
    /// whether that is a protocol error).
    fn open_data(&mut self, content: &[u8]) -> Result<(), (Reply, bool)> {
        if has_arguments(content) {
            return Err((replies::NO_ARGUMENTS, true));
        }
        if self.helo.is_none() {
            return Err((replies::NEED_HELO, true));
        }
        let max_size = self.config.max_message_size;
        let Some(txn) = self.txn.as_mut() else {
            return Err((replies::NEED_MAIL, true));
        };
        if txn.bdat.is_some() {
            return Err((replies::DATA_AFTER_BDAT, true));
        }
        if txn.envelope.recipients.is_empty() {
            return Err((replies::NO_VALID_RECIPIENTS, false));
        }
        txn.body = Some(Body::new(max_size, txn.envelope.params.size));
        self.phase = Phase::Data(DotState::START);
        Ok(())
    }

    fn bdat(&mut self, size: usize, last: bool) {
        let max_size = self.config.max_message_size;
        let fate = match (self.helo.is_some(), self.txn.as_mut()) {
            (false, _) => ChunkFate::Refuse(ChunkRefusal::NeedHelo),
            (true, None) => ChunkFate::Refuse(ChunkRefusal::NeedMail),
            (true, Some(txn)) if txn.envelope.recipients.is_empty() => {
                ChunkFate::Refuse(ChunkRefusal::NoRecipients)
            }
            (true, Some(txn)) => {
                let so_far = txn.bdat.as_ref().map_or(0, |bdat| bdat.octets);
                if so_far.saturating_add(size) > max_size {
                    ChunkFate::Refuse(ChunkRefusal::TooBig)
                } else {
                    if txn.body.is_none() {
                        txn.body = Some(Body::new(max_size, txn.envelope.params.size));
                    }
                    txn.bdat.get_or_insert_with(BdatProgress::default);
                    ChunkFate::Keep
                }
            }
        };
        self.phase = Phase::Bdat(BdatChunk {
            size,
            remaining: size,
            last,
            fate,
        });
    }

    /// All octets of a BDAT chunk were read.
    pub(super) fn finish_chunk(&mut self, chunk: BdatChunk) {
        let refusal = match chunk.fate {
            ChunkFate::Refuse(refusal) => refusal,
            ChunkFate::Keep => {
                let Some(txn) = self.txn.as_mut() else {
                    return;
                };
                let (Some(body), Some(bdat)) = (txn.body.as_mut(), txn.bdat.as_mut()) else {
                    return;
                };
                bdat.octets = bdat.octets.saturating_add(chunk.size);
                if chunk.last {
                    bdat.normalizer.finish(body);
                }
                if body.is_overflow() {
                    ChunkRefusal::TooBig
                } else if chunk.last {
                    self.finish_message();
                    return;
                } else {
                    self.reply(&replies::chunk_received(chunk.size));
                    return;
                }
            }
        };
        match refusal {
            ChunkRefusal::NeedHelo => self.protocol_error(&replies::NEED_HELO),
            ChunkRefusal::NeedMail => self.protocol_error(&replies::NEED_MAIL),
            ChunkRefusal::NoRecipients => self.reply(&replies::NO_VALID_RECIPIENTS),
            ChunkRefusal::TooBig => {
                // RFC 3030 §2: a failed chunk fails the transaction.
                self.txn = None;
                self.too_big += 1;
                self.reply(&replies::TOO_BIG);
            }
        }
    }

    /// The content is complete: hand the message to the driver (or refuse
    /// it when it grew past the limit). Ends the transaction either way.
    pub(super) fn finish_message(&mut self) {
        let Some(mut txn) = self.txn.take() else {
            return;
        };
        let body = txn.body.take().unwrap_or_default();
        if body.is_overflow() {
            self.too_big += 1;
            self.reply(&replies::TOO_BIG);
            return;
        }
        self.messages += 1;
        self.pending = Some(Pending::Message);
        self.push_action(Action::Message {
            envelope: txn.envelope,
            body: body.into_vec(),
        });
    }

    fn starttls(&mut self, content: &[u8]) {
        if has_arguments(content) {
            self.protocol_error(&replies::NO_ARGUMENTS);
        } else if self.tls_active {
            self.protocol_error(&replies::TLS_ACTIVE);
        } else if !self.peer.tls_available {
            self.protocol_error(&replies::TLS_NOT_AVAILABLE);
        } else if self.helo.is_none() {
            self.protocol_error(&replies::NEED_HELO);
        } else {
            self.reply(&replies::TLS_GO_AHEAD);
            self.pending = Some(Pending::Tls);
            self.push_action(Action::StartTls);
        }
    }
}

/// The MAIL parameters smtpy supports, or the reply refusing the others.
fn mail_params(from: &MailFrom<Cow<'_, str>>, esmtp: bool) -> Result<MailParams, Reply> {
    if from.flags & MAIL_BODY_BINARYMIME != 0 {
        return Err(replies::BINARYMIME);
    }
    if let Some(param) = unsupported_mail_parameter(from) {
        return Err(replies::unsupported_parameter(param));
    }
    let body = if from.flags & MAIL_BODY_8BITMIME != 0 {
        Some(BodyType::EightBitMime)
    } else if from.flags & MAIL_BODY_7BIT != 0 {
        Some(BodyType::SevenBit)
    } else {
        None
    };
    let params = MailParams {
        size: (from.size > 0).then_some(from.size),
        body,
        smtputf8: from.flags & MAIL_SMTPUTF8 != 0,
    };
    if !esmtp && params != MailParams::default() {
        return Err(replies::PARAMS_NEED_EHLO);
    }
    Ok(params)
}

/// The first MAIL parameter smtp-proto understood but smtpy does not
/// advertise (DSN, DELIVERBY, FUTURERELEASE, …).
fn unsupported_mail_parameter(from: &MailFrom<Cow<'_, str>>) -> Option<&'static str> {
    let flags = from.flags;
    let known = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    [
        (flags & (MAIL_RET_FULL | MAIL_RET_HDRS) != 0, "RET"),
        (from.env_id.is_some(), "ENVID"),
        (flags & MAIL_REQUIRETLS != 0, "REQUIRETLS"),
        (flags & MAIL_CONPERM != 0, "CONPERM"),
        (
            from.by != 0 || flags & (MAIL_BY_NOTIFY | MAIL_BY_RETURN | MAIL_BY_TRACE) != 0,
            "BY",
        ),
        (from.hold_for != 0, "HOLDFOR"),
        (from.hold_until != 0, "HOLDUNTIL"),
        (from.mt_priority != 0, "MT-PRIORITY"),
        (from.auth.is_some(), "AUTH"),
        (from.solicit.is_some(), "SOLICIT"),
        (from.mtrk.is_some(), "MTRK"),
        (from.trans_id.is_some(), "TRANSID"),
        (flags & !known != 0, "parameter"),
    ]
    .into_iter()
    .find_map(|(present, name)| present.then_some(name))
}

/// The first RCPT parameter smtp-proto understood (smtpy supports none).
fn unsupported_rcpt_parameter(to: &RcptTo<Cow<'_, str>>) -> Option<&'static str> {
    let rrvs = RCPT_RRVS_REJECT | RCPT_RRVS_CONTINUE;
    [
        (to.orcpt.is_some(), "ORCPT"),
        (to.rrvs != 0 || to.flags & rrvs != 0, "RRVS"),
        (to.flags & RCPT_CONNEG != 0, "CONNEG"),
        (to.flags & !(rrvs | RCPT_CONNEG) != 0, "NOTIFY"),
    ]
    .into_iter()
    .find_map(|(present, name)| present.then_some(name))
}

/// `line` without its LF and the CR before it.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The command verb: the first word of the line.
fn verb(content: &[u8]) -> &[u8] {
    let content = content.trim_ascii_start();
    let end = content
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(content.len());
    content.get(..end).unwrap_or_default()
}

/// Whether anything follows the verb.
fn has_arguments(content: &[u8]) -> bool {
    content.trim_ascii().iter().any(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_helpers() {
        assert_eq!(strip_line_ending(b"QUIT\r\n"), b"QUIT");
        assert_eq!(strip_line_ending(b"QUIT\n"), b"QUIT");
        assert_eq!(verb(b"  bdat 12x LAST"), b"bdat");
        assert!(!has_arguments(b" DATA  "));
        assert!(has_arguments(b"DATA now"));
    }
}
