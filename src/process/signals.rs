//! Signal names as operators write them ("TERM", "SIGTERM", "15") and as the API reports them.
use nix::sys::signal::Signal;

/// Parse a signal name or number; the error says what was wrong.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{s:?} is not a signal number"));
    }
    let upper = t.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("{s:?} is not a signal name (e.g. TERM, INT, HUP, KILL)"))
}

/// The canonical name of a signal, e.g. "SIGTERM".
pub fn signal_name(sig: Signal) -> String {
    sig.as_str().to_string()
}

/// The name of a raw signal number, or "signal N".
pub fn signal_name_raw(n: i32) -> String {
    Signal::try_from(n)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
        assert_eq!(signal_name(Signal::SIGHUP), "SIGHUP");
        assert_eq!(signal_name_raw(15), "SIGTERM");
    }
}
