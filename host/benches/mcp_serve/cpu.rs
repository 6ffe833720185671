//! A server process's CPU time and thread count, read from outside it.
//!
//! The CPU time is the kernel's own nanosecond count (the scheduler's
//! `sum_exec_runtime`), read in the first way that works:
//!
//! 1. the process's CPU clock (`clock_getcpuclockid` + `clock_gettime`):
//!    every thread's runtime, including threads that exited during the
//!    window (a blocking-pool thread idling out), in nanoseconds;
//! 2. the sum of the first field of `/proc/PID/task/*/schedstat`, also
//!    nanoseconds, but only over the threads alive at the reading;
//! 3. `utime + stime` of `/proc/PID/stat`, in clock ticks (10 ms): coarse,
//!    so the table says so.

use std::time::Duration;

/// Which reading [`cpu_time`] used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Clock,
    Schedstat,
    StatTicks,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::Clock => {
                "the process CPU clock (clock_getcpuclockid: sum_exec_runtime of all threads, ns)"
            }
            Source::Schedstat => {
                "/proc/PID/task/*/schedstat (ns; threads that exit mid-window are missed)"
            }
            Source::StatTicks => "/proc/PID/stat utime+stime (10 ms ticks: coarse)",
        }
    }
}

/// `pid`'s CPU time so far, and how it was read.
pub fn cpu_time(pid: u32) -> (Duration, Source) {
    if let Some(t) = clock(pid) {
        return (t, Source::Clock);
    }
    if let Some(t) = schedstat(pid) {
        return (t, Source::Schedstat);
    }
    let t = stat_ticks(pid).unwrap_or_else(|| panic!("no CPU time readable for pid {pid}"));
    (t, Source::StatTicks)
}

fn clock(pid: u32) -> Option<Duration> {
    let mut id: libc::clockid_t = 0;
    // SAFETY: `id` is a valid place for the clock id; the call only writes it.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut id) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; `id` came from the kernel.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

fn schedstat(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that exited between the listing and the read: no time.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

fn stat_ticks(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, so 11 and 12 after the state.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// `pid`'s thread count now (`Threads:` of `/proc/PID/status`).
pub fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}
