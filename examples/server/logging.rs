//! The server's log: human-readable (`pretty`) or one JSON object per line
//! (`json`), on standard error, behind a filter that can be replaced while
//! the server runs (`[log] level` on SIGHUP).
//!
//! Every line about a message carries its correlation id: as the field
//! `correlation` of the line itself, or of one of its spans (`session`,
//! `message`, `delivery`). In JSON the line's own fields are at the top
//! level (`"message"`, `"correlation"`, …), the innermost span is under
//! `"span"` and every enclosing span under `"spans"`.

use std::io::IsTerminal as _;
use std::str::FromStr;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (ANSI colours on a terminal).
    #[default]
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "{other:?} is not a log format; expected \"pretty\" or \"json\""
            )),
        }
    }
}

/// The filter layer, reloadable.
type FilterLayer = reload::Layer<EnvFilter, Registry>;
/// What the output layer sits on.
type Filtered = Layered<FilterLayer, Registry>;

/// Changes the installed log filter while the server runs.
#[derive(Debug, Clone)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// Replaces the filter with `level`, an `EnvFilter` directive such as
    /// `info` or `warn,smtpy=debug`. On error the current filter stays.
    ///
    /// # Errors
    /// A message naming the bad directive, or saying the logger is gone.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = parse_level(level)?;
        self.filter
            .reload(filter)
            .map_err(|e| format!("cannot change the log level: {e}"))
    }
}

/// Parses `level` as an `EnvFilter` directive list.
fn parse_level(level: &str) -> Result<EnvFilter, String> {
    let level = level.trim();
    if level.is_empty() {
        return Err("log.level is empty; examples: \"info\", \"warn,smtpy=debug\"".to_owned());
    }
    EnvFilter::builder().parse(level).map_err(|e| {
        format!(
            "log.level: {level:?} is not a filter ({e}); examples: \"info\", \"warn,smtpy=debug\""
        )
    })
}

/// The subscriber `init` installs, writing to `writer`, and the handle of
/// its filter. Not installed: tests run it with
/// `tracing::subscriber::with_default`.
///
/// # Errors
/// When `level` is not a valid filter.
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
    ansi: bool,
) -> Result<(impl Subscriber + Send + Sync + 'static, LogHandle), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(parse_level(level)?);
    let output: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = Registry::default().with(filter).with(output);
    Ok((subscriber, LogHandle { filter: handle }))
}

/// Installs the process-wide logger on standard error.
///
/// # Errors
/// When `level` is not a valid filter, or a logger is already installed.
pub fn init(format: LogFormat, level: &str) -> Result<LogHandle, String> {
    let ansi = std::io::stderr().is_terminal();
    let (subscriber, handle) = subscriber(format, level, std::io::stderr, ansi)?;
    subscriber
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(handle)
}
