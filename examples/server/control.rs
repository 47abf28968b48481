//! The control socket: store commands for a running server.
//!
//! A redb file belongs to one process. While `serve` runs it listens on
//! `<data_dir>/control.sock` (a unix socket, mode 0600: only the server's
//! user may connect; a stale one is removed at start, the socket is removed
//! at shutdown). A command that finds the store in use sends its command
//! line here instead, and the server runs it with its own store handles.
//!
//! Protocol, one JSON document per line:
//!
//! * client → server: `{"argv": ["admin", "alias", "list"], "cwd": "/home/op"}`
//!   (the arguments after the program name; relative paths in them are
//!   resolved against `cwd`);
//! * server → client: `{"out": "…"}` (standard output), `{"err": "…"}`
//!   (standard error), then `{"exit": 0}` and the connection closes.
//!
//! The server parses the arguments with the same `Cli` as the command
//! line and refuses `serve`, `restore` and `migrate down` (exit 2, "stop the
//! server first").

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser as _;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::cli::{Ctx, Handles};
use crate::config::Config;
use crate::migrate::MigrateAction;
use crate::run::Failure;
use crate::{Cli, Command};

/// Longest request accepted (the command line as JSON).
const MAX_REQUEST: u64 = 64 * 1024;

/// `<data_dir>/control.sock`.
pub fn socket_path(config: &Config) -> PathBuf {
    config.data_dir.join("control.sock")
}

/// True if a server answers on the control socket.
pub fn server_running(config: &Config) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(config)).is_ok()
}

/// The listener of a running server.
pub struct Control {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

#[derive(Deserialize)]
struct Request {
    argv: Vec<String>,
    #[serde(default)]
    cwd: PathBuf,
}

impl Control {
    /// Listens on the control socket; runs each command with `handles`, and
    /// brings the signer up to date (`changed`) before answering.
    pub fn start(
        config: &Config,
        handles: Handles,
        changed: Arc<crate::jobs::KeySync>,
    ) -> Result<Control, Failure> {
        let path = socket_path(config);
        if path.exists() {
            if server_running(config) {
                return Err(Failure::Runtime(format!(
                    "another server answers on {}; stop it first",
                    path.display()
                )));
            }
            std::fs::remove_file(&path).map_err(|e| {
                Failure::Runtime(format!(
                    "cannot remove the stale control socket {}: {e}",
                    path.display()
                ))
            })?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| {
            Failure::Runtime(format!(
                "cannot listen on the control socket {}: {e}",
                path.display()
            ))
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| Failure::Runtime(format!("cannot restrict {}: {e}", path.display())),
            )?;
        }
        tracing::info!(path = %path.display(), "control socket listening");
        let (stop, mut stopped) = watch::channel(false);
        let config = Arc::new(config.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let (config, handles) = (Arc::clone(&config), handles.clone());
                            let changed = Arc::clone(&changed);
                            tokio::spawn(async move {
                                if let Err(e) = serve_one(stream, &config, &handles, &changed).await {
                                    tracing::warn!(error = %e, "control connection failed");
                                }
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "control socket accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        Ok(Control { stop, task, path })
    }

    /// Stops listening and removes the socket (commands in flight finish).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the control socket");
        }
    }
}

async fn send(stream: &mut UnixStream, message: serde_json::Value) -> std::io::Result<()> {
    let mut line = message.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

/// Reads one request, runs it, answers.
async fn serve_one(
    mut stream: UnixStream,
    config: &Config,
    handles: &Handles,
    changed: &crate::jobs::KeySync,
) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new((&mut stream).take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let (out, err, code) = match serde_json::from_str::<Request>(&line) {
        Ok(request) => execute(request, config, handles).await,
        Err(e) => (String::new(), format!("bad control request: {e}"), 2),
    };
    // Before answering: a domain the command created or rotated signs with
    // its keys by the time the operator's next step (say, a mail) begins.
    changed.sync().await;
    if !out.is_empty() {
        send(&mut stream, serde_json::json!({ "out": out })).await?;
    }
    if !err.is_empty() {
        send(&mut stream, serde_json::json!({ "err": err })).await?;
    }
    send(&mut stream, serde_json::json!({ "exit": code })).await?;
    stream.shutdown().await
}

/// Runs one forwarded command line: (stdout, stderr, exit code).
async fn execute(request: Request, config: &Config, handles: &Handles) -> (String, String, u8) {
    let argv = std::iter::once("server".to_owned()).chain(request.argv);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            return if e.use_stderr() {
                (String::new(), text, 2)
            } else {
                (text, String::new(), 0)
            };
        }
    };
    if cli.check_args {
        return ("ok\n".into(), String::new(), 0);
    }
    let command = cli.command.unwrap_or(Command::Serve);
    let refused = match &command {
        Command::Serve => Some("serve: a server is already running on this store"),
        Command::Restore { .. } => Some("restore: stop the server first"),
        Command::Migrate {
            action: MigrateAction::Down { .. },
        } => Some("migrate down: stop the server first"),
        Command::CheckConfig => Some("check-config runs without the server"),
        _ => None,
    };
    if let Some(reason) = refused {
        return (String::new(), reason.to_owned(), 2);
    }
    tracing::info!(command = %describe(&command), "control command");
    let ctx = Ctx {
        cwd: request.cwd,
        in_server: true,
    };
    let mut out: Vec<u8> = Vec::new();
    let result = crate::cli::dispatch(config, handles, &ctx, command, &mut out).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    match result {
        Ok(()) => (out, String::new(), 0),
        Err(Failure::Usage(msg)) => (out, msg, 2),
        Err(Failure::Runtime(msg)) => (out, format!("error: {msg}"), 1),
    }
}

/// The command's words, for the log (no arguments: they may name people).
fn describe(command: &Command) -> &'static str {
    match command {
        Command::Admin { .. } => "admin",
        Command::Dkim { .. } => "dkim",
        Command::Queue { .. } => "queue",
        Command::Backup { .. } => "backup",
        Command::Migrate { .. } => "migrate",
        _ => "other",
    }
}

/// Sends this process's command line to the server holding `store` and
/// relays its answer; returns the exit code.
pub async fn forward(config: &Config, store: &Path) -> Result<u8, Failure> {
    let path = socket_path(config);
    let mut stream = UnixStream::connect(&path).await.map_err(|e| {
        Failure::Runtime(format!(
            "{} is in use by another process, and no server answers on {} ({e}); if a \
             server is running, check its data_dir; otherwise another command holds the \
             store: retry when it is done",
            store.display(),
            path.display()
        ))
    })?;
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    send(&mut stream, serde_json::json!({ "argv": argv, "cwd": cwd }))
        .await
        .map_err(|e| Failure::Runtime(format!("control socket {}: {e}", path.display())))?;
    let mut lines = BufReader::new(stream).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| Failure::Runtime(format!("control socket {}: {e}", path.display())))?
    {
        let message: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            Failure::Runtime(format!("unexpected answer on the control socket: {e}"))
        })?;
        if let Some(text) = message.get("out").and_then(|v| v.as_str()) {
            use std::io::Write as _;
            let mut stdout = std::io::stdout();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(crate::cli::write_failed)?;
        }
        if let Some(text) = message.get("err").and_then(|v| v.as_str()) {
            eprintln!("{text}");
        }
        if let Some(code) = message.get("exit").and_then(serde_json::Value::as_u64) {
            return Ok(u8::try_from(code).unwrap_or(1));
        }
    }
    Err(Failure::Runtime(
        "the server closed the control connection without an answer".into(),
    ))
}
