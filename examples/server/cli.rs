//! What every store command shares: opening the store with concrete
//! handles, the output sink, and the dispatch used both from the command
//! line and by the control socket of a running server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use smtpy::core::Store;
use smtpy::core::store::QueueStore;

use crate::Command;
use crate::config::Config;
use crate::run::Failure;

/// Where a command writes its results (stdout, or the control socket's buffer).
pub type Out<'a> = &'a mut (dyn std::io::Write + Send);

/// `writeln!` into an [`Out`], turning a write error into a [`Failure`].
macro_rules! say {
    ($out:expr) => {
        writeln!($out).map_err($crate::cli::write_failed)?
    };
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).map_err($crate::cli::write_failed)?
    };
}
pub(crate) use say;

/// The output could not be written (closed pipe, full disk).
pub fn write_failed(e: std::io::Error) -> Failure {
    Failure::Runtime(format!("cannot write the output: {e}"))
}

/// The open store: the trait objects everything uses, and the concrete
/// backend for what only it can do (backups, migrations).
#[derive(Clone)]
pub struct Handles {
    /// Everything but the queue.
    pub store: Arc<dyn Store>,
    /// The queue.
    pub queue: Arc<dyn QueueStore>,
    /// The backend behind both.
    pub backend: Backend,
}

/// The concrete store.
#[derive(Clone)]
pub enum Backend {
    /// `redb://…`
    Redb(Arc<smtpy::redb::RedbStore>),
    /// `sqlite:…` or `postgres://…`
    Sql(Arc<smtpy_store_sql::SqlStore>),
}

/// Which store `store.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A redb file.
    Redb(PathBuf),
    /// A SQLite file (`None` for an in-memory database).
    Sqlite(Option<PathBuf>),
    /// PostgreSQL.
    Postgres,
}

/// The kind of store of `config`.
pub fn store_kind(config: &Config) -> StoreKind {
    let url = config.store_url.as_str();
    if let Some(path) = url.strip_prefix("redb://") {
        return StoreKind::Redb(PathBuf::from(path));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
            return StoreKind::Sqlite(None);
        }
        return StoreKind::Sqlite(Some(PathBuf::from(path)));
    }
    StoreKind::Postgres
}

/// Why the store did not open.
#[derive(Debug)]
pub enum OpenFailure {
    /// The redb file belongs to another process (a running server).
    InUse(PathBuf),
    /// Anything else.
    Failed(Failure),
}

impl From<OpenFailure> for Failure {
    fn from(e: OpenFailure) -> Failure {
        match e {
            OpenFailure::InUse(path) => Failure::Runtime(format!(
                "store.url: {} is in use by another process (a running server?): a redb store \
                 belongs to one process; stop the other process, or use the SQL store",
                path.display()
            )),
            OpenFailure::Failed(f) => f,
        }
    }
}

/// Opens the store named by `store.url`. `migrate`: apply pending SQL
/// migrations on connect (everything but the `migrate` command does).
/// A SQLite file is created on first use unless the URL says otherwise.
pub async fn open(config: &Config, migrate: bool) -> Result<Handles, OpenFailure> {
    match store_kind(config) {
        StoreKind::Redb(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    OpenFailure::Failed(Failure::Runtime(format!(
                        "store.url: cannot create {}: {e}",
                        parent.display()
                    )))
                })?;
            }
            let store = smtpy::redb::RedbStore::builder()
                .cache_size(config.store_cache_size)
                .open(&path)
                .map_err(|e| match e {
                    smtpy::redb::OpenError::AlreadyOpen => OpenFailure::InUse(path.clone()),
                    e => OpenFailure::Failed(Failure::Runtime(format!(
                        "store.url: cannot open {}: {e}",
                        path.display()
                    ))),
                })?;
            let store = Arc::new(store);
            Ok(Handles {
                store: store.clone() as Arc<dyn Store>,
                queue: store.clone() as Arc<dyn QueueStore>,
                backend: Backend::Redb(store),
            })
        }
        kind @ (StoreKind::Sqlite(_) | StoreKind::Postgres) => {
            if let StoreKind::Sqlite(Some(path)) = &kind
                && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    OpenFailure::Failed(Failure::Runtime(format!(
                        "store.url: cannot create {}: {e}",
                        parent.display()
                    )))
                })?;
            }
            let url = config.store_url.as_str();
            let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            } else {
                url.to_owned()
            };
            let store = smtpy_store_sql::SqlStoreOptions::new()
                .migrate_on_connect(migrate)
                .connect(&url)
                .await
                .map_err(|e| {
                    let message = format!("store.url: cannot open {}: {e}", redact(&url));
                    OpenFailure::Failed(match e {
                        smtpy::core::StoreError::Invalid { .. } => Failure::Usage(message),
                        _ => Failure::Runtime(message),
                    })
                })?;
            let store = Arc::new(store);
            Ok(Handles {
                store: store.clone() as Arc<dyn Store>,
                queue: store.clone() as Arc<dyn QueueStore>,
                backend: Backend::Sql(store),
            })
        }
    }
}

/// A store URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Where the command runs: relative paths in arguments are resolved
/// against the caller's directory (which the control socket forwards).
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller's working directory.
    pub cwd: PathBuf,
    /// True when a running server executes the command for a client.
    pub in_server: bool,
}

impl Ctx {
    /// The context of this process.
    pub fn here() -> Ctx {
        Ctx {
            cwd: std::env::current_dir().unwrap_or_default(),
            in_server: false,
        }
    }

    /// `path`, relative to the caller's directory when it is relative.
    pub fn path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.cwd.join(path)
        }
    }
}

/// True if the command needs the store (and so, on redb, goes through the
/// control socket while a server runs).
fn uses_store(command: &Command) -> bool {
    matches!(
        command,
        Command::Admin { .. }
            | Command::Dkim { .. }
            | Command::Queue { .. }
            | Command::Backup { .. }
            | Command::Migrate { .. }
    )
}

/// Runs a command (not `serve`) in this process; returns the exit code.
/// On a redb store held by a running server, forwards the command line to
/// it over the control socket instead.
pub async fn run_local(config: &Config, command: Command) -> Result<u8, Failure> {
    let ctx = Ctx::here();
    let mut stdout = std::io::stdout();
    match command {
        Command::Serve => Err(Failure::Usage("serve runs in main".into())),
        Command::CheckConfig => {
            print!("{}", config.render());
            Ok(0)
        }
        Command::Restore { from, force } => {
            crate::backup::restore(config, &ctx.path(&from), force, &mut stdout).await?;
            Ok(0)
        }
        command if uses_store(&command) => {
            if let Some(code) = crate::migrate::before_open(config, &command, &mut stdout)? {
                return Ok(code);
            }
            let migrate = !matches!(command, Command::Migrate { .. });
            let handles = match open(config, migrate).await {
                Ok(h) => h,
                Err(OpenFailure::InUse(path)) => {
                    return crate::control::forward(config, &path).await;
                }
                Err(e) => return Err(e.into()),
            };
            let result = dispatch(config, &handles, &ctx, command, &mut stdout).await;
            if let Backend::Sql(sql) = &handles.backend {
                sql.close().await;
            }
            result.map(|()| 0)
        }
        _ => Err(Failure::Usage("this command does not use the store".into())),
    }
}

/// Runs a store command with open handles, writing results to `out`.
pub async fn dispatch(
    config: &Config,
    handles: &Handles,
    ctx: &Ctx,
    command: Command,
    out: Out<'_>,
) -> Result<(), Failure> {
    match command {
        Command::Admin { what } => crate::admin::run(config, handles, ctx, what, out).await,
        Command::Dkim { action } => crate::dkim::run(config, &*handles.store, action, out).await,
        Command::Queue { action } => crate::queue::run(&*handles.queue, action, out).await,
        Command::Migrate { action } => crate::migrate::run(handles, ctx, action, out).await,
        Command::Backup { out: path } => {
            crate::backup::backup(config, handles, &ctx.path(&path), out).await
        }
        Command::Serve | Command::CheckConfig | Command::Restore { .. } => Err(Failure::Usage(
            "this command does not run against an open store".into(),
        )),
    }
}
