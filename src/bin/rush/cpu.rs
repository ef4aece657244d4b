//! Where the machine's CPU time went during a rush: this process (server and
//! load generator), the PostgreSQL server we started, everything else, idle.
//! "Everything else" shows when another job shared the machine and the
//! numbers should not be trusted.

use serde::Serialize;

/// Clock ticks per second of /proc's CPU counters (USER_HZ).
fn ticks_per_second() -> f64 {
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    }
}

#[derive(Clone, Copy, Default)]
pub struct Sample {
    busy: u64,
    idle: u64,
    steal: u64,
    this_process: u64,
    postgres: u64,
}

#[derive(Serialize, Clone, Copy)]
pub struct Split {
    pub this_process_s: f64,
    pub postgres_s: f64,
    pub other_s: f64,
    pub idle_s: f64,
    /// Time the hypervisor gave our virtual CPUs to someone else.
    pub steal_s: f64,
}

/// `postmaster` is the PostgreSQL server's pid when we started it ourselves.
pub fn sample(postmaster: Option<u32>) -> Sample {
    let (busy, idle, steal) = machine().unwrap_or_default();
    let this_process = process_ticks("self").unwrap_or(0);
    let postgres = postmaster.map_or(0, server_ticks);
    Sample { busy, idle, steal, this_process, postgres }
}

impl Sample {
    pub fn until(&self, later: &Sample) -> Split {
        let hz = ticks_per_second();
        let s = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
        let busy = s(self.busy, later.busy);
        let this_process_s = s(self.this_process, later.this_process);
        let postgres_s = s(self.postgres, later.postgres);
        Split {
            this_process_s,
            postgres_s,
            other_s: (busy - this_process_s - postgres_s).max(0.0),
            idle_s: s(self.idle, later.idle),
            steal_s: s(self.steal, later.steal),
        }
    }
}

/// (busy, idle, steal) ticks summed over all CPUs.
fn machine() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some((get(0) + get(1) + get(2) + get(5) + get(6), get(3) + get(4), get(7)))
}

/// utime + stime of one process, and its parent's pid.
fn stat_of(pid: &str) -> Option<(u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields we need come after its ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((utime + stime, ppid))
}

fn process_ticks(pid: &str) -> Option<u64> {
    stat_of(pid).map(|(t, _)| t)
}

/// The postmaster and its children (backends, WAL writer, checkpointer, …).
fn server_ticks(postmaster: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| stat_of(&pid.to_string()).map(|(t, ppid)| (pid, t, ppid)))
        .filter(|(pid, _, ppid)| *pid == postmaster || *ppid == postmaster)
        .map(|(_, t, _)| t)
        .sum()
}
