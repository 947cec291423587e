//! Ephemeral PostgreSQL and MariaDB servers for tests.
//!
//! Each instance is private to the test that starts it: its own data
//! directory in a temporary folder, its own port on 127.0.0.1, fsync off,
//! and it is stopped when dropped. They are started from the system's server
//! binaries (`tests/run` installs them when missing).
//!
//! When the binaries are missing, [`EphemeralPostgres::start`] and
//! [`EphemeralMariaDb::start`] return an error. [`required`] turns that into
//! a test failure under `CI=true` and into a loud skip elsewhere, so CI can
//! never pass by silently skipping the database tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Returns the server, or: under `CI=true` panics with the reason, and
/// otherwise prints why the test is skipped and returns `None`.
pub fn required<T>(what: &str, started: anyhow::Result<T>) -> Option<T> {
    match started {
        Ok(server) => Some(server),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{what} is required under CI=true but could not be started: {e:#}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: {what} could not be started ({e:#}); run tests/run, which installs it"
            );
            None
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_binary(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn postgres_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

fn wait_for_port(port: u16, child: &mut Child, what: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} exited with {status} before accepting connections:\n{tail}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not accept connections on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects, retrying for up to 30 s while the server finishes starting.
async fn retry_connect<C, F, Fut>(connect: F) -> anyhow::Result<C>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<C, sqlx::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "database not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs `program` as `user` when we are root (PostgreSQL refuses to run as
/// root). `setpriv` execs the program in place, so the child we hold is the
/// server itself and our signals reach it.
fn command_as(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={u}"))
                .arg(format!("--regid={u}"))
                .arg("--init-groups")
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A private PostgreSQL server.
pub struct EphemeralPostgres {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    /// The server binary and the user it runs as (`postgres` under root).
    postgres: PathBuf,
    user: Option<&'static str>,
    /// Extra `-c name=value` settings (TLS).
    settings: Vec<String>,
}

impl std::fmt::Debug for EphemeralPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralPostgres")
            .field("port", &self.port)
            .finish()
    }
}

impl EphemeralPostgres {
    pub fn start() -> anyhow::Result<EphemeralPostgres> {
        EphemeralPostgres::start_with(|_| Ok(Vec::new()))
    }

    /// A server that also accepts TLS, with a self-signed certificate for
    /// 127.0.0.1 and localhost; the certificate's PEM file, to trust it.
    pub fn start_with_tls() -> anyhow::Result<(EphemeralPostgres, PathBuf)> {
        let mut ca_file = PathBuf::new();
        let server = EphemeralPostgres::start_with(|dir| {
            let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let certified = rcgen::generate_simple_self_signed(names)?;
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert, certified.cert.pem())?;
            std::fs::write(&key, certified.signing_key.serialize_pem())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            if is_root() {
                Command::new("chown")
                    .arg("postgres")
                    .arg(&cert)
                    .arg(&key)
                    .status()?;
            }
            ca_file = cert.clone();
            Ok(vec![
                "ssl=on".to_string(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ])
        })?;
        Ok((server, ca_file))
    }

    /// Initialises and starts a server; `settings` may write files into its
    /// directory and returns extra `-c` settings.
    fn start_with(
        settings: impl FnOnce(&Path) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<EphemeralPostgres> {
        let dirs = postgres_bin_dirs();
        let initdb = find_binary("initdb", &dirs)
            .context("PostgreSQL's initdb was not found (install the postgresql package)")?;
        let postgres =
            find_binary("postgres", &dirs).context("the postgres server binary was not found")?;
        let user = is_root().then_some("postgres");
        let dir = tempfile::Builder::new().prefix("exchange-pg-").tempdir()?;
        let data = dir.path().join("data");
        if let Some(u) = user {
            let status = Command::new("chown").arg(u).arg(dir.path()).status()?;
            if !status.success() {
                bail!("could not give {} to the {u} user", dir.path().display());
            }
        }
        let out = command_as(user, &initdb)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_port()?;
        let settings = settings(dir.path())?;
        let child = serve(user, &postgres, dir.path(), port, &settings)?;
        Ok(EphemeralPostgres {
            dir,
            child,
            port,
            postgres,
            user,
            settings,
        })
    }

    /// Stops the server (PostgreSQL's fast shutdown: connections are
    /// closed, what was committed stays), as an outage would.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Starts the server again on its data and port, after [`Self::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.child = serve(
            self.user,
            &self.postgres,
            self.dir.path(),
            self.port,
            &self.settings,
        )?;
        Ok(())
    }

    /// A connection URL for `database` (created with [`Self::create_database`]).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let url = self.url("postgres");
        let mut conn = retry_connect(|| async {
            <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
        })
        .await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        Ok(self.url(name))
    }
}

/// Runs `postgres` on `<dir>/data` and `port` until it accepts connections.
fn serve(
    user: Option<&str>,
    postgres: &Path,
    dir: &Path,
    port: u16,
    settings: &[String],
) -> anyhow::Result<Child> {
    let log = dir.join("postgres.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    if let Some(u) = user {
        Command::new("chown").arg(u).arg(&log).status()?;
    }
    let mut child = command_as(user, postgres)
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ])
        .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
        .arg("-k")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()?;
    wait_for_port(port, &mut child, "postgres", &log)?;
    // The port opens before recovery finishes; pg_isready says when
    // connections are really accepted.
    if let Some(isready) = find_binary("pg_isready", &postgres_bin_dirs()) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(&isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("postgres on port {port} never became ready");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(child)
}

impl Drop for EphemeralPostgres {
    fn drop(&mut self) {
        // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its
        // backends down with it (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private MariaDB server.
pub struct EphemeralMariaDb {
    _dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl std::fmt::Debug for EphemeralMariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralMariaDb")
            .field("port", &self.port)
            .finish()
    }
}

impl EphemeralMariaDb {
    pub fn start() -> anyhow::Result<EphemeralMariaDb> {
        let dirs = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
        let install = find_binary("mariadb-install-db", &dirs)
            .or_else(|| find_binary("mysql_install_db", &dirs))
            .context("mariadb-install-db was not found (install the mariadb-server package)")?;
        let server = find_binary("mariadbd", &dirs)
            .or_else(|| find_binary("mysqld", &dirs))
            .context("the mariadbd server binary was not found")?;
        let dir = tempfile::Builder::new()
            .prefix("exchange-mariadb-")
            .tempdir()?;
        let data = dir.path().join("data");
        let user = if is_root() {
            "root".to_string()
        } else {
            std::env::var("USER").unwrap_or_else(|_| "nobody".into())
        };
        let out = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--user={user}"))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--tmpdir={}", dir.path().display()))
            .output()?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = free_port()?;
        let log = dir.path().join("mariadb.log");
        let mut child = Command::new(&server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--tmpdir={}", dir.path().display()))
            .arg(format!("--user={user}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=64M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        wait_for_port(port, &mut child, "mariadbd", &log)?;
        Ok(EphemeralMariaDb {
            _dir: dir,
            child,
            port,
        })
    }

    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        let mut conn = retry_connect(|| async {
            <sqlx::MySqlConnection as sqlx::Connection>::connect(&url).await
        })
        .await?;
        sqlx::query(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .execute(&mut conn)
            .await?;
        Ok(self.url(name))
    }
}

impl Drop for EphemeralMariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
