//! One SMTP client session, on mail-send's [`SmtpClient`] (reply parsing,
//! EHLO, AUTH): opening it (greeting, EHLO, STARTTLS, AUTH), RSET and QUIT.
//! Transactions are in `transaction`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use mail_send::{Credentials, SmtpClient};
use rustls::pki_types::ServerName;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, EXT_START_TLS, EhloResponse, Response};
use smtpy_core::transport::DeliveryOutcome;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::config::{Timeouts, TlsMode};
use super::relay::RelayCredentials;
use super::tls::TlsConnectors;
use super::wire::{local_reply, reply_text};

/// The byte stream under a session: plaintext, or TLS after STARTTLS or
/// from the start.
pub(crate) enum SmtpStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for SmtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SmtpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            SmtpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SmtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SmtpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            SmtpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SmtpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            SmtpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SmtpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            SmtpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Everything needed to open a session, fixed per transport.
#[derive(Debug)]
pub(crate) struct SessionSetup {
    pub(crate) helo: String,
    pub(crate) tls_mode: TlsMode,
    pub(crate) tls: TlsConnectors,
    pub(crate) credentials: Option<RelayCredentials>,
    pub(crate) allow_plaintext_auth: bool,
    pub(crate) timeouts: Timeouts,
}

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// No TCP connection (refused, unreachable, timeout, no address).
    Connect,
    /// The connection broke or timed out, or a reply could not be parsed.
    Network,
    /// The server refused the session (greeting, EHLO / HELO).
    Refused,
    /// The TLS handshake failed.
    Tls,
    /// TLS is required and the server does not offer it, or credentials
    /// would go over plaintext.
    NoTls,
    /// Authentication failed or is impossible.
    Auth,
}

/// A session that could not be opened: a temporary failure for every
/// recipient it was for.
#[derive(Debug, Clone)]
pub(crate) struct SessionError {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

impl SessionError {
    pub(crate) fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The outcome for each recipient: always temporary (see the module
    /// documentation of `transport`), with an enhanced code after RFC 3463.
    pub(crate) fn outcome(&self) -> DeliveryOutcome {
        let enhanced = match self.kind {
            FailureKind::Connect => "4.4.1",
            FailureKind::Network | FailureKind::Refused => "4.4.2",
            FailureKind::Tls => "4.7.5",
            FailureKind::NoTls => "4.7.4",
            FailureKind::Auth => "4.7.8",
        };
        DeliveryOutcome::Temporary(local_reply(451, enhanced, self.detail.clone()))
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// One open, greeted (and possibly encrypted and authenticated) session.
pub(crate) struct Connection {
    pub(super) client: SmtpClient<SmtpStream>,
    pub(super) ehlo: EhloResponse<String>,
    pub(super) peer: SocketAddr,
    pub(super) tls: bool,
    /// Transactions that reached the end of DATA on this connection.
    pub(crate) transactions: u32,
}

/// Opens a session to `addr`; `server_name` is what the certificate is
/// checked against (and sent as SNI). In opportunistic mode a failed TLS
/// handshake is retried once in plaintext.
pub(crate) async fn open(
    addr: SocketAddr,
    server_name: &str,
    setup: &SessionSetup,
) -> Result<Connection, SessionError> {
    match open_with(addr, server_name, setup, setup.tls_mode).await {
        Err(e) if e.kind == FailureKind::Tls && setup.tls_mode == TlsMode::Opportunistic => {
            tracing::info!(%addr, server = server_name, error = %e, "TLS failed; retrying in plaintext");
            open_with(addr, server_name, setup, TlsMode::Never).await
        }
        other => other,
    }
}

async fn open_with(
    addr: SocketAddr,
    server_name: &str,
    setup: &SessionSetup,
    mode: TlsMode,
) -> Result<Connection, SessionError> {
    let t = &setup.timeouts;
    let fail =
        |kind, what: String| SessionError::new(kind, format!("{server_name} [{addr}]: {what}"));

    let tcp = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(fail(FailureKind::Connect, format!("connect failed: {e}"))),
        Err(_) => {
            return Err(fail(
                FailureKind::Connect,
                format!("connect timed out after {:?}", t.connect),
            ));
        }
    };
    // Commands are small and each waits for its reply.
    let _ = tcp.set_nodelay(true);

    let mut tls = false;
    let stream = if mode == TlsMode::Implicit {
        let stream = handshake(tcp, setup.tls.for_mode(mode), server_name, t.command)
            .await
            .map_err(|e| fail(FailureKind::Tls, e))?;
        tls = true;
        SmtpStream::Tls(Box::new(stream))
    } else {
        SmtpStream::Plain(tcp)
    };
    let mut client = SmtpClient {
        stream,
        timeout: t.command,
    };

    let greeting = match tokio::time::timeout(t.greeting, client.read()).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(fail(FailureKind::Network, format!("no greeting: {e}"))),
        Err(_) => {
            return Err(fail(
                FailureKind::Network,
                format!("no greeting within {:?}", t.greeting),
            ));
        }
    };
    if greeting.code / 100 != 2 {
        return Err(fail(
            FailureKind::Refused,
            format!("greeting: {}", reply_text(&greeting)),
        ));
    }

    let mut ehlo = hello(&mut client, &setup.helo)
        .await
        .map_err(|(kind, e)| fail(kind, e))?;

    if matches!(mode, TlsMode::Required | TlsMode::Opportunistic) {
        if ehlo.has_capability(EXT_START_TLS) {
            let reply = client
                .cmd(b"STARTTLS\r\n")
                .await
                .map_err(|e| fail(FailureKind::Network, format!("STARTTLS: {e}")))?;
            if reply.code == 220 {
                let SmtpClient { stream, timeout } = client;
                let SmtpStream::Plain(tcp) = stream else {
                    return Err(fail(FailureKind::Tls, "STARTTLS inside TLS".to_owned()));
                };
                let stream = handshake(tcp, setup.tls.for_mode(mode), server_name, t.command)
                    .await
                    .map_err(|e| fail(FailureKind::Tls, e))?;
                client = SmtpClient {
                    stream: SmtpStream::Tls(Box::new(stream)),
                    timeout,
                };
                tls = true;
                // RFC 3207 §4.2: forget what was learnt before TLS.
                ehlo = hello(&mut client, &setup.helo)
                    .await
                    .map_err(|(kind, e)| fail(kind, e))?;
            } else if mode == TlsMode::Required {
                return Err(fail(
                    FailureKind::NoTls,
                    format!(
                        "STARTTLS refused ({}) and TLS is required",
                        reply_text(&reply)
                    ),
                ));
            } else {
                tracing::debug!(%addr, reply = %reply_text(&reply), "STARTTLS refused; continuing in plaintext");
            }
        } else if mode == TlsMode::Required {
            return Err(fail(
                FailureKind::NoTls,
                "STARTTLS not offered and TLS is required".to_owned(),
            ));
        }
    }

    if let Some(credentials) = &setup.credentials {
        if !tls && !setup.allow_plaintext_auth {
            return Err(fail(
                FailureKind::NoTls,
                "the session is not encrypted; credentials are not sent in plaintext".to_owned(),
            ));
        }
        let mut offered = ehlo.clone();
        offered.auth_mechanisms &= AUTH_PLAIN | AUTH_LOGIN;
        if offered.auth_mechanisms == 0 {
            return Err(fail(
                FailureKind::Auth,
                "the server offers neither AUTH PLAIN nor AUTH LOGIN".to_owned(),
            ));
        }
        let credentials =
            Credentials::new(credentials.username.clone(), credentials.password.clone());
        // mail-send tries PLAIN before LOGIN; its errors never contain the
        // credentials.
        if let Err(e) = client.authenticate(&credentials, &offered).await {
            let what = match e {
                mail_send::Error::AuthenticationFailed(reply)
                | mail_send::Error::UnexpectedReply(reply) => {
                    format!("authentication refused: {}", reply_text(&reply))
                }
                other => format!("authentication failed: {other}"),
            };
            return Err(fail(FailureKind::Auth, what));
        }
    }

    tracing::debug!(%addr, server = server_name, tls, "SMTP session open");
    Ok(Connection {
        client,
        ehlo,
        peer: addr,
        tls,
        transactions: 0,
    })
}

async fn handshake(
    tcp: TcpStream,
    connector: Option<&TlsConnector>,
    server_name: &str,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, String> {
    let connector = connector.ok_or_else(|| "no TLS configuration for this mode".to_owned())?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("{server_name:?} is not a valid TLS server name"))?;
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err(format!("TLS handshake timed out after {timeout:?}")),
    }
}

/// EHLO, falling back to HELO when EHLO is rejected with 5xx
/// (RFC 5321 §4.1.4); after HELO no extension is known.
async fn hello(
    client: &mut SmtpClient<SmtpStream>,
    helo: &str,
) -> Result<EhloResponse<String>, (FailureKind, String)> {
    match client.ehlo(helo).await {
        Ok(ehlo) => Ok(ehlo),
        Err(mail_send::Error::UnexpectedReply(reply)) if reply.code / 100 == 5 => {
            let reply = client
                .cmd(format!("HELO {helo}\r\n"))
                .await
                .map_err(|e| (FailureKind::Network, format!("HELO: {e}")))?;
            if reply.code / 100 == 2 {
                Ok(EhloResponse::default())
            } else {
                Err((
                    FailureKind::Refused,
                    format!("HELO: {}", reply_text(&reply)),
                ))
            }
        }
        Err(mail_send::Error::UnexpectedReply(reply)) => Err((
            FailureKind::Refused,
            format!("EHLO: {}", reply_text(&reply)),
        )),
        Err(e) => Err((FailureKind::Network, format!("EHLO: {e}"))),
    }
}

impl Connection {
    /// The server's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one command line and reads its reply, within the command
    /// timeout.
    pub(super) async fn command(
        &mut self,
        command: &[u8],
        t: &Timeouts,
    ) -> mail_send::Result<Response<String>> {
        self.client.timeout = t.command;
        self.client.cmd(command).await
    }

    /// RSET before reusing an idle session: true when the server answered
    /// 2xx, so the session is alive and ready for MAIL FROM.
    pub(crate) async fn reset(&mut self, t: &Timeouts) -> bool {
        matches!(self.command(b"RSET\r\n", t).await, Ok(reply) if reply.code / 100 == 2)
    }

    /// QUIT and close, ignoring errors; bounded by `timeout`.
    pub(crate) async fn quit(mut self, timeout: Duration) {
        self.client.timeout = timeout;
        let _ = tokio::time::timeout(timeout, async {
            let _ = self.client.cmd(b"QUIT\r\n").await;
            let _ = self.client.stream.shutdown().await;
        })
        .await;
    }
}
