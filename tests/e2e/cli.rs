//! Running the reference server's commands against a store in a temporary
//! directory (no server): exit code, stdout and stderr of each run.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The built example (`cargo build --example server` first).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("server")
}

/// One finished command.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        &self.stdout
    }

    /// Asserts exit `code` and that stderr contains `needle`.
    #[track_caller]
    pub fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "expected exit {code}: {self:?}");
        assert!(
            self.stderr.contains(needle),
            "stderr should mention {needle:?}: {self:?}"
        );
    }
}

/// A configuration file and data directory in a temporary directory.
pub struct Setup {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
}

impl Setup {
    /// A redb store in `<dir>/data`.
    pub fn redb() -> Setup {
        Setup::with_store(None)
    }

    /// A SQLite store in `<dir>/data/smtpy.db`.
    pub fn sqlite() -> Setup {
        Setup::with_store(Some(|data: &std::path::Path| {
            format!("sqlite://{}", data.join("smtpy.db").display())
        }))
    }

    /// A store at this URL.
    pub fn url(url: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let config = dir.path().join("smtpy.toml");
        std::fs::write(
            &config,
            format!(
                "hostname = \"mx.cli.test\"\ndata_dir = \"{}\"\n[store]\nurl = \"{url}\"\n",
                data.display()
            ),
        )
        .expect("config");
        Setup { dir, config }
    }

    fn with_store(url: Option<fn(&std::path::Path) -> String>) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut text = format!(
            "hostname = \"mx.cli.test\"\ndata_dir = \"{}\"\n",
            data.display()
        );
        if let Some(url) = url {
            text.push_str(&format!("[store]\nurl = \"{}\"\n", url(&data)));
        }
        let config = dir.path().join("smtpy.toml");
        std::fs::write(&config, text).expect("config");
        Setup { dir, config }
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command with this configuration and no `SMTPY_*` from the caller.
    pub fn command(&self) -> Command {
        let mut c = Command::new(binary());
        for (k, _) in std::env::vars() {
            if k.starts_with("SMTPY_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "warn");
        c.arg("--config").arg(&self.config);
        c
    }

    /// Runs `server --config <file> <args…>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command()
            .args(args)
            .output()
            .expect("run the server binary");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
