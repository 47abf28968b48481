//! One client connection: the socket, the timers and the decisions around
//! a [`Session`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smtpy_core::metrics::{MESSAGES_REJECTED, Metrics, SMTP_SESSIONS, SMTP_SESSIONS_ACTIVE};
use smtpy_core::routing::Route;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use tracing::Instrument as _;

use super::Acceptor;
use super::accept::in_message;
use crate::session::{Action, Event, PeerInfo, Session, SessionConfig, Timeout, Verdict};

/// Window over which the minimum data rate is measured.
const RATE_WINDOW: Duration = Duration::from_secs(30);

/// The socket, plain or after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => write_flush(s, buf).await,
            Stream::Tls(s) => write_flush(s, buf).await,
        }
    }
    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        };
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, buf: &[u8]) -> std::io::Result<()> {
    s.write_all(buf).await?;
    s.flush().await
}

/// Counts messages the session refused for their size since the last call.
fn count_too_big(session: &Session, seen: &mut usize, metrics: &Metrics) {
    let now = session.too_big_count();
    if now > *seen {
        metrics.add(
            MESSAGES_REJECTED,
            &[("reason", "too_big")],
            (now - *seen) as u64,
        );
        *seen = now;
    }
}

/// Keeps `smtpy_smtp_sessions_active` up while a connection is served.
struct ActiveSession(std::sync::Arc<Metrics>);

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.shift(SMTP_SESSIONS_ACTIVE, &[], -1.0);
    }
}

/// Serves one connection to its end. Its log lines carry the session's
/// correlation id (span `session`); message `n` of the session is
/// `<session id>.<n>`.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    config: SessionConfig,
    acceptor: Acceptor,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let correlation = uuid::Uuid::now_v7().simple().to_string();
    let span = tracing::info_span!("session", correlation = %correlation, peer = %peer.ip());
    serve_session(tcp, peer, config, acceptor, tls, shutdown, correlation)
        .instrument(span)
        .await;
}

async fn serve_session(
    tcp: TcpStream,
    peer: SocketAddr,
    config: SessionConfig,
    acceptor: Acceptor,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    correlation: String,
) {
    let limits = config.time_limits;
    let info = PeerInfo::new(peer.ip()).with_tls_available(tls.is_some());
    let mut session = Session::new(config, info);
    let mut stream = Some(Stream::Plain(tcp));
    let started = Instant::now();
    let mut routes: HashMap<String, Route> = HashMap::new();
    let mut out: Vec<u8> = Vec::with_capacity(512);
    let mut buf = vec![0u8; 16 * 1024];
    let mut content_window: Option<(Instant, usize)> = None;
    let mut message_seq = 0u32;
    let mut stopping = *shutdown.borrow();
    let metrics = std::sync::Arc::clone(acceptor.metrics());
    metrics.inc(SMTP_SESSIONS, &[]);
    metrics.shift(SMTP_SESSIONS_ACTIVE, &[], 1.0);
    // Counts the session down however it ends (return, break, abort).
    let _active = ActiveSession(std::sync::Arc::clone(&metrics));
    let mut too_big = 0usize;

    'conn: loop {
        // Answer everything the session has to say or ask.
        count_too_big(&session, &mut too_big, &metrics);
        while let Some(event) = session.poll() {
            match event {
                Event::Write(bytes) => out.extend_from_slice(&bytes),
                Event::Action(Action::CheckSender { reverse_path, .. }) => {
                    let verdict = match acceptor
                        .check_sender(peer.ip(), reverse_path.as_ref())
                        .await
                    {
                        Ok(()) => Verdict::Accept,
                        Err(reply) if reply.is_temporary() => Verdict::TempFail(reply),
                        Err(reply) => Verdict::Reject(reply),
                    };
                    session.sender_result(verdict);
                }
                Event::Action(Action::CheckRecipient { forward_path, .. }) => {
                    let sender = session.envelope().and_then(|e| e.reverse_path.clone());
                    // RCPT belongs to the message this transaction will make.
                    let id = format!("{correlation}.{}", message_seq + 1);
                    let routed =
                        in_message(&id, acceptor.route(&forward_path, sender.as_ref())).await;
                    let verdict = match routed {
                        Ok(route) => {
                            routes.insert(forward_path.canonical(), route);
                            Verdict::Accept
                        }
                        Err(refusal) => {
                            if let Some(cause) = &refusal.cause {
                                tracing::warn!(correlation = %id, error = %cause, "recipient lookup failed");
                            }
                            if refusal.reply.is_temporary() {
                                Verdict::TempFail(refusal.reply)
                            } else {
                                Verdict::Reject(refusal.reply)
                            }
                        }
                    };
                    session.recipient_result(verdict);
                }
                Event::Action(Action::Message { envelope, body }) => {
                    message_seq += 1;
                    let id = format!("{correlation}.{message_seq}");
                    let reply = acceptor
                        .accept(&envelope, &routes, body, peer.ip(), &id)
                        .await;
                    tracing::info!(correlation = %id, peer = %peer.ip(), recipients = envelope.recipients.len(), reply = %reply, "message");
                    routes.clear();
                    session.message_result(reply);
                }
                Event::Action(Action::StartTls) => {
                    let Some(s) = stream.as_mut() else {
                        break 'conn;
                    };
                    if s.write_all(&out).await.is_err() {
                        break 'conn;
                    }
                    out.clear();
                    let (Some(Stream::Plain(tcp)), Some(tls)) = (stream.take(), tls.as_ref())
                    else {
                        break 'conn;
                    };
                    match tokio::time::timeout(limits.command, tls.accept(tcp)).await {
                        Ok(Ok(t)) => {
                            stream = Some(Stream::Tls(Box::new(t)));
                            session.tls_established();
                        }
                        _ => break 'conn,
                    }
                }
                Event::Action(Action::Close) => {
                    if let Some(s) = stream.as_mut() {
                        let _ = s.write_all(&out).await;
                        s.shutdown().await;
                    }
                    return;
                }
            }
        }
        let Some(s) = stream.as_mut() else { break };
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if session.is_closed() {
            s.shutdown().await;
            break;
        }
        if stopping && session.awaiting().is_none() && !session.is_receiving_content() {
            session.shutdown();
            continue;
        }
        // Wait for input, a timer, or shutdown.
        let lifetime_left = limits.session.saturating_sub(started.elapsed());
        let wait = limits.command.min(lifetime_left);
        tokio::select! {
            read = tokio::time::timeout(wait, s.read(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    if session.is_receiving_content() && limits.min_data_rate > 0 {
                        let (since, bytes) = content_window.get_or_insert((Instant::now(), 0));
                        *bytes += n;
                        let elapsed = since.elapsed();
                        if elapsed >= RATE_WINDOW {
                            let rate = *bytes as f64 / elapsed.as_secs_f64();
                            if rate < limits.min_data_rate as f64 {
                                session.timeout(Timeout::DataRate);
                                continue;
                            }
                            content_window = Some((Instant::now(), 0));
                        }
                    } else {
                        content_window = None;
                    }
                    session.feed(&buf[..n]);
                }
                Err(_) => session.timeout(if lifetime_left <= limits.command { Timeout::Session } else { Timeout::Command }),
            },
            // A closed channel means the server is gone: stop as well.
            changed = shutdown.changed(), if !stopping => {
                stopping = changed.is_err() || *shutdown.borrow();
            }
        }
    }
    count_too_big(&session, &mut too_big, &metrics);
}
