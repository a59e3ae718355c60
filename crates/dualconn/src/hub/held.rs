//! The writes a broadcast holds back until every player is numbered.
//!
//! A broadcast numbers players shard by shard, in hash order, but writes the idle
//! connections' sockets afterwards in the order they opened: the kernel's work per write
//! depends on that order (BENCHMARKS.md, "Writing in the order connections opened"). Between
//! the two passes each idle connection's turn to write is held ([`Outbox::push_deferred`]),
//! so nothing overtakes the frame it is waiting for.
//!
//! [`Outbox::push_deferred`]: super::Outbox::push_deferred

use std::sync::Arc;

use super::conn::Conn;
use super::outbox::Frame;
use super::warm;

/// A broadcast's held writes. Whatever is still unwritten when this is dropped (a broadcast
/// that unwound midway) is written then, so no outbox is left holding a turn forever.
#[derive(Default)]
pub(super) struct HeldWrites {
    /// One frame per player with an idle connection: that player's connections share it.
    frames: Vec<Frame>,
    held: Vec<Held>,
    /// How many of `held` have been written: `Drop` writes the rest.
    written: usize,
}

/// One idle connection's frame, by its place in [`HeldWrites::frames`].
struct Held {
    /// The connection's [`Conn::opened_order`]: writes go in this order.
    order: u64,
    frame: usize,
    conn: Arc<Conn>,
}

impl HeldWrites {
    pub(super) fn with_capacity(connections: usize) -> HeldWrites {
        HeldWrites {
            frames: Vec::new(),
            held: Vec::with_capacity(connections),
            written: 0,
        }
    }

    /// Keeps a player's frame for its held connections; returns its place for [`Self::hold`].
    pub(super) fn keep(&mut self, frame: &Frame) -> usize {
        self.frames.push(frame.clone());
        self.frames.len() - 1
    }

    /// Adds a connection whose turn [`Outbox::push_deferred`](super::Outbox::push_deferred)
    /// held, for the frame [`Self::keep`] put at `frame`.
    pub(super) fn hold(&mut self, conn: &Arc<Conn>, frame: usize) {
        self.held.push(Held {
            order: conn.opened_order,
            frame,
            conn: conn.clone(),
        });
    }

    /// Writes every held frame, socket by socket in the order the connections opened, and
    /// calls `wrote` for each connection whose socket took it.
    pub(super) fn write(mut self, mut wrote: impl FnMut(&Conn)) {
        self.held.sort_unstable_by_key(|h| h.order);
        while self.written < self.held.len() {
            let i = self.written;
            if let Some(next) = self.held.get(i + 2) {
                next.conn.outbox.warm();
                // `wrote_directly` reads it.
                warm::prefetch(&next.conn.kind);
            }
            // Counted before the write, so a write that unwinds is not made twice by `Drop`.
            self.written += 1;
            let held = &self.held[i];
            if held.conn.outbox.write_deferred(&self.frames[held.frame]) {
                wrote(&held.conn);
            }
        }
    }
}

impl Drop for HeldWrites {
    fn drop(&mut self) {
        for held in &self.held[self.written..] {
            let _ = held.conn.outbox.write_deferred(&self.frames[held.frame]);
        }
    }
}
