//! Fetching ahead what a broadcast's next players will touch.
//!
//! A broadcast walks every player, and each delivery follows a chain of pointers (the player's
//! box, its list of connections, each connection, its outbox) that at 10k players is not in
//! the CPU's caches: in the fan-out profile those misses were most of our user-space time per
//! delivery, one after another (BENCHMARKS.md, "Fetching ahead in a broadcast"). Each link is
//! requested a few players before its turn, once the link before it has arrived, so the
//! misses overlap the work on the players in between instead of following one another.
//! These are the links the numbering pass reads; the writing pass after it
//! (`HeldWrites::write`) fetches its own ahead.

use super::PlayerId;
use super::conn::Conn;
use super::player::Player;

/// How many players ahead each link of the chain is requested: the player itself first, its
/// buffers next, its connections last, each a stage after the one it is reached through.
const PLAYER_AHEAD: usize = 3;
const BUFFERS_AHEAD: usize = 2;
const CONNS_AHEAD: usize = 1;

/// Requests the links of the players after `i` that their stage has reached.
pub(super) fn ahead(players: &[(&PlayerId, &mut Player)], i: usize) {
    if let Some((id, player)) = players.get(i + PLAYER_AHEAD) {
        prefetch::<Player>(player);
        // The table's slot that holds the id's pointer.
        prefetch::<PlayerId>(id);
    }
    if let Some((id, player)) = players.get(i + BUFFERS_AHEAD) {
        // The id is cloned into the broadcast's answer.
        prefetch::<str>(id);
        prefetch(player.conns.as_slice());
        player.history.warm();
    }
    if let Some((_, player)) = players.get(i + CONNS_AHEAD) {
        for conn in &player.conns {
            // The `Arc`'s counts (a held event clones it) and the opening order.
            prefetch::<Conn>(conn);
            prefetch(&conn.opened_order);
            conn.outbox.warm();
        }
    }
}

/// Asks the CPU to start loading the cache line that holds the start of `value`, without
/// waiting for it. Only a hint: it changes no value, and elsewhere than x86-64 it does nothing.
#[inline(always)]
pub(super) fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault, whatever the
    // address; this one comes from a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
