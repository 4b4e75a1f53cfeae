//! Run ids: `run_` and 12 lowercase hex digits, from the kernel's random source.
/// Fill `buf` from the kernel's random source with getrandom(2): one system call, no file to
/// open (Linux 3.17+).
#[allow(unsafe_code)]
fn random_bytes(buf: &mut [u8]) -> bool {
    // Safety: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    n == buf.len() as isize
}

/// A fresh run id such as `run_5fbae44ab6f0`.
pub fn new_run_id() -> String {
    let mut buf = [0u8; 6];
    let filled = random_bytes(&mut buf);
    if !filled {
        // Fall back to time and a counter: still unique within this daemon.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = (crate::time::now_ms() as u64) ^ (COUNTER.fetch_add(1, Ordering::Relaxed) << 40);
        buf.copy_from_slice(&n.to_le_bytes()[..6]);
    }
    let mut s = String::with_capacity(16);
    s.push_str("run_");
    for b in buf {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    s
}

/// Whether `s` has the shape of a run id.
pub fn is_run_id(s: &str) -> bool {
    s.len() == 16
        && s.starts_with("run_")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_differ() {
        let a = new_run_id();
        let b = new_run_id();
        assert!(is_run_id(&a), "{a}");
        assert!(is_run_id(&b), "{b}");
        assert_ne!(a, b);
        assert!(!is_run_id("run_XYZ"));
        assert!(!is_run_id("run_5fbae44ab6f0a"));
    }
}
