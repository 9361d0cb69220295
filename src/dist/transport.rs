//! How bytes move between ranks: the small interface the communication thread drives, with
//! two implementations, MPI (`mpi.rs`, feature `mpi`) and threads of one process (here;
//! for tests and for trying a distributed program without MPI).
//!
//! Contract (what the communication thread relies on):
//! - `isend` takes the buffer; the send completes on its own (no matching needed first for
//!   the threads transport; MPI's eager or rendezvous protocol for MPI).
//! - `irecv(src, tag, max)` matches the next message from `src` with `tag`, in the order
//!   `src` sent them (MPI's non-overtaking rule); at most one receive per `(src, tag)` is
//!   posted at a time (the communication thread defers the others), so a message never
//!   lands in a receive meant for another.
//! - `progress` reports every operation that completed since the last call, once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::error::DistError;

/// Recycled message buffers: a fresh buffer of a MiB costs 256 page faults on first touch
/// (about as much as moving it), so the send tasks' messages, MPI's receive buffers and the
/// payloads the receive tasks have copied out come back here. At most `POOL_BYTES` are kept.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<(Vec<Vec<u8>>, usize)>,
}

const POOL_BYTES: usize = 64 << 20;
const POOL_MIN: usize = 4096;

impl BufferPool {
    /// An empty buffer with room for `cap` bytes: a recycled one of at most twice that if
    /// there is one.
    pub(crate) fn take(&self, cap: usize) -> Vec<u8> {
        if cap >= POOL_MIN {
            let mut f = self.free.lock();
            if let Some(i) =
                f.0.iter()
                    .position(|b| b.capacity() >= cap && b.capacity() <= 2 * cap)
            {
                let mut b = f.0.swap_remove(i);
                f.1 -= b.capacity();
                b.clear();
                return b;
            }
        }
        Vec::with_capacity(cap)
    }

    /// Keeps `b` for a later `take` (small buffers and any over the bound are freed).
    pub(crate) fn give(&self, b: Vec<u8>) {
        if b.capacity() < POOL_MIN {
            return;
        }
        let mut f = self.free.lock();
        if f.1 + b.capacity() <= POOL_BYTES {
            f.1 += b.capacity();
            f.0.push(b);
        }
    }
}

/// An operation in flight, as the communication thread numbers it.
pub(crate) type Token = u64;

/// A transport between ranks, driven by one thread.
pub(crate) trait Transport: Send {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Starts sending `buf` to `dst` with `tag`.
    fn isend(&mut self, token: Token, dst: usize, tag: i32, buf: Vec<u8>) -> Result<(), DistError>;
    /// Starts receiving at most `max` bytes from `src` with `tag`.
    fn irecv(&mut self, token: Token, src: usize, tag: i32, max: usize) -> Result<(), DistError>;
    /// Appends what completed: `(token, None)` for a send, `(token, Some(bytes))` for a
    /// receive.
    fn progress(&mut self, done: &mut Vec<(Token, Option<Vec<u8>>)>) -> Result<(), DistError>;
    /// Whether a message from `src` can have been lost (the threads transport: its rank is
    /// gone). MPI reports dead peers by failing the job instead.
    fn peer_gone(&self, _src: usize) -> bool {
        false
    }
}

/// Messages in flight by `(src, dst, tag)`, in send order.
type Boxes = HashMap<(usize, usize, i32), VecDeque<Vec<u8>>>;

/// Mailboxes shared by the ranks of one process: `(src, dst, tag)` → messages in order.
#[derive(Default)]
pub(crate) struct Mailboxes {
    boxes: Mutex<Boxes>,
    gone: Mutex<Vec<bool>>,
}

/// One rank of a cluster of threads.
pub(crate) struct ThreadTransport {
    rank: usize,
    size: usize,
    boxes: Arc<Mailboxes>,
    /// Posted receives: token → (src, tag, max).
    posted: Vec<(Token, usize, i32, usize)>,
    sent: Vec<Token>,
}

impl ThreadTransport {
    /// The transports of `size` ranks sharing mailboxes.
    pub(crate) fn cluster(size: usize) -> Vec<ThreadTransport> {
        let boxes = Arc::new(Mailboxes::default());
        *boxes.gone.lock() = vec![false; size];
        (0..size)
            .map(|rank| ThreadTransport {
                rank,
                size,
                boxes: boxes.clone(),
                posted: Vec::new(),
                sent: Vec::new(),
            })
            .collect()
    }
}

impl Drop for ThreadTransport {
    fn drop(&mut self) {
        self.boxes.gone.lock()[self.rank] = true;
    }
}

impl Transport for ThreadTransport {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn isend(&mut self, token: Token, dst: usize, tag: i32, buf: Vec<u8>) -> Result<(), DistError> {
        self.boxes
            .boxes
            .lock()
            .entry((self.rank, dst, tag))
            .or_default()
            .push_back(buf);
        self.sent.push(token);
        Ok(())
    }
    fn irecv(&mut self, token: Token, src: usize, tag: i32, max: usize) -> Result<(), DistError> {
        self.posted.push((token, src, tag, max));
        Ok(())
    }
    fn progress(&mut self, done: &mut Vec<(Token, Option<Vec<u8>>)>) -> Result<(), DistError> {
        // A sent buffer became the receiver's message (it is recycled there).
        done.extend(self.sent.drain(..).map(|t| (t, None)));
        if self.posted.is_empty() {
            return Ok(());
        }
        let mut boxes = self.boxes.boxes.lock();
        let mut i = 0;
        while i < self.posted.len() {
            let (token, src, tag, max) = self.posted[i];
            let msg = boxes
                .get_mut(&(src, self.rank, tag))
                .and_then(VecDeque::pop_front);
            match msg {
                Some(m) if m.len() > max => {
                    return Err(DistError::BadMessage {
                        rank: self.rank,
                        from: src,
                        expected: format!("at most {max} bytes (tag {tag})"),
                        got: format!("{} bytes", m.len()),
                    })
                }
                Some(m) => {
                    done.push((token, Some(m)));
                    self.posted.swap_remove(i);
                }
                None => i += 1,
            }
        }
        Ok(())
    }
    fn peer_gone(&self, src: usize) -> bool {
        self.boxes.gone.lock()[src]
    }
}
