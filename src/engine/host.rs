//! What the load client measures of the machine it runs on: its own CPU time (on these
//! machines it shares the cores with the node it loads, so every figure comes with it) and
//! the kernel's listen-queue counters (meaningful when the broker listens on this machine).

use std::time::Duration;

/// CPU time (user + system) this process used so far.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The kernel's `TcpExt` ListenOverflows and ListenDrops (SYNs dropped because an accept
/// queue was full), machine-wide; `None` where /proc/net/netstat cannot be read.
pub fn listen_overflows() -> Option<(u64, u64)> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

fn parse_netstat(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse::<u64>().ok()
    };
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listen_counters_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 17 19\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_netstat(text), Some((17, 19)));
        assert_eq!(parse_netstat("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn own_cpu_grows_with_work() {
        let before = own_cpu();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(own_cpu() > before);
    }
}
