//! Secure randomness for ids and secrets, from the operating system.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` bytes from the OS's secure source.
///
/// An OS that cannot give randomness cannot run this server safely, so that is fatal.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS secure random source is unavailable");
    buf
}

/// 128 random bits as URL-safe base64: 22 characters of `[A-Za-z0-9_-]` (SPEC §12.9).
pub fn token() -> String {
    URL_SAFE_NO_PAD.encode(bytes::<16>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_url_safe_22_chars_and_differ() {
        let a = super::token();
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        assert_ne!(a, super::token());
    }
}
