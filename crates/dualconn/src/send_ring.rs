//! Many sockets' writes in one system call, through an io_uring.
//!
//! A broadcast writes every idle connection's socket once. One `send` per socket pays a kernel
//! entry and exit, and a descriptor lookup, for each; handed over together, up to
//! [`SENDS_PER_CALL`] at a time, they pay that once per call (BENCHMARKS.md, "Batching a
//! broadcast's sends"). Every send is non-blocking (`MSG_DONTWAIT`), so the kernel makes each
//! one during the call that submits it, and a socket that is full answers at once, as `send`
//! would: nothing is left in flight when [`SendBatch::send`] returns.
//!
//! Each thread that writes such sends (a broadcast, a publish to several players) keeps one
//! ring and one buffer, made the first time it needs them. Where io_uring is missing or
//! refused (an old kernel, `io_uring_disabled`, a seccomp policy), the thread remembers it and
//! writes one `send` per socket as before.

use std::cell::RefCell;
use std::io;
use std::ops::Range;
use std::os::fd::RawFd;

use bytes::BytesMut;

/// Sends handed to the kernel per system call at most. The sockets in a call stay reserved
/// until it returns (their connections' own writes wait), so this bounds that wait too: the
/// kernel's time for this many sends.
pub const SENDS_PER_CALL: usize = 256;

/// Frame bytes gathered per call (the call that passes it is the last to add), so a
/// broadcast of large events does not hold hundreds of copies of them at once.
const BYTES_PER_CALL: usize = 128 * 1024;

/// A buffer larger than this, left by a call of very large events, is given back after it.
/// Room for any call of events under `BYTES_PER_CALL`, so the usual one is never given back
/// and grown again call after call.
const BYTES_KEPT: usize = 2 * BYTES_PER_CALL;

/// The sends of one call: each socket's frame, framed into one shared buffer.
pub struct SendBatch {
    #[cfg(target_os = "linux")]
    ring: io_uring::IoUring,
    /// Every send's bytes, back to back: written only before the call, so the kernel reads
    /// them where they were put.
    out: BytesMut,
    /// Each send's socket and its bytes in `out`.
    sends: Vec<(RawFd, Range<usize>)>,
    /// Each send's outcome as the kernel gave it (bytes taken, or a negated `errno`), by its
    /// place in `sends`, once the call returned.
    results: Vec<i32>,
    /// The ring stopped taking sends: its queue may hold some the kernel never took, so it is
    /// never submitted again.
    broken: bool,
}

enum ThreadRing {
    Untried,
    Unavailable,
    Ready(Box<SendBatch>),
}

thread_local! {
    static RING: RefCell<ThreadRing> = const { RefCell::new(ThreadRing::Untried) };
}

/// Runs `f` with this thread's batch, or with `None` where io_uring cannot be used (or the
/// batch is already in use further up this thread's stack).
pub fn with_batch<R>(f: impl FnOnce(Option<&mut SendBatch>) -> R) -> R {
    RING.with(|ring| {
        let Ok(mut ring) = ring.try_borrow_mut() else {
            return f(None);
        };
        if matches!(*ring, ThreadRing::Untried) {
            *ring = match SendBatch::new() {
                Ok(batch) => ThreadRing::Ready(Box::new(batch)),
                Err(e) => {
                    tracing::info!(error = %e, "no io_uring: each socket a broadcast or publish writes takes its own system call");
                    ThreadRing::Unavailable
                }
            };
        }
        let ThreadRing::Ready(batch) = &mut *ring else {
            return f(None);
        };
        let out = f(Some(batch));
        if batch.broken {
            // Dropping it could hand the kernel what its queue still holds: it is kept, unused.
            if let ThreadRing::Ready(batch) = std::mem::replace(&mut *ring, ThreadRing::Unavailable) {
                std::mem::forget(batch);
            }
        }
        out
    })
}

impl SendBatch {
    #[cfg(target_os = "linux")]
    fn new() -> io::Result<SendBatch> {
        let entries = SENDS_PER_CALL as u32;
        // One thread submits (the ring is the thread's), and a send the kernel cannot take
        // must not stop the ones after it from being submitted.
        let ring = io_uring::IoUring::builder()
            .setup_single_issuer()
            .setup_submit_all()
            .build(entries)
            .or_else(|_| io_uring::IoUring::new(entries))?;
        if !ring.params().is_feature_nodrop() {
            // Before 5.5 a full completion queue drops completions; every later kernel has this.
            return Err(io::Error::other("kernel too old for io_uring sends"));
        }
        Ok(SendBatch {
            ring,
            out: BytesMut::new(),
            sends: Vec::with_capacity(SENDS_PER_CALL),
            results: Vec::with_capacity(SENDS_PER_CALL),
            broken: false,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> io::Result<SendBatch> {
        Err(io::Error::other("io_uring is Linux's"))
    }

    /// No room for another send in this call.
    pub fn is_full(&self) -> bool {
        self.sends.len() >= SENDS_PER_CALL || self.out.len() >= BYTES_PER_CALL
    }

    /// Adds a send to `fd` of whatever `frame` puts in the buffer; returns its place.
    pub fn add(&mut self, fd: RawFd, frame: impl FnOnce(&mut BytesMut)) -> usize {
        let start = self.out.len();
        frame(&mut self.out);
        self.sends.push((fd, start..self.out.len()));
        self.sends.len() - 1
    }

    /// The bytes of the send at `place`.
    pub fn bytes(&self, place: usize) -> &[u8] {
        self.sends
            .get(place)
            .map_or(&[], |(_, range)| &self.out[range.clone()])
    }

    /// What the send at `place` did: bytes taken, or the error (`WouldBlock` for a full
    /// socket). Before [`SendBatch::send`], or for a place it never made, an error.
    pub fn result(&self, place: usize) -> io::Result<usize> {
        match self.results.get(place) {
            Some(&n) => usize::try_from(n).map_err(|_| io::Error::from_raw_os_error(-n)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Makes every send added since the last [`SendBatch::clear`], in one system call when the
    /// kernel takes them all.
    #[cfg(target_os = "linux")]
    pub fn send(&mut self) {
        use io_uring::{opcode, types};
        self.results.clear();
        // A send whose completion is never seen reads as not made.
        self.results.resize(self.sends.len(), -libc::ENOTCONN);
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let mut queue = self.ring.submission();
        for (place, (fd, range)) in self.sends.iter().enumerate() {
            let bytes = &self.out[range.clone()];
            let send = opcode::Send::new(types::Fd(*fd), bytes.as_ptr(), bytes.len() as u32)
                .flags(flags)
                .build()
                .user_data(place as u64);
            // SAFETY: `out` is not touched until every one of these sends has completed (the
            // loop below waits for each), and the caller keeps every `fd` open until then.
            if unsafe { queue.push(&send) }.is_err() {
                // Cannot happen: a call holds at most as many sends as the queue has entries.
                break;
            }
        }
        let pushed = queue.len();
        drop(queue);
        let mut done = 0;
        while done < pushed {
            match self.ring.submit_and_wait(pushed - done) {
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring stopped taking sends");
                    self.broken = true;
                    return;
                }
            }
            for completion in self.ring.completion() {
                done += 1;
                if let Some(slot) = self.results.get_mut(completion.user_data() as usize) {
                    *slot = completion.result();
                }
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn send(&mut self) {}

    /// Forgets the sends made, for the next call.
    pub fn clear(&mut self) {
        self.out.clear();
        self.sends.clear();
        self.results.clear();
        if self.out.capacity() > BYTES_KEPT {
            self.out = BytesMut::new();
        }
    }
}

/// Errors after which the sends are submitted (or waited for) again.
#[cfg(target_os = "linux")]
fn retry(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
        || matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY))
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    /// Whether this machine lets processes use io_uring, so the tests below must use it.
    pub(crate) fn io_uring_allowed() -> bool {
        std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|v| v.trim() == "0")
    }

    /// Connected loopback pairs: (the side the batch writes, the side that reads).
    fn pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        (0..n)
            .map(|_| {
                let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                (listener.accept().unwrap().0, client)
            })
            .collect()
    }

    #[test]
    fn one_call_makes_every_sockets_send_and_a_full_one_does_not_stop_the_rest() {
        if !io_uring_allowed() {
            eprintln!("io_uring is disabled on this machine: nothing to test");
            return;
        }
        let sockets = pairs(3);
        // The first socket's client never reads: its buffers fill up.
        let (full, _) = &sockets[0];
        full.set_nonblocking(true).unwrap();
        let chunk = vec![b'f'; 64 * 1024];
        while (&*full).write(&chunk).is_ok() {}
        with_batch(|batch| {
            let batch = batch.expect("a ring where io_uring is allowed");
            batch.clear();
            let places: Vec<usize> = sockets
                .iter()
                .enumerate()
                .map(|(i, (server, _))| {
                    batch.add(server.as_raw_fd(), |out| {
                        out.extend_from_slice(format!("event {i}").as_bytes())
                    })
                })
                .collect();
            batch.send();
            assert_eq!(
                batch.result(places[0]).unwrap_err().kind(),
                io::ErrorKind::WouldBlock,
                "a full socket answers at once"
            );
            for (i, place) in places.iter().enumerate().skip(1) {
                assert_eq!(batch.result(*place).unwrap(), 7);
                assert_eq!(batch.bytes(*place), format!("event {i}").as_bytes());
            }
            batch.clear();
        });
        for (i, (_, client)) in sockets.iter().enumerate().skip(1) {
            let mut read = [0u8; 7];
            (&*client).read_exact(&mut read).unwrap();
            assert_eq!(read, format!("event {i}").as_bytes());
        }
    }

    #[test]
    fn the_batch_is_not_lent_twice_on_one_thread() {
        with_batch(|outer| {
            if outer.is_some() {
                with_batch(|inner| assert!(inner.is_none()));
            }
        });
    }
}
