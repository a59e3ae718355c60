//! Player tokens this process has already verified, so a token presented again (the WebSocket
//! and the SSE stream of one page, a reconnect, each REST call) is not verified again.
//!
//! A token is looked up by its SHA-256 digest, which the admin-key comparison computes anyway:
//! two tokens share an entry only if SHA-256 collides. Only successes are kept, so nobody
//! without a valid token can fill it; it is bounded all the same. Expiry is checked on every
//! hit, with the rule verification applies, so a kept token ends when it would have.

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::{AuthError, Principal};

/// How many tokens are kept. Full, the table is 8,192 slots of 72 bytes (a digest and a
/// `Principal`) and 4,096 player ids: under a MiB for the node, whatever its connections.
pub(super) const KEPT: usize = 4096;

#[derive(Default)]
pub(super) struct VerifiedTokens {
    /// Digest of the token → what verifying it gave.
    entries: Mutex<HashMap<[u8; 32], Principal>>,
}

impl VerifiedTokens {
    /// What the token with this digest verified to, if it is kept: `Expired` once `now` has
    /// reached its end (`exp` plus the leeway), as verification would say.
    pub(super) fn get(
        &self,
        digest: &[u8; 32],
        now: SystemTime,
    ) -> Option<Result<Principal, AuthError>> {
        let mut entries = self.entries.lock();
        let principal = entries.get(digest)?;
        match principal {
            Principal::Player { expires_at, .. } if now >= *expires_at => {
                entries.remove(digest);
                Some(Err(AuthError::Expired))
            }
            _ => Some(Ok(principal.clone())),
        }
    }

    /// Keeps a verified player token. When full, the ended tokens go, and if that does not
    /// free a quarter of the table, arbitrary kept tokens go too (verified afresh when next
    /// presented): the scan is paid once per quarter of a table of new tokens.
    pub(super) fn keep(&self, digest: [u8; 32], principal: &Principal, now: SystemTime) {
        let mut entries = self.entries.lock();
        if entries.len() >= KEPT && !entries.contains_key(&digest) {
            entries.retain(|_, kept| match kept {
                Principal::Player { expires_at, .. } => now < *expires_at,
                Principal::AdminKey => false,
            });
            let mut excess = entries.len().saturating_sub(KEPT - KEPT / 4);
            entries.retain(|_, _| {
                let forget = excess > 0;
                excess = excess.saturating_sub(1);
                !forget
            });
        }
        entries.insert(digest, principal.clone());
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn player(id: &str, expires_at: SystemTime) -> Principal {
        Principal::Player {
            id: id.into(),
            admin: false,
            expires_at,
        }
    }

    #[test]
    fn a_kept_token_answers_until_its_end_and_then_is_expired() {
        let tokens = VerifiedTokens::default();
        let now = SystemTime::now();
        let end = now + Duration::from_secs(60);
        tokens.keep([1; 32], &player("alice", end), now);
        assert_eq!(tokens.get(&[1; 32], now), Some(Ok(player("alice", end))));
        assert_eq!(tokens.get(&[2; 32], now), None);
        let just_before = end - Duration::from_nanos(1);
        assert!(matches!(tokens.get(&[1; 32], just_before), Some(Ok(_))));
        assert_eq!(tokens.get(&[1; 32], end), Some(Err(AuthError::Expired)));
        assert_eq!(
            tokens.get(&[1; 32], now),
            None,
            "an ended token is not kept"
        );
    }

    /// `KEPT`'s memory figure counts 72 bytes a slot.
    #[test]
    fn an_entry_is_as_large_as_the_bound_counts() {
        assert!(std::mem::size_of::<([u8; 32], Principal)>() <= 72);
    }

    #[test]
    fn the_table_never_grows_past_its_bound_and_ended_tokens_go_first() {
        let tokens = VerifiedTokens::default();
        let now = SystemTime::now();
        let later = now + Duration::from_secs(60);
        let digest = |i: usize| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_le_bytes());
            d
        };
        // Half end at `now`: they make room before any live token is forgotten.
        for i in 0..KEPT {
            let end = if i % 2 == 0 { now } else { later };
            tokens.keep(digest(i), &player("p", end), now);
        }
        assert_eq!(tokens.len(), KEPT);
        tokens.keep(digest(KEPT), &player("p", later), now);
        assert_eq!(tokens.len(), KEPT / 2 + 1);
        for i in (1..KEPT).step_by(2) {
            assert!(tokens.get(&digest(i), now).is_some(), "live token {i} kept");
        }
        for i in KEPT + 1..4 * KEPT {
            tokens.keep(digest(i), &player("p", later), now);
            assert!(tokens.len() <= KEPT);
        }
        assert!(
            tokens.len() > KEPT / 2,
            "a quarter at a time is forgotten, not all"
        );
        assert!(
            tokens.get(&digest(4 * KEPT - 1), now).is_some(),
            "the newest is kept"
        );
    }
}
