//! The writes a broadcast (or a publish to several players: a list, a room, a cluster
//! notification) holds back until every player is numbered.
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
use super::outbox::{DirectSocket, Frame};
use super::warm;
use crate::send_ring::{self, SENDS_PER_CALL, SendBatch};

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
    /// calls `wrote` for each connection whose socket took it. Where the thread has an
    /// io_uring, the sends go to the kernel [`SENDS_PER_CALL`] at a time (`send_ring`).
    pub(super) fn write(mut self, mut wrote: impl FnMut(&Conn)) {
        self.held.sort_unstable_by_key(|h| h.order);
        send_ring::with_batch(|batch| match batch {
            Some(batch) => {
                while self.written < self.held.len() {
                    self.write_batch(batch, &mut wrote);
                }
            }
            None => {
                while self.written < self.held.len() {
                    let i = self.written;
                    self.warm(i + 2);
                    // Counted before the write, so a write that unwinds is not made twice by
                    // `Drop`.
                    self.written += 1;
                    let held = &self.held[i];
                    if held.conn.outbox.write_deferred(&self.frames[held.frame]) {
                        wrote(&held.conn);
                    }
                }
            }
        });
    }

    /// Writes the next held frames, as many as one call of `batch` makes.
    fn write_batch(&mut self, batch: &mut SendBatch, wrote: &mut impl FnMut(&Conn)) {
        // Nothing from a batch that unwound is sent again.
        batch.clear();
        let mut in_batch = InBatch {
            held: &self.held,
            frames: &self.frames,
            batch,
            // A list's or a room's few sends should not pay for a broadcast's call.
            joined: Vec::with_capacity((self.held.len() - self.written).min(SENDS_PER_CALL)),
            ended: 0,
        };
        while self.written < self.held.len() && !in_batch.batch.is_full() {
            let i = self.written;
            self.warm(i + 2);
            // Counted on joining: from here `in_batch` ends it, and `Drop` must not write it.
            self.written += 1;
            let held = &self.held[i];
            let frame = &self.frames[held.frame];
            match held.conn.outbox.begin_batched(frame, in_batch.batch) {
                Some((direct, place)) => in_batch.joined.push((i, direct, place)),
                // Not idle any more, or not a socket that joins batches: as without a ring.
                None => {
                    if held.conn.outbox.write_deferred(frame) {
                        wrote(&held.conn);
                    }
                }
            }
        }
        in_batch.batch.send();
        while let Some(conn) = in_batch.end_next() {
            wrote(conn);
        }
        in_batch.batch.clear();
    }

    /// Requests what writing the `i`th held frame will touch.
    fn warm(&self, i: usize) {
        if let Some(next) = self.held.get(i) {
            next.conn.outbox.warm();
            // `wrote_directly` reads it.
            warm::prefetch(&next.conn.kind);
        }
    }
}

/// The sends of one batch, from joining it to their end. Dropped before every one has ended
/// (something unwound between the two), it ends the rest as unsent, so their frames are queued
/// and no socket is left waiting for a send that will not be made.
struct InBatch<'a> {
    held: &'a [Held],
    frames: &'a [Frame],
    batch: &'a mut SendBatch,
    /// Each joined send: its place in `held`, its socket, its place in `batch`.
    joined: Vec<(usize, Arc<dyn DirectSocket>, usize)>,
    /// How many of `joined` have ended.
    ended: usize,
}

impl<'a> InBatch<'a> {
    /// Ends the next joined send; returns its connection if the socket took the frame.
    fn end_next(&mut self) -> Option<&'a Conn> {
        while let Some((i, direct, place)) = self.joined.get(self.ended) {
            self.ended += 1;
            let held = &self.held[*i];
            let frame = &self.frames[held.frame];
            if held
                .conn
                .outbox
                .end_batched(frame, &**direct, self.batch, *place)
            {
                return Some(&held.conn);
            }
        }
        None
    }
}

impl Drop for InBatch<'_> {
    fn drop(&mut self) {
        // Made or not, a send not ended yet is ended as the batch says; one never made
        // reads as unsent.
        while self.ended < self.joined.len() {
            let _ = self.end_next();
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
