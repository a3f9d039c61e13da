//! Sizes and durations as users write them (`16M`, `30s`), for flags and
//! config keys alike.

use std::time::Duration;

/// `123`, `512K`, `16M`, `1G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 8M, 512K, 1G)"))?;
    let factor = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1024,
        "M" => 1024 * 1024,
        "G" => 1024 * 1024 * 1024,
        "T" => 1024 * 1024 * 1024 * 1024,
        _ => return Err(format!("{s:?} has an unknown unit (use K, M, G or T)")),
    };
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("{s:?} is not a usable size")),
        Some(v) => Ok(v),
    }
}

/// `30s`, `500ms`, `2m`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 30s, 500ms, 2m)");
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").unwrap_err().contains("1h"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("16M"), Ok(16 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1024 * 1024 * 1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12X").unwrap_err().contains("12X"));
        assert!(parse_size("lots").is_err());
    }
}
