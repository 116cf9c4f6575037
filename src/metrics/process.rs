//! The process's own metrics, read from `/proc/self` at each scrape, under the names every
//! Prometheus client library uses (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! ...), and `weir_build_info`.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::edge::overload::resident_bytes_in;

/// Linux's clock ticks per second for `/proc` times (`USER_HZ`, 100 on every architecture weir
/// builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Collects the process metrics at each scrape.
#[derive(Debug)]
pub(crate) struct Process {
    /// When the process started, seconds since the epoch (read once: it does not change).
    started: Option<f64>,
}

impl Process {
    /// Reads the process's start time.
    pub(crate) fn new() -> Process {
        Process {
            started: start_time(),
        }
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let build = ConstGauge::new(1i64);
        let labels = [("version", env!("CARGO_PKG_VERSION"))];
        let mut metric = encoder.encode_descriptor(
            "weir_build_info",
            "The running build: 1, labelled with its version",
            None,
            build.metric_type(),
        )?;
        build.encode(metric.encode_family(&labels)?)?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        if let Some(cpu) = stat.as_deref().and_then(cpu_seconds) {
            let c = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, bytes",
                status
                    .as_deref()
                    .and_then(resident_bytes_in)
                    .map(|b| b as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, bytes",
                stat.as_deref().and_then(|s| field(s, 22)).map(|b| b as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                std::fs::read_dir("/proc/self/fd")
                    .ok()
                    .map(|d| d.count() as f64),
            ),
            (
                "process_max_fds",
                "The most file descriptors the process may open",
                std::fs::read_to_string("/proc/self/limits")
                    .ok()
                    .as_deref()
                    .and_then(max_fds),
            ),
            (
                "process_start_time_seconds",
                "When the process started, seconds since the epoch",
                self.started,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else {
                continue;
            };
            let g = ConstGauge::new(value);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        Ok(())
    }
}

/// Field `n` (counted from 0, after the command's parenthesised name) of `/proc/self/stat`.
fn field(stat: &str, n: usize) -> Option<u64> {
    // The command may hold spaces and parentheses: fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` begins with field 2 (the state); field `n` is at index n - 2.
    rest.split_whitespace().nth(n.checked_sub(2)?)?.parse().ok()
}

/// User and system time, seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let ticks = field(stat, 13)? + field(stat, 14)?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When this process started: the boot time (`btime` of `/proc/stat`) plus its start, in
/// ticks after boot (field 21 of `/proc/self/stat`).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let since_boot = field(&stat, 21)? as f64 / TICKS_PER_SECOND;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let started = boot + since_boot;
    // A clock that went backwards since: the start cannot be after now.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    Some(started.min(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = "4242 (weir (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 4 0 \
                    7000 123456789 2048 18446744073709551615";
        assert_eq!(field(stat, 3), Some(1));
        assert_eq!(field(stat, 13), Some(250));
        assert_eq!(field(stat, 14), Some(150));
        assert_eq!(cpu_seconds(stat), Some(4.0));
        assert_eq!(field(stat, 21), Some(7000));
        assert_eq!(field(stat, 22), Some(123_456_789));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024.0));
    }
}
