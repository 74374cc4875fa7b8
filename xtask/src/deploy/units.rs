//! Kubernetes quantities, and wedge's durations written back as its flags
//! take them (wedge itself parses the flags: see [`super::serve`]).

use std::time::Duration;

/// A Kubernetes quantity of bytes (`640Mi`, `1G`, `1048576`).
pub(crate) fn parse_quantity(text: &str) -> Option<u64> {
    let (number, suffix) = split_number(text)?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some((number * scale) as u64)
}

/// Splits `12.5Mi` into 12.5 and `Mi`.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, text[end..].trim()))
}

/// Milliseconds as a duration flag's value (`5s`, `1m 30s`, `250ms`), for
/// messages that name the flag.
pub(crate) fn flag_duration(millis: u64) -> String {
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(parse_quantity("640Mi"), Some(640 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("1048576"), Some(1 << 20));
        assert_eq!(parse_quantity("1Zi"), None);
        assert_eq!(parse_quantity("Mi"), None);
    }

    #[test]
    fn durations_are_written_as_a_flag_takes_them() {
        assert_eq!(flag_duration(10_000), "10s");
        assert_eq!(flag_duration(90_000), "1m 30s");
        assert_eq!(flag_duration(250), "250ms");
        assert_eq!(flag_duration(0), "0s");
    }
}
