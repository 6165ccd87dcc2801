//! Every instance of this user on the machine: `doltctl ps` lists them from the per-user
//! registry ([`crate::lifecycle::registry`]), `doltctl gc` stops the orphaned and the idle
//! auto-started ones ([`crate::lifecycle::reclaim`]). Both work from any directory and without
//! a config.

pub mod gc;
pub mod ps;

/// A duration as people read it in a table: `3d4h`, `2h5m`, `4m12s`, `9s`.
pub fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{mins}m")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Bytes as people read them: `118 MiB`, `1.2 GiB`, `640 KiB`.
pub fn short_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b >= KIB * KIB * KIB {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.0} MiB", b / (KIB * KIB))
    } else {
        format!("{:.0} KiB", b / KIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_and_sizes_read_at_a_glance() {
        let d = Duration::from_secs;
        assert_eq!(short_duration(d(9)), "9s");
        assert_eq!(short_duration(d(252)), "4m12s");
        assert_eq!(short_duration(d(2 * 3600 + 300)), "2h5m");
        assert_eq!(short_duration(d(3 * 86400 + 4 * 3600 + 59)), "3d4h");
        assert_eq!(short_size(640 * 1024), "640 KiB");
        assert_eq!(short_size(118 * 1024 * 1024), "118 MiB");
        assert_eq!(short_size(1288490189), "1.2 GiB");
    }
}
