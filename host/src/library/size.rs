//! Byte counts for people, the one way this crate writes them (refresh reports, the out-of-memory
//! message). Not for machine-readable output: JSON keeps the exact counts.

/// A byte count for people: exact below 1 KiB, otherwise in the largest binary unit that keeps the value
/// at least 1, with one decimal, followed by the exact count: `512 bytes`, `1.5 KiB (1536 bytes)`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(human_size(1 << 30), "1.0 GiB (1073741824 bytes)");
    }
}
