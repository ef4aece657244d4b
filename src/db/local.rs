//! The embedded default: a PostgreSQL cluster under `DATA_DIR`, started from the
//! installed server binaries and reached over a Unix socket inside its own
//! directory, so it never competes for a TCP port with anything.
//!
//! Every process using the cluster (`serve`, a CLI command beside it) holds a
//! shared lock on a file in the cluster directory for as long as it runs; the
//! last one out — the one that can turn its lock exclusive — stops the server.
//! So a CLI command never stops the server under a running `serve`, and a
//! server left running by a killed `serve` is stopped by the next user's exit.
//! Starting it is done under a second, exclusive lock, so processes that find
//! it stopped at the same moment (two supervisors after a crash) start it once.

use std::{
    ffi::OsStr,
    fs::File,
    os::{
        fd::AsRawFd,
        unix::{fs::PermissionsExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::error::AppError;

/// How to run the server: durable for the product, fast and disposable for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Throwaway,
}

/// A cluster directory and the binaries that serve it.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    bin_dir: PathBuf,
    dir: PathBuf,
    /// When we are root, the server runs as this (uid, gid): initdb refuses root.
    run_as: Option<(u32, u32)>,
    durability: Durability,
}

/// A running server, in use by this process. `stop` stops it only when no
/// other process uses it, so a CLI command run beside `serve` leaves the
/// server's database alone.
#[derive(Debug)]
pub struct RunningCluster {
    cluster: LocalCluster,
    /// Shared while in use; the process that can make it exclusive is the last user.
    users: Option<File>,
}

impl LocalCluster {
    pub fn new(dir: &Path, durability: Durability) -> Result<LocalCluster, AppError> {
        let bin_dir = find_bin_dir()?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        // The server refuses socket paths longer than the kernel's sun_path (108 bytes).
        let socket = dir.join(".s.PGSQL.5432");
        if socket.as_os_str().len() >= 104 {
            return Err(AppError::LocalPostgres(format!(
                "the path {} is too long for a Unix socket; set DATA_DIR to a shorter path",
                dir.display()
            )));
        }
        let run_as = if unsafe { libc::geteuid() } == 0 { Some(postgres_user()?) } else { None };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(LocalCluster { bin_dir, dir, run_as, durability })
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Initialises the cluster on first use and starts it unless it already runs.
    pub fn start(self) -> Result<RunningCluster, AppError> {
        if !self.dir.join("PG_VERSION").exists() {
            self.initdb()?;
        }
        self.write_settings()?;
        let users = File::options().create(true).append(true).open(self.dir.join(USERS_LOCK))?;
        // Blocks only while a last user is stopping the server: then it is started again below.
        flock(&users, libc::LOCK_SH)?;
        let users = Some(users);
        match self.ensure_running()? {
            Started::AlreadyRunning => {
                tracing::info!(dir = %self.dir.display(), "reusing the local PostgreSQL already running")
            }
            Started::Now => tracing::info!(dir = %self.dir.display(), "started local PostgreSQL"),
        }
        Ok(RunningCluster { cluster: self, users })
    }

    /// Starts the server unless it runs: the one way it is started, at first
    /// use and by the supervisor after a crash. Under an exclusive lock, so two
    /// processes sharing the cluster (two supervisors, a supervisor and a CLI
    /// command) never start it at once: the second finds it running.
    pub(crate) fn ensure_running(&self) -> Result<Started, AppError> {
        let starting = File::options().create(true).append(true).open(self.dir.join(START_LOCK))?;
        flock(&starting, libc::LOCK_EX)?;
        if self.is_running() {
            return Ok(Started::AlreadyRunning);
        }
        self.remove_stale_lock_files()?;
        let log = self.dir.join("server.log");
        let out = self.run(
            "pg_ctl",
            [
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-s"),
                OsStr::new("-D"),
                self.dir.as_os_str(),
                OsStr::new("-l"),
                log.as_os_str(),
            ],
        )?;
        if !out.status.success() {
            // Started by hand, or by an older binary that does not take the lock.
            if self.is_running() {
                return Ok(Started::AlreadyRunning);
            }
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(AppError::LocalPostgres(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().map(|l| format!("\n  {l}")).collect::<String>()
            )));
        }
        Ok(Started::Now)
    }

    /// The server's major version, from the cluster's `PG_VERSION`.
    fn major_version(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("PG_VERSION")).ok()?.trim().parse().ok()
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        lock_file_pid(&self.dir.join("postmaster.pid"))
    }

    /// The postmaster named in `postmaster.pid` is alive. Not `pg_ctl status`:
    /// it counts a zombie as running, and where nothing reaps orphans (a
    /// container whose init does not), a killed postmaster stays one for good.
    pub(crate) fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(process_alive)
    }

    /// A lock file naming a dead postmaster stops the next one from starting
    /// when that pid is a zombie (the server's own check counts it as alive).
    /// Only called with the start lock held and the postmaster gone; the
    /// server still refuses to start while any old backend holds its shared memory.
    fn remove_stale_lock_files(&self) -> Result<(), AppError> {
        for name in ["postmaster.pid", ".s.PGSQL.5432.lock"] {
            let path = self.dir.join(name);
            if lock_file_pid(&path).is_some_and(|pid| !process_alive(pid)) {
                tracing::warn!(file = name, "removing the lock file of a PostgreSQL that is gone");
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), AppError> {
        tracing::info!(dir = %self.dir.display(), "initialising local PostgreSQL cluster");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("-D"),
            self.dir.as_os_str(),
            OsStr::new("-U"),
            OsStr::new("postgres"),
            // Only the socket inside this 0700 directory reaches the server.
            OsStr::new("--auth=trust"),
            OsStr::new("-E"),
            OsStr::new("UTF8"),
            OsStr::new("--locale=C.UTF-8"),
        ];
        if self.durability == Durability::Throwaway {
            args.push(OsStr::new("--no-sync"));
        }
        let out = self.run("initdb", args)?;
        if !out.status.success() {
            return Err(AppError::LocalPostgres(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let conf = self.dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\ninclude_if_exists = 'wechat-ticket.conf'\n");
        std::fs::write(&conf, text)?;
        Ok(())
    }

    /// Written at every start so a moved `DATA_DIR` still finds its socket.
    fn write_settings(&self) -> Result<(), AppError> {
        let dir = self.dir.to_string_lossy().replace('\'', "''");
        let mut text = format!(
            "# Written by wechat-ticket at every start.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{dir}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 300\n"
        );
        // After a crash the server syncs its whole data directory before
        // recovering: one syncfs(2) of the file system instead of an fsync per
        // file (measured after a kill -9 mid-rush: back in 0.6 s, not 2.5-5 s).
        // The price: other programs' dirty files on that file system are
        // written too. Only PostgreSQL 14+ on Linux knows the setting.
        if cfg!(target_os = "linux") && self.major_version().is_some_and(|v| v >= 14) {
            text.push_str("recovery_init_sync_method = syncfs\n");
        }
        if self.durability == Durability::Throwaway {
            text.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = self.dir.join("wechat-ticket.conf");
        std::fs::write(&path, text)?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn run<I, S>(&self, program: &str, args: I) -> Result<Output, AppError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.args(args).current_dir(&self.dir).env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", &self.dir);
        }
        cmd.output().map_err(|e| AppError::LocalPostgres(format!("cannot run {program}: {e}")))
    }
}

impl RunningCluster {
    pub fn socket_dir(&self) -> &Path {
        self.cluster.socket_dir()
    }

    /// The cluster this handle keeps in use, for the supervisor to watch.
    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }

    /// Stops the server unless another process still uses it (also done on drop).
    pub fn stop(&mut self) {
        let Some(users) = self.users.take() else { return };
        if flock(&users, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            tracing::debug!("local PostgreSQL still in use by another process; left running");
            return;
        }
        let dir = self.cluster.dir.as_os_str();
        match self.cluster.run(
            "pg_ctl",
            [
                OsStr::new("stop"),
                OsStr::new("-w"),
                OsStr::new("-s"),
                OsStr::new("-m"),
                OsStr::new("fast"),
                OsStr::new("-D"),
                dir,
            ],
        ) {
            Ok(out) if out.status.success() => tracing::info!("stopped local PostgreSQL"),
            Ok(out) => {
                tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr).trim(), "pg_ctl stop failed")
            }
            Err(e) => tracing::warn!(error = %e, "pg_ctl stop failed"),
        }
    }

    /// Makes a throwaway cluster die with this process, even when the test
    /// harness exits without running destructors: a small watcher waits for our
    /// pid to vanish, then stops the server and removes its directory. It
    /// signals the postmaster directly (SIGQUIT: immediate shutdown) because,
    /// run as root, `pg_ctl` refuses to work and the server would outlive us.
    pub fn stop_and_remove_when_process_exits(mut self) -> Result<(), AppError> {
        // The watcher owns the server from now on; dropping us must not stop it.
        self.users = None;
        let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
pid=$(head -n 1 "$2/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
fi
rm -rf "$2""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("watcher").arg(std::process::id().to_string()).arg(&self.cluster.dir);
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        // Its own session, so a Ctrl-C aimed at the tests does not kill it first.
        cmd.process_group(0);
        cmd.spawn().map_err(|e| AppError::LocalPostgres(format!("cannot start cleanup watcher: {e}")))?;
        Ok(())
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether [`LocalCluster::ensure_running`] found the server running or started it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    Now,
}

/// The file whose shared locks count the cluster's users (released by the
/// kernel when a process dies, however it dies).
const USERS_LOCK: &str = "wechat-ticket.users.lock";

/// Held exclusively while a process checks for the server and starts it.
const START_LOCK: &str = "wechat-ticket.start.lock";

/// The pid on the first line of a PostgreSQL lock file.
fn lock_file_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    // A single-user backend writes its pid negated; it is no postmaster to watch.
    text.lines().next()?.trim().parse().ok().filter(|pid| *pid > 0)
}

/// The process exists and is not a zombie.
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 delivers nothing; it only asks whether the process exists.
    let exists =
        unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !zombie(pid)
}

/// Linux shows a process's state after the command name in `/proc/PID/stat`;
/// elsewhere there is no `/proc` and a process that exists counts as alive.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .unwrap_or(false)
}

fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor this `File` owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// `PG_BIN`, then `pg_ctl` on `PATH`, then the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Result<PathBuf, AppError> {
    let programs = ["pg_ctl", "initdb", "postgres"];
    find_programs(&programs).ok_or_else(|| missing(&programs, ", or set DATABASE_URL"))?
}

/// The error for programs [`find_programs`] did not find; `instead` names another way out.
pub fn missing(programs: &[&str], instead: &str) -> AppError {
    AppError::LocalPostgres(format!(
        "no PostgreSQL binaries ({}) found: install them (Debian: apt-get install postgresql) \
         or set PG_BIN to their directory{instead}",
        programs.join(", ")
    ))
}

/// The directory holding all of `programs` (PostgreSQL's own tools, like
/// `pg_dump`), looked for as the server binaries are: `PG_BIN`, then the
/// first program on `PATH` (through Debian's links to the versioned
/// directory), then the newest `/usr/lib/postgresql/*/bin`. `None` when none
/// has them all; an error when `PG_BIN` is set and lacks one.
pub fn find_programs(programs: &[&str]) -> Option<Result<PathBuf, AppError>> {
    let has_all = |dir: &Path| programs.iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_all(&dir) {
            return Some(Ok(dir));
        }
        let why = format!("PG_BIN={} does not contain {}", dir.display(), programs.join(", "));
        return Some(Err(AppError::LocalPostgres(why)));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let first = dir.join(programs[0]);
            if first.is_file() {
                // Debian links /usr/local/bin/pg_ctl into the versioned directory.
                let real = first.canonicalize().unwrap_or(first);
                if let Some(real_dir) = real.parent().filter(|d| has_all(d)) {
                    return Some(Ok(real_dir.to_path_buf()));
                }
                if has_all(&dir) {
                    return Some(Ok(dir));
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| Ok(dir))
}

fn postgres_user() -> Result<(u32, u32), AppError> {
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if pw.is_null() {
        return Err(AppError::LocalPostgres(
            "running as root, but there is no `postgres` system user to run PostgreSQL as \
             (install Debian's postgresql package, or run as a normal user, or set DATABASE_URL)"
                .into(),
        ));
    }
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}
