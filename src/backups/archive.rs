//! The archive itself: PostgreSQL's own `pg_dump` (custom format) of the
//! database into a file that gets its final name only once it is whole and
//! on disk, and `pg_restore` back. No dump is written by hand here: the tools
//! that know every PostgreSQL type, sequence and constraint do it.
//!
//! Passwords never reach a command line (`ps` shows those to every user of
//! the machine): `DATABASE_URL`'s password goes to the tools in `PGPASSWORD`,
//! and the rest of the URL, without it, as `--dbname`.

use std::{
    fs::File,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::Command;

use crate::{Config, db, error::AppError};

/// The database a backup is taken of, or restored into.
#[derive(Clone, Debug)]
pub enum Database {
    /// The managed cluster under `DATA_DIR`, reached over its socket as `postgres`.
    Managed { socket_dir: PathBuf },
    /// `DATABASE_URL`.
    Url(String),
}

impl Database {
    /// The database `serve` uses. For the managed cluster, the one under
    /// `DATA_DIR` (which must be running by the time a tool runs).
    pub fn of(config: &Config) -> Result<Database, AppError> {
        match &config.database_url {
            Some(url) => Ok(Database::Url(url.clone())),
            None => Ok(Database::Managed { socket_dir: config.data_dir.join("postgres").canonicalize()? }),
        }
    }

    /// `pg_dump` and `pg_restore`: for the managed cluster those beside its
    /// server (the same version); for another server, whichever is found
    /// (newest first), which must be at least the server's version.
    fn tools(&self) -> Result<PathBuf, AppError> {
        let programs: &[&str] = match self {
            Database::Managed { .. } => &["pg_ctl", "pg_dump", "pg_restore"],
            Database::Url(_) => &["pg_dump", "pg_restore"],
        };
        db::local::find_programs(programs).ok_or_else(|| db::local::missing(programs, ""))?
    }

    /// Points a `pg_dump` or `pg_restore` at this database.
    fn connect(&self, command: &mut Command) -> Result<(), AppError> {
        // Never wait on a password prompt nobody will answer.
        command.arg("--no-password");
        match self {
            Database::Managed { socket_dir } => {
                command.arg("--host").arg(socket_dir).args(["--username", "postgres", "--dbname", db::LOCAL_DATABASE]);
            }
            Database::Url(url) => {
                let (url, password) = without_password(url)?;
                command.arg("--dbname").arg(url);
                if let Some(password) = password {
                    command.env("PGPASSWORD", password);
                }
            }
        }
        Ok(())
    }
}

/// A file written under a temporary name beside its final one: removed when
/// dropped before [`Partial::keep`] (a failure, or the work cancelled on a
/// timeout or at shutdown), so only a whole file ever has the final name.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The temporary name a backup is written under: `FILE.partial`.
pub fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes a `pg_dump -Fc` archive of `db` to `path` and returns its size.
/// The archive is written to `FILE.partial`, read back by `pg_restore --list`,
/// synced, and only then renamed to `path` (replacing a file of that name);
/// on any failure the partial file is removed and `path` is left as it was.
/// Readable by its owner only: it holds the secret key and password hashes.
pub async fn dump(db: &Database, path: &Path) -> Result<u64, AppError> {
    let tools = db.tools()?;
    if path.is_dir() {
        return Err(AppError::Invalid(format!("{} is a directory; name the backup file", path.display())));
    }
    let partial = Partial { path: partial_name(path), kept: false };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial.path)
        .map_err(|e| AppError::Invalid(format!("cannot write {}: {e}", partial.path.display())))?;
    let mut command = Command::new(tools.join("pg_dump"));
    command.args(["--format=custom", "--lock-wait-timeout=120s"]);
    // The log of backups describes files on the machine that wrote them, and
    // this backup's own entry would be caught half-written.
    command.arg("--exclude-table-data=public.backups");
    db.connect(&mut command)?;
    command.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(Stdio::piped()).kill_on_drop(true);
    let out =
        command.spawn().map_err(|e| AppError::Internal(format!("cannot run pg_dump: {e}")))?.wait_with_output().await?;
    if !out.status.success() {
        return Err(AppError::External(format!("pg_dump failed: {}", last_lines(&out.stderr))));
    }
    // A file that pg_restore cannot read is no backup.
    list(&tools, &partial.path).await?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(&partial.path, path)?;
    partial.keep();
    // The rename itself survives a crash only once the directory is synced.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    Ok(bytes)
}

/// The archive's table of contents (`pg_restore --list`): an error when it
/// is not a `pg_dump` custom-format archive or is cut short.
async fn list(tools: &Path, file: &Path) -> Result<String, AppError> {
    let out = Command::new(tools.join("pg_restore"))
        .arg("--list")
        .arg(file)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| AppError::Internal(format!("cannot run pg_restore: {e}")))?;
    if !out.status.success() {
        return Err(AppError::Invalid(format!(
            "{} is not a readable backup: {}",
            file.display(),
            last_lines(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that `file` is a whole backup of a wechat-ticket database before
/// anything is touched.
pub async fn check(db: &Database, file: &Path) -> Result<(), AppError> {
    let contents = list(&db.tools()?, file).await?;
    if !contents.lines().any(|line| line.contains("TABLE DATA public _sqlx_migrations")) {
        return Err(AppError::Invalid(format!(
            "{} is a PostgreSQL archive, but not of a wechat-ticket database",
            file.display()
        )));
    }
    Ok(())
}

/// Restores `file` into `db` in one transaction: all of it, or (on an error)
/// nothing. Objects are owned by the restoring user, whoever owned them where
/// the backup was taken, so a backup moves between servers.
pub async fn restore(db: &Database, file: &Path) -> Result<(), AppError> {
    let mut command = Command::new(db.tools()?.join("pg_restore"));
    command.args(["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges"]);
    db.connect(&mut command)?;
    command.arg(file).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = command.output().await.map_err(|e| AppError::Internal(format!("cannot run pg_restore: {e}")))?;
    if !out.status.success() {
        return Err(AppError::External(format!("pg_restore failed: {}", last_lines(&out.stderr))));
    }
    Ok(())
}

/// How long a backup may take before it is given up (a nightly one is retried).
pub const TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// The end of a tool's complaint: the lines that say what went wrong.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    if tail.is_empty() { "no message".into() } else { tail.join(" / ") }
}

/// `DATABASE_URL` without its password (as libpq reads URLs), and the
/// password. sqlx's spellings of libpq's parameters are translated and its
/// own (`statement-cache-capacity`) dropped, since libpq refuses unknown ones.
fn without_password(url: &str) -> Result<(String, Option<String>), AppError> {
    let mut parsed =
        reqwest::Url::parse(url).map_err(|e| AppError::Config(format!("DATABASE_URL is not a URL ({e})")))?;
    let mut password = parsed.password().map(percent_decode);
    let _ = parsed.set_password(None);
    let mut kept = Vec::new();
    for pair in parsed.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = match key {
            "password" => {
                password = Some(percent_decode(value));
                continue;
            }
            "statement-cache-capacity" => continue,
            "ssl-mode" => "sslmode",
            "ssl-root-cert" | "ssl-ca" => "sslrootcert",
            "ssl-cert" => "sslcert",
            "ssl-key" => "sslkey",
            key => key,
        };
        kept.push(format!("{key}={value}"));
    }
    let query = kept.join("&");
    parsed.set_query(if kept.is_empty() { None } else { Some(&query) });
    Ok((parsed.to_string(), password))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_and_the_rest_stays_as_libpq_reads_it() {
        let (url, password) =
            without_password("postgres://app:p%40ss%2Fw0rd@db.example.edu:6432/tickets?sslmode=require").unwrap();
        assert_eq!(url, "postgres://app@db.example.edu:6432/tickets?sslmode=require");
        assert_eq!(password.as_deref(), Some("p@ss/w0rd"));

        let (url, password) = without_password(
            "postgresql://app@db/tickets?password=secret&ssl-mode=verify-full&statement-cache-capacity=0",
        )
        .unwrap();
        assert_eq!(url, "postgresql://app@db/tickets?sslmode=verify-full");
        assert_eq!(password.as_deref(), Some("secret"));

        let socket = "postgres://postgres@localhost/wt_1?host=/tmp/wt-test-1";
        assert_eq!(without_password(socket).unwrap(), (socket.to_string(), None));
    }

    #[test]
    fn a_partial_file_sits_beside_the_final_one() {
        assert_eq!(
            partial_name(Path::new("/srv/backups/wechat-ticket-20250101-040000.dump")),
            Path::new("/srv/backups/wechat-ticket-20250101-040000.dump.partial")
        );
        assert_eq!(partial_name(Path::new("x.dump")), Path::new("x.dump.partial"));
    }
}
