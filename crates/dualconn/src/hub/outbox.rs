//! A connection's bounded outbound queue: the only thing a publisher touches.
//!
//! Publishers push without ever awaiting; the connection's writer task drains everything queued
//! in one go, so events that pile up leave in one write. The bound is in bytes, because one
//! huge event costs as much as thousands of small ones.
//!
//! Most pushes find an idle connection: nothing queued, no write in flight, a socket with room.
//! When the transport has attached a [`DirectSocket`], such a push writes the frame to the
//! socket itself with one non-blocking call, and the writer task is not woken at all: the
//! wake-up and the task's polling were most of a delivery's cost beside the write
//! (BENCHMARKS.md). Anything else queues as before, so the order on the wire is the order of
//! the pushes and nobody waits for a slow client.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::CloseReason;
use super::budget::Budget;
use crate::send_ring::SendBatch;

/// One event's bytes on its way to a socket.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The stream position, for SSE's `id:` line; `None` for connection-local events.
    pub seq: Option<u64>,
    pub json: Bytes,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Handed to the socket at once through the attached [`DirectSocket`]; the writer task was
    /// not woken (or, when the socket took only part, was woken to finish it).
    Written,
    /// Not taken: the connection was idle, and its turn to write is held for the hub's
    /// broadcast, which writes the frame a moment later (`Outbox::write_deferred`). The
    /// writer task was not woken.
    Deferred,
    /// The frame would have passed the bound: the queue was dropped and the connection is
    /// closing as a slow consumer.
    Overflowed,
    /// The connection is already closing; nothing more is taken.
    Closed,
    /// The connection already has this sequence number (a cluster node can hear of an event
    /// both from history and live); it is not queued again.
    Duplicate,
}

/// How a transport lets a publisher write to its socket without waking its task.
pub trait DirectSocket: Send + Sync {
    /// Frames `frame` as the transport would and writes it with one non-blocking call.
    fn try_send(&self, frame: &Frame) -> Sent;

    /// Frames `frame` into `batch`, for a send made together with other sockets', and keeps
    /// everyone else off the socket until [`DirectSocket::end_batched`]. Returns the send's
    /// place in the batch, or `None` when this socket cannot join one now.
    fn begin_batched(&self, _frame: &Frame, _batch: &mut SendBatch) -> Option<usize> {
        None
    }

    /// Ends the send begun at `place`, once `batch` has made it (or failed to), and gives
    /// the socket back.
    fn end_batched(&self, _batch: &SendBatch, _place: usize) -> Sent {
        Sent::Nothing
    }
}

/// What one non-blocking write of a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Every byte is in the socket.
    All,
    /// The socket took part of the frame and keeps the rest, which it writes before anything
    /// else; the writer must flush it.
    Part,
    /// Nothing was written (the socket is full, busy or failed): the frame is queued instead.
    Nothing,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Sum of the queued frames' lengths.
    bytes: usize,
    /// Set once; the writer sends what is queued, then closes with this.
    close: Option<CloseReason>,
    /// The highest sequence number taken, so no event is queued twice and none out of order.
    last_seq: u64,
    /// The socket, once the transport has written its opening and lets publishers write.
    direct: Option<Arc<dyn DirectSocket>>,
    /// The writer has taken frames that it has not finished writing: a direct write now
    /// would overtake them.
    busy: bool,
    /// A direct write left part of a frame in the socket's keeping: the writer must flush.
    flush: bool,
    /// A broadcast holds this connection's next frame (`push_deferred`): nothing queued may
    /// be written, by the writer or directly, until it is.
    reserved: bool,
}

impl State {
    /// Writes `frame` through the attached socket, if there is one. When the socket takes only
    /// part, it keeps the rest and the writer must flush it before anything else is written:
    /// the outbox is busy until then.
    fn send_direct(&mut self, frame: &Frame) -> Sent {
        let sent = self
            .direct
            .as_ref()
            .map_or(Sent::Nothing, |direct| direct.try_send(frame));
        self.took(sent);
        sent
    }

    /// Notes what a direct write left: the end of a frame the writer must flush first.
    fn took(&mut self, sent: Sent) {
        if sent == Sent::Part {
            self.flush = true;
            self.busy = true;
        }
    }
}

pub struct Outbox {
    /// Held only to push or swap out frames, never across an await.
    state: Mutex<State>,
    /// Wakes the single writer; a permit is stored if it is not waiting yet.
    wake: Notify,
    /// Wakes whoever watches for overflow (a writer stuck on a full socket, or the HTTP
    /// connection of an SSE stream that hyper stopped polling).
    overflow: Notify,
    /// The byte bound from `DUALCONN_OUTBOX_BYTES`.
    cap: usize,
    /// The node's budget: this outbox counts itself and its bytes there too.
    budget: Arc<Budget>,
}

/// Stream frames dropped when an outbox closed, for the failed-delivery count.
pub type Dropped = usize;

impl Outbox {
    /// An outbox under no node budget.
    pub fn new(cap: usize) -> Outbox {
        Outbox::with_budget(cap, Arc::default())
    }

    pub fn with_budget(cap: usize, budget: Arc<Budget>) -> Outbox {
        budget.opened();
        Outbox {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            overflow: Notify::new(),
            cap,
            budget,
        }
    }

    /// Queues a frame within the bound. Overflow closes the connection as a slow consumer and
    /// returns how many queued stream frames were dropped with it.
    pub fn push(&self, frame: Frame) -> (Pushed, Dropped) {
        self.push_or_defer(Cow::Owned(frame), false)
    }

    /// As [`Outbox::push`], except that a frame that would be written directly is left with
    /// the caller, who holds the connection's turn until it writes the frame with
    /// [`Outbox::write_deferred`]. A broadcast numbers every player first and writes the
    /// sockets afterwards, in the order they opened (`Hub::broadcast_local`). The frame is
    /// borrowed, since most pushes of a broadcast keep no copy of it here.
    pub(super) fn push_deferred(&self, frame: &Frame) -> (Pushed, Dropped) {
        self.push_or_defer(Cow::Borrowed(frame), true)
    }

    fn push_or_defer(&self, frame: Cow<'_, Frame>, defer: bool) -> (Pushed, Dropped) {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return (Pushed::Closed, 0);
        }
        if let Some(seq) = frame.seq {
            if seq <= state.last_seq {
                return (Pushed::Duplicate, 0);
            }
            state.last_seq = seq;
        }
        if state.bytes + frame.json.len() > self.cap {
            let dropped = self.drop_queue(&mut state, CloseReason::SlowConsumer);
            drop(state);
            self.wake.notify_one();
            self.overflow.notify_waiters();
            return (Pushed::Overflowed, dropped);
        }
        if state.frames.is_empty() && !state.busy && !state.reserved && state.direct.is_some() {
            if defer {
                state.reserved = true;
                return (Pushed::Deferred, 0);
            }
            match state.send_direct(&frame) {
                Sent::All => return (Pushed::Written, 0),
                Sent::Part => {
                    drop(state);
                    self.wake.notify_one();
                    return (Pushed::Written, 0);
                }
                Sent::Nothing => {}
            }
        }
        state.bytes += frame.json.len();
        self.budget.queued(frame.json.len());
        state.frames.push_back(frame.into_owned());
        drop(state);
        self.wake.notify_one();
        (Pushed::Queued, 0)
    }

    /// Requests the line `push` locks first (`warm`).
    pub(super) fn warm(&self) {
        super::warm::prefetch(&self.state);
    }

    /// Writes the frame [`Outbox::push_deferred`] held back, straight to the socket, and gives
    /// the turn back. If the socket does not take it, or the connection stopped being idle
    /// meanwhile (closing began, the socket was detached), the frame goes in front of the queue
    /// and the writer is woken, as `push` would have. Returns whether the socket took it
    /// (in part included, which counts as delivered as in `push`).
    pub(super) fn write_deferred(&self, frame: &Frame) -> bool {
        let mut state = self.state.lock();
        let sent = if state.close.is_none() && !state.busy {
            state.send_direct(frame)
        } else {
            Sent::Nothing
        };
        self.give_turn_back(state, frame, sent)
    }

    /// As [`Outbox::write_deferred`], except that the frame joins `batch`, whose sends are
    /// made together, if the connection is idle and its socket can join; the turn stays held
    /// until [`Outbox::end_batched`]. `None`: write it with `write_deferred` instead.
    pub(super) fn begin_batched(
        &self,
        frame: &Frame,
        batch: &mut SendBatch,
    ) -> Option<(Arc<dyn DirectSocket>, usize)> {
        let state = self.state.lock();
        if state.close.is_some() || state.busy {
            return None;
        }
        let direct = state.direct.as_ref()?;
        let place = direct.begin_batched(frame, batch)?;
        // Kept until the send is made: the socket must not close under it.
        Some((direct.clone(), place))
    }

    /// Ends what [`Outbox::begin_batched`] began, once `batch` has made its sends, and gives
    /// the turn back as [`Outbox::write_deferred`] does, with the same answer.
    pub(super) fn end_batched(
        &self,
        frame: &Frame,
        direct: &dyn DirectSocket,
        batch: &SendBatch,
        place: usize,
    ) -> bool {
        let sent = direct.end_batched(batch, place);
        let mut state = self.state.lock();
        state.took(sent);
        self.give_turn_back(state, frame, sent)
    }

    /// Ends the turn a broadcast held, after its frame was `sent` (or not: then it is queued,
    /// older than anything queued behind the turn).
    fn give_turn_back(
        &self,
        mut state: parking_lot::MutexGuard<'_, State>,
        frame: &Frame,
        sent: Sent,
    ) -> bool {
        state.reserved = false;
        if sent != Sent::Nothing {
            // Whatever was queued meanwhile came after it, and the writer took none of it.
            let wake = !state.frames.is_empty() || state.flush;
            drop(state);
            if wake {
                self.wake.notify_one();
            }
            return true;
        }
        state.bytes += frame.json.len();
        self.budget.queued(frame.json.len());
        state.frames.push_front(frame.clone());
        drop(state);
        self.wake.notify_one();
        false
    }

    /// Queues frames that must go out whatever the bound, such as the `connected` event and a
    /// replay whose size history already bounds.
    pub fn push_unbounded(&self, frames: impl IntoIterator<Item = Frame>) {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return;
        }
        for frame in frames {
            if let Some(seq) = frame.seq {
                state.last_seq = state.last_seq.max(seq);
            }
            state.bytes += frame.json.len();
            self.budget.queued(frame.json.len());
            state.frames.push_back(frame);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Opens a connection that was listening while it joined: its opening events (`connected`,
    /// `recovery`, the replay) go ahead of the live events that arrived meanwhile, and live
    /// events numbered at or below `floor` (which the replay holds, or which came before the
    /// join) are dropped, as is anything at or below it later.
    pub fn open(&self, opening: Vec<Frame>, floor: u64) {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return;
        }
        let live = std::mem::take(&mut state.frames);
        // Everything is counted again below, live frames that stay included.
        self.budget.drained(state.bytes);
        state.bytes = 0;
        state.last_seq = state.last_seq.max(floor);
        for frame in opening
            .into_iter()
            .chain(live.into_iter().filter(|f| f.seq.is_none_or(|s| s > floor)))
        {
            if let Some(seq) = frame.seq {
                state.last_seq = state.last_seq.max(seq);
            }
            state.bytes += frame.json.len();
            self.budget.queued(frame.json.len());
            state.frames.push_back(frame);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Starts closing: `last` is queued behind what is there and nothing is taken after it.
    /// Returns false if the connection was already closing.
    pub fn close(&self, last: Option<Frame>, reason: CloseReason) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        if let Some(frame) = last {
            state.bytes += frame.json.len();
            self.budget.queued(frame.json.len());
            state.frames.push_back(frame);
        }
        state.close = Some(reason);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Waits until there is something to do: moves every queued frame into `out` and, once the
    /// queue is empty and closing has begun, returns the reason. A batch may be empty when
    /// only the end of a direct write waits in the socket: the writer flushes after every
    /// batch. From a batch until [`Outbox::written`], publishers queue instead of writing
    /// directly.
    ///
    /// Cancel-safe: frames are moved out only in the same poll that returns.
    pub async fn next(&self, out: &mut Vec<Frame>) -> Option<CloseReason> {
        loop {
            {
                let mut state = self.state.lock();
                // A broadcast holds the turn for a frame older than any queued: its
                // `write_deferred` wakes this writer.
                if !state.reserved && (!state.frames.is_empty() || state.flush) {
                    state.flush = false;
                    state.busy = true;
                    out.extend(state.frames.drain(..));
                    self.budget.drained(state.bytes);
                    state.bytes = 0;
                    if state.frames.capacity() > 64 {
                        // A burst should not pin its queue's memory for the connection's life.
                        state.frames.shrink_to(8);
                    }
                    return None;
                }
                if let Some(reason) = state.close.filter(|_| !state.reserved) {
                    return Some(reason);
                }
            }
            self.wake.notified().await;
        }
    }

    /// The transport's socket is ready for direct writes: its opening is written.
    pub fn attach(&self, direct: Arc<dyn DirectSocket>) {
        let mut state = self.state.lock();
        state.direct = Some(direct);
        if state.frames.is_empty() {
            // From here on most events go out directly and the queue is rarely used: an idle
            // connection should not keep the opening batch's queue (issue 10).
            state.frames = VecDeque::new();
        }
    }

    /// No more direct writes: the transport is done with its socket.
    pub fn detach(&self) {
        // Dropped outside the lock: it may be the socket's last handle.
        let direct = self.state.lock().direct.take();
        drop(direct);
    }

    /// The writer has written everything it took: publishers may write directly again.
    pub fn written(&self) {
        self.state.lock().busy = false;
    }

    /// Drops everything queued and starts closing with `reason`, unless closing already began.
    /// Returns how many stream frames were dropped.
    pub fn shed(&self, reason: CloseReason) -> Option<Dropped> {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return None;
        }
        let dropped = self.drop_queue(&mut state, reason);
        drop(state);
        self.wake.notify_one();
        self.overflow.notify_waiters();
        Some(dropped)
    }

    /// Empties the queue and sets the close reason; the caller wakes the writer and watchers.
    fn drop_queue(&self, state: &mut State, reason: CloseReason) -> Dropped {
        let dropped = state.frames.iter().filter(|f| f.seq.is_some()).count();
        // A new queue, not a cleared one: the point is to give the memory back.
        state.frames = VecDeque::new();
        self.budget.drained(state.bytes);
        state.bytes = 0;
        state.close = Some(reason);
        dropped
    }

    /// Resolves once the outbox overflowed, so a writer stuck on a full socket can give up.
    pub async fn overflowed(&self) {
        loop {
            // Registered before the check: `notify_waiters` reaches it even before it is polled.
            let woken = self.overflow.notified();
            if self.closing() == Some(CloseReason::SlowConsumer) {
                return;
            }
            woken.await;
        }
    }

    /// The close reason, once closing has begun.
    pub fn closing(&self) -> Option<CloseReason> {
        self.state.lock().close
    }

    /// Bytes waiting, for the health model.
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    #[cfg(test)]
    fn queue_capacity(&self) -> usize {
        self.state.lock().frames.capacity()
    }

    /// Stream frames still queued, for the failed-delivery count when a connection ends.
    pub fn queued_stream_frames(&self) -> usize {
        let state = self.state.lock();
        state.frames.iter().filter(|f| f.seq.is_some()).count()
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.budget.drained(self.state.get_mut().bytes);
        self.budget.closed();
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::hub::budget::BudgetConfig;

    fn frame(seq: u64, len: usize) -> Frame {
        Frame {
            seq: Some(seq),
            json: Bytes::from(vec![b'x'; len]),
        }
    }

    #[tokio::test]
    async fn drains_everything_queued_in_one_batch() {
        let outbox = Outbox::new(100);
        assert_eq!(outbox.push(frame(1, 10)), (Pushed::Queued, 0));
        assert_eq!(outbox.push(frame(2, 10)), (Pushed::Queued, 0));
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, None);
        assert_eq!(
            out.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn overflow_drops_the_queue_and_closes_as_slow_consumer() {
        let outbox = Outbox::new(25);
        outbox.push(frame(1, 10));
        outbox.push(frame(2, 10));
        assert_eq!(outbox.push(frame(3, 10)), (Pushed::Overflowed, 2));
        assert_eq!(outbox.push(frame(4, 1)), (Pushed::Closed, 0));
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, Some(CloseReason::SlowConsumer));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn opening_goes_first_and_what_it_covers_is_dropped() {
        let outbox = Outbox::new(1000);
        // Live events that reached the connection while it was joining.
        outbox.push(frame(5, 1));
        outbox.push(frame(7, 1));
        let connected = Frame {
            seq: None,
            json: Bytes::from_static(b"c"),
        };
        outbox.open(vec![connected, frame(4, 1), frame(5, 1)], 6);
        assert_eq!(outbox.push(frame(6, 1)).0, Pushed::Duplicate);
        assert_eq!(outbox.push(frame(7, 1)).0, Pushed::Duplicate);
        assert_eq!(outbox.push(frame(8, 1)).0, Pushed::Queued);
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        assert_eq!(
            out.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [None, Some(4), Some(5), Some(7), Some(8)]
        );
    }

    #[tokio::test]
    async fn a_live_event_the_replay_ends_on_is_not_sent_twice_and_the_opening_is_counted() {
        let outbox = Outbox::new(1000);
        // Live 6 arrived while joining, and the replay read from history ends on 6 too.
        outbox.push(frame(6, 100));
        outbox.push(frame(7, 1));
        outbox.open(vec![frame(5, 10), frame(6, 20)], 6);
        assert_eq!(
            outbox.queued_bytes(),
            31,
            "the opening's 30 bytes and live 7's 1; the live 6 is gone"
        );
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        assert_eq!(
            out.iter()
                .map(|f| (f.seq, f.json.len()))
                .collect::<Vec<_>>(),
            [(Some(5), 10), (Some(6), 20), (Some(7), 1)]
        );
    }

    #[tokio::test]
    async fn the_overflow_watch_wakes_on_overflow_only() {
        use futures_util::FutureExt;
        let outbox = Outbox::new(10);
        assert!(outbox.overflowed().now_or_never().is_none(), "nothing yet");
        outbox.push(frame(1, 10));
        assert!(outbox.overflowed().now_or_never().is_none(), "full is fine");
        assert_eq!(outbox.push(frame(2, 1)).0, Pushed::Overflowed);
        assert!(outbox.overflowed().now_or_never().is_some());
        // Closing for any other reason leaves a writer to finish what is queued.
        let replaced = Outbox::new(10);
        replaced.close(None, CloseReason::SessionReplaced);
        assert!(replaced.overflowed().now_or_never().is_none());
    }

    #[tokio::test]
    async fn shedding_drops_the_queue_and_counts_its_stream_frames() {
        let outbox = Outbox::new(100);
        outbox.push_unbounded([Frame {
            seq: None,
            json: Bytes::from_static(b"connected"),
        }]);
        outbox.push(frame(1, 10));
        outbox.push(frame(2, 10));
        assert_eq!(
            outbox.queued_stream_frames(),
            2,
            "the connection-local frame is no delivery"
        );
        assert_eq!(outbox.shed(CloseReason::SlowConsumer), Some(2));
        assert_eq!(outbox.queued_stream_frames(), 0);
        assert_eq!(outbox.queued_bytes(), 0);
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, Some(CloseReason::SlowConsumer));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn the_last_frame_goes_out_before_the_close_and_nothing_after() {
        let outbox = Outbox::new(100);
        outbox.push(frame(1, 1));
        assert!(outbox.close(Some(frame(2, 1)), CloseReason::SessionReplaced));
        assert!(!outbox.close(None, CloseReason::ServerShutdown));
        assert_eq!(outbox.push(frame(3, 1)).0, Pushed::Closed);
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, None);
        assert_eq!(out.len(), 2);
        assert_eq!(
            outbox.next(&mut out).await,
            Some(CloseReason::SessionReplaced)
        );
    }

    #[tokio::test]
    async fn a_frame_that_exactly_fills_the_bound_is_queued() {
        let outbox = Outbox::new(20);
        assert_eq!(outbox.push(frame(1, 10)), (Pushed::Queued, 0));
        assert_eq!(outbox.push(frame(2, 10)), (Pushed::Queued, 0));
        assert_eq!(outbox.queued_bytes(), 20);
        assert_eq!(outbox.push(frame(3, 1)), (Pushed::Overflowed, 2));
    }

    #[tokio::test]
    async fn the_opening_replay_counts_against_the_bound() {
        let outbox = Outbox::new(25);
        outbox.push_unbounded([frame(1, 10)]);
        assert_eq!(outbox.queued_bytes(), 10);
        assert_eq!(outbox.push(frame(2, 10)), (Pushed::Queued, 0));
        assert_eq!(
            outbox.push(frame(3, 10)),
            (Pushed::Overflowed, 2),
            "10 unbounded + 10 + 10 passes 25"
        );
    }

    #[tokio::test]
    async fn the_last_frame_is_counted_while_it_waits() {
        let outbox = Outbox::new(100);
        outbox.push(frame(1, 4));
        outbox.close(Some(frame(2, 7)), CloseReason::TokenExpired);
        assert_eq!(outbox.queued_bytes(), 11);
        let empty = Outbox::new(100);
        empty.close(Some(frame(1, 7)), CloseReason::TokenExpired);
        assert_eq!(empty.queued_bytes(), 7);
    }

    #[tokio::test]
    async fn a_burst_gives_its_queue_memory_back_and_a_small_one_keeps_it() {
        let outbox = Outbox::new(1 << 20);
        let mut out = Vec::new();
        // 64 frames fill a queue of exactly 64: kept for the next batch.
        for seq in 0..64 {
            outbox.push(frame(seq, 1));
        }
        // VecDeque grows by doubling from 4, so this is the boundary itself.
        assert_eq!(outbox.queue_capacity(), 64);
        outbox.next(&mut out).await;
        assert_eq!(outbox.queue_capacity(), 64, "a queue of 64 is not shrunk");
        // A bigger burst is given back.
        // Numbers keep rising: an outbox takes each number once.
        for seq in 64..1064 {
            outbox.push(frame(seq, 1));
        }
        out.clear();
        outbox.next(&mut out).await;
        assert_eq!(out.len(), 1000);
        assert!(outbox.queue_capacity() <= 64, "{}", outbox.queue_capacity());
        // A small burst keeps its queue.
        for seq in 1064..1104 {
            outbox.push(frame(seq, 1));
        }
        let small = outbox.queue_capacity();
        outbox.next(&mut out).await;
        assert_eq!(outbox.queue_capacity(), small);
    }

    #[tokio::test]
    async fn the_node_budget_sees_every_byte_queued_and_drained() {
        let budget = Arc::new(Budget::new(BudgetConfig::default()));
        let a = Outbox::with_budget(100, budget.clone());
        let b = Outbox::with_budget(100, budget.clone());
        assert_eq!(budget.connections(), 2);
        a.push_unbounded([frame(1, 5)]);
        a.push(frame(2, 10));
        b.push(frame(1, 20));
        b.close(Some(frame(2, 3)), CloseReason::TokenExpired);
        assert_eq!(budget.queued_bytes(), 38);
        let mut out = Vec::new();
        a.next(&mut out).await;
        assert_eq!(budget.queued_bytes(), 23);
        a.push(frame(3, 50));
        a.push(frame(4, 50));
        assert_eq!(budget.queued_bytes(), 123);
        assert_eq!(a.push(frame(5, 1)).0, Pushed::Overflowed);
        assert_eq!(budget.queued_bytes(), 23, "overflow gave a's queue back");
        drop(b);
        assert_eq!(
            budget.queued_bytes(),
            0,
            "what a dropped outbox held is given back"
        );
        assert_eq!(budget.connections(), 1);
        assert_eq!(a.shed(CloseReason::SlowConsumer), None, "already closing");
        drop(a);
        assert_eq!(budget.connections(), 0);
    }

    /// A socket that records what publishers wrote and takes what the test says.
    #[derive(Default)]
    pub(crate) struct FakeSocket {
        /// How many bytes the next write takes; `None` takes all, `Some(0)` is a full socket.
        takes: Mutex<Option<usize>>,
        pub(crate) wire: Mutex<Vec<u8>>,
    }

    impl DirectSocket for FakeSocket {
        fn try_send(&self, frame: &Frame) -> Sent {
            let takes = self.takes.lock().unwrap_or(frame.json.len());
            if takes == 0 {
                return Sent::Nothing;
            }
            let n = takes.min(frame.json.len());
            self.wire.lock().extend_from_slice(&frame.json[..n]);
            if n == frame.json.len() {
                Sent::All
            } else {
                Sent::Part
            }
        }
    }

    fn text(seq: u64, json: &'static str) -> Frame {
        Frame {
            seq: Some(seq),
            json: Bytes::from_static(json.as_bytes()),
        }
    }

    /// An outbox with a socket attached and its opening written, as a transport leaves it.
    async fn attached() -> (Outbox, Arc<FakeSocket>) {
        let outbox = Outbox::new(100);
        let socket = Arc::new(FakeSocket::default());
        outbox.push_unbounded([text(0, "open")]);
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        outbox.attach(socket.clone());
        outbox.written();
        (outbox, socket)
    }

    #[tokio::test]
    async fn an_attached_idle_connection_keeps_no_queue_memory_and_queues_again_when_busy() {
        let (outbox, socket) = attached().await;
        assert_eq!(
            outbox.queue_capacity(),
            0,
            "the opening batch's queue is given back"
        );
        *socket.takes.lock() = Some(0);
        assert_eq!(outbox.push(text(1, "a")).0, Pushed::Queued, "full socket");
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        assert_eq!(out.len(), 1);
    }

    #[tokio::test]
    async fn a_queue_that_holds_frames_when_the_socket_attaches_keeps_them() {
        let outbox = Outbox::new(100);
        outbox.push_unbounded([text(0, "open")]);
        outbox.push(text(1, "a"));
        outbox.attach(Arc::new(FakeSocket::default()));
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        assert_eq!(
            out.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
    }

    #[tokio::test]
    async fn an_idle_connection_takes_its_event_straight_from_the_publisher() {
        use futures_util::FutureExt;
        let (outbox, socket) = attached().await;
        assert_eq!(outbox.push(text(1, "one")), (Pushed::Written, 0));
        assert_eq!(outbox.push(text(2, "two")), (Pushed::Written, 0));
        assert_eq!(&socket.wire.lock()[..], b"onetwo");
        assert_eq!(outbox.queued_bytes(), 0);
        let mut out = Vec::new();
        assert!(
            outbox.next(&mut out).now_or_never().is_none(),
            "the writer has nothing to do"
        );
        assert_eq!(
            outbox.push(text(2, "two")).0,
            Pushed::Duplicate,
            "a number written directly is not taken again"
        );
    }

    /// A broadcast holds an idle connection's turn for its frame: what others publish
    /// meanwhile waits behind it, and the writer takes nothing until the frame is written.
    #[tokio::test]
    async fn a_deferred_frame_keeps_its_place_ahead_of_what_comes_after() {
        use futures_util::FutureExt;
        let (outbox, socket) = attached().await;
        let first = text(1, "one");
        assert_eq!(outbox.push_deferred(&first), (Pushed::Deferred, 0));
        assert_eq!(
            outbox.push(text(2, "two")).0,
            Pushed::Queued,
            "the turn is held: not written directly"
        );
        let mut out = Vec::new();
        {
            let mut writer = std::pin::pin!(outbox.next(&mut out));
            assert!(
                writer.as_mut().now_or_never().is_none(),
                "the writer waits for the held frame"
            );
            assert!(outbox.write_deferred(&first));
            assert_eq!(&socket.wire.lock()[..], b"one");
            assert_eq!(
                writer.now_or_never(),
                Some(None),
                "the waiting writer is woken for what queued behind the held frame"
            );
        }
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [Some(2)]);
        outbox.written();
        assert_eq!(outbox.push(text(3, "three")).0, Pushed::Written);
    }

    /// A held frame the socket does not take, or that finds the connection closing, goes to
    /// the writer ahead of everything queued.
    #[tokio::test]
    async fn a_deferred_frame_that_cannot_be_written_goes_first_to_the_writer() {
        for closing in [false, true] {
            let (outbox, socket) = attached().await;
            let first = text(1, "one");
            assert_eq!(outbox.push_deferred(&first).0, Pushed::Deferred);
            if closing {
                outbox.close(Some(text(0, "bye")), CloseReason::ServerShutdown);
            } else {
                outbox.push(text(2, "two"));
                *socket.takes.lock() = Some(0);
            }
            let queued = outbox.queued_bytes();
            assert!(!outbox.write_deferred(&first), "closing: {closing}");
            assert_eq!(
                outbox.queued_bytes(),
                queued + first.json.len(),
                "counted in the bound: closing: {closing}"
            );
            let mut out = Vec::new();
            assert_eq!(outbox.next(&mut out).await, None);
            let json: Vec<&[u8]> = out.iter().map(|f| &f.json[..]).collect();
            let expected: [&[u8]; 2] = if closing {
                [b"one", b"bye"]
            } else {
                [b"one", b"two"]
            };
            assert_eq!(json, expected, "closing: {closing}");
            assert!(socket.wire.lock().is_empty());
        }
    }

    #[tokio::test]
    async fn while_the_writer_holds_a_batch_publishers_queue_behind_it() {
        let (outbox, socket) = attached().await;
        *socket.takes.lock() = Some(0);
        assert_eq!(outbox.push(text(1, "a")).0, Pushed::Queued, "full socket");
        *socket.takes.lock() = None;
        assert_eq!(
            outbox.push(text(2, "b")).0,
            Pushed::Queued,
            "something is queued: writing now would overtake it"
        );
        let mut out = Vec::new();
        outbox.next(&mut out).await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            outbox.push(text(3, "c")).0,
            Pushed::Queued,
            "the writer has not written its batch yet"
        );
        outbox.written();
        out.clear();
        outbox.next(&mut out).await;
        outbox.written();
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [Some(3)]);
        assert_eq!(outbox.push(text(4, "d")).0, Pushed::Written);
        assert_eq!(
            &socket.wire.lock()[..],
            b"d",
            "only the idle push went direct"
        );
    }

    #[tokio::test]
    async fn a_part_written_frame_has_the_writer_flush_before_anything_after_it() {
        let (outbox, socket) = attached().await;
        *socket.takes.lock() = Some(2);
        assert_eq!(outbox.push(text(1, "hello")).0, Pushed::Written);
        *socket.takes.lock() = None;
        assert_eq!(
            outbox.push(text(2, "next")).0,
            Pushed::Queued,
            "the writer has the socket until it flushed the end"
        );
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, None);
        assert_eq!(out.iter().map(|f| f.seq).collect::<Vec<_>>(), [Some(2)]);
        assert_eq!(&socket.wire.lock()[..], b"he");
    }

    #[tokio::test]
    async fn a_part_written_frame_alone_wakes_the_writer_with_an_empty_batch() {
        let (outbox, socket) = attached().await;
        *socket.takes.lock() = Some(1);
        outbox.push(text(1, "ab"));
        let mut out = Vec::new();
        assert_eq!(outbox.next(&mut out).await, None);
        assert!(out.is_empty(), "nothing but the flush to do");
        // Closing waits for the writer to flush, then ends.
        outbox.written();
        outbox.push(text(2, "cd"));
        outbox.close(None, CloseReason::ServerShutdown);
        assert_eq!(outbox.next(&mut out).await, None);
        outbox.written();
        assert_eq!(
            outbox.next(&mut out).await,
            Some(CloseReason::ServerShutdown)
        );
    }

    #[tokio::test]
    async fn nothing_is_written_directly_once_closing_or_detached() {
        let (outbox, socket) = attached().await;
        outbox.detach();
        assert_eq!(outbox.push(text(1, "a")).0, Pushed::Queued);
        let (closing, socket2) = attached().await;
        closing.close(None, CloseReason::SessionReplaced);
        assert_eq!(closing.push(text(1, "a")).0, Pushed::Closed);
        assert!(socket.wire.lock().is_empty() && socket2.wire.lock().is_empty());
    }

    #[tokio::test]
    async fn a_frame_past_the_bound_overflows_even_on_an_idle_socket() {
        let (outbox, socket) = attached().await;
        let big = Frame {
            seq: Some(1),
            json: Bytes::from(vec![b'x'; 101]),
        };
        assert_eq!(outbox.push(big).0, Pushed::Overflowed);
        assert!(socket.wire.lock().is_empty());
    }
}
