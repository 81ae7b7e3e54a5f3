//! What a process uses, read from Linux's `/proc`: CPU time (user + system, every thread) and
//! resident memory.

use anyhow::Context as _;
use std::time::Duration;

/// A process's CPU time so far and its resident memory now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUsage {
    /// User plus system CPU time of every thread, since the process started.
    pub cpu: Duration,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

impl ProcessUsage {
    /// Reads the usage of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        parse_stat(
            &stat,
            rustix::param::clock_ticks_per_second(),
            rustix::param::page_size() as u64,
        )
        .with_context(|| format!("cannot parse {path}: {stat:?}"))
    }

    /// Resident memory in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_bytes as f64 / f64::from(1 << 20)
    }
}

/// Parses a `/proc/<pid>/stat` line: `utime` and `stime` (fields 14 and 15, in clock ticks) and
/// `rss` (field 24, in pages). The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcessUsage> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // `after_name` starts at field 3 (the state).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    let ticks = field(14)? + field(15)?;
    let cpu = Duration::from_secs_f64(ticks as f64 / ticks_per_second.max(1) as f64);
    Some(ProcessUsage {
        cpu,
        rss_bytes: field(24)? * page_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 3 0 123 456789 1024 18446744073709551615";
        let usage = parse_stat(stat, 100, 4096).expect("parses");
        assert_eq!(usage.cpu, Duration::from_secs(3));
        assert_eq!(usage.rss_bytes, 1024 * 4096);
        assert!((usage.rss_mib() - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_truncated_line_is_not_read_as_zero() {
        assert_eq!(parse_stat("4242 (orderly) S 1 2 3", 100, 4096), None);
        assert_eq!(parse_stat("no parenthesis at all", 100, 4096), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let usage = ProcessUsage::of(std::process::id()).expect("reads /proc/self");
        assert!(usage.rss_bytes > 0);
    }
}
