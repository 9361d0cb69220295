//! The communication thread: the one thread of a rank that talks to the transport.
//!
//! Commands come from the rank's threads over a channel: post a receive for an expected
//! message (with the event its consumer task waits for), send the data a local task
//! produces (a `TaskHandle` polled as a future: the thread is woken when the task ends),
//! run a collective exchange (all-gather, over point-to-point messages). The loop:
//!
//! 1. take every command; a send whose task is done is posted at once;
//! 2. `progress` the transport; complete what finished (a receive fills its consumer's
//!    payload and fires its event);
//! 3. sleep: on the channel alone when no transport operation is in flight (a finishing
//!    send task and a new command both arrive on it); else, while every CPU worker of the
//!    rank is running a task, nap on the channel for up to 2 ms (a worker that runs out of
//!    work ends the nap: pacing, below); else poll: for 50 µs after the last completion
//!    without sleeping (yielding the core), then sleeping 10 µs doubling to 200 µs while
//!    nothing completes (MPI progresses only inside its calls; a blocking MPI wait would
//!    spin a core and could not hear the channel).
//!
//! Pacing: a message that completes while every worker is busy cannot start a task before
//! one of them finishes, but each poll takes a core from a worker (a context switch, its
//! caches, MPI's progress). So while the engine says every worker is busy
//! ([`Pace::workers_busy`]) the loop naps; a worker that runs out of work calls the idle
//! hook, which ends a nap in progress with [`Cmd::Poke`]; from then on the loop polls as
//! fast as before. Sends do not wait for a nap: a finished send task wakes the loop through
//! the channel, and MPI's rendezvous is driven by the receiver. See `PROTOCOL.md`,
//! "Pacing", for why no wake-up is lost.
//!
//! See `PROTOCOL.md` for why this cannot deadlock or deliver a stale version.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::DistError;
use super::transport::{BufferPool, Token, Transport};
use crate::task::{EventTrigger, TaskError, TaskHandle};

/// Tags below this number carry data (the `seq`-th message of a pair, modulo); those above
/// carry collectives. 32767 is the smallest `MPI_TAG_UB` the standard allows.
pub(crate) const DATA_TAGS: u64 = 30_000;
const CTRL_BASE: i32 = 30_000;
const CTRL_TAGS: u64 = 2_000;

/// The tag of the `seq`-th message of a pair of ranks.
pub(crate) fn data_tag(seq: u64) -> i32 {
    (seq % DATA_TAGS) as i32
}

/// A message's header: what it is, which array version, the flow's hash where it was
/// planned, and the rank it reports (the sender; for a failure, the root's rank).
pub(crate) const HEADER: usize = 48;
const MAGIC: u64 = 0x4845_5446_4c4f_5700;
const DATA: u64 = 1;
const FAILURE: u64 = 2;
/// Room for a failure report in a receive whose data is smaller.
const FAILURE_ROOM: usize = 1024;

/// What a data message is, as both of its ends planned it.
#[derive(Clone, Debug)]
pub(crate) struct MsgInfo {
    pub(crate) array: u64,
    pub(crate) version: u64,
    pub(crate) flow: u64,
    /// `label vN`, for errors and the trace.
    pub(crate) label: String,
}

fn header(kind: u64, info: &MsgInfo, rank: usize, len: usize) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    for (i, w) in [
        MAGIC | kind,
        info.array,
        info.version,
        info.flow,
        rank as u64,
        len as u64,
    ]
    .iter()
    .enumerate()
    {
        h[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    h
}

/// A data message: header then `bytes` (built by the sending task's body: one copy, into a
/// recycled buffer).
pub(crate) fn data_message(
    pool: &BufferPool,
    info: &MsgInfo,
    rank: usize,
    bytes: &[u8],
) -> Vec<u8> {
    let mut m = pool.take(HEADER + bytes.len());
    m.extend_from_slice(&header(DATA, info, rank, bytes.len()));
    m.extend_from_slice(bytes);
    m
}

/// The bytes a receive of `data` payload bytes must have room for.
pub(crate) fn receive_room(data: usize) -> usize {
    HEADER + data.max(FAILURE_ROOM)
}

fn failure_message(info: &MsgInfo, root: &Root) -> Vec<u8> {
    let mut text = format!("{}\0{}", root.task, root.message).into_bytes();
    text.truncate(FAILURE_ROOM);
    let mut m = header(FAILURE, info, root.rank, text.len()).to_vec();
    m.extend_from_slice(&text);
    m
}

fn word(m: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// The task at the root of a failure, and where it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Root {
    pub(crate) task: String,
    pub(crate) rank: usize,
    pub(crate) message: String,
}

impl Root {
    /// The root of `err`, raised on `rank`: a failure that came from another rank keeps
    /// that rank.
    pub(crate) fn of(err: &TaskError, rank: usize) -> Root {
        let remote = |e: &TaskError| match e {
            TaskError::Remote {
                task,
                rank,
                message,
            } => Some(Root {
                task: task.clone(),
                rank: *rank,
                message: message.clone(),
            }),
            _ => None,
        };
        match err {
            TaskError::DependencyFailed { root, cause, .. } => {
                remote(cause).unwrap_or_else(|| Root {
                    task: root.clone(),
                    rank,
                    message: cause.to_string(),
                })
            }
            e => remote(e).unwrap_or_else(|| Root {
                task: e.root_task().unwrap_or("?").to_string(),
                rank,
                message: e.to_string(),
            }),
        }
    }

    pub(crate) fn to_task_error(&self) -> TaskError {
        TaskError::Remote {
            task: self.task.clone(),
            rank: self.rank,
            message: self.message.clone(),
        }
    }
}

/// Where a received payload goes: the consumer task takes it.
pub(crate) type Payload = Arc<Mutex<Option<Vec<u8>>>>;

/// Where a collective's result goes.
pub(crate) type Reply = mpsc::Sender<Result<Vec<Vec<u8>>, DistError>>;

/// A request to the communication thread.
pub(crate) enum Cmd {
    /// Send what `data` produces (a data message) to `dst`; a failure of `data` is sent as
    /// a failure report instead.
    Send {
        dst: usize,
        tag: i32,
        info: MsgInfo,
        data: TaskHandle<Vec<u8>>,
    },
    /// Expect `info` from `src`: fill `slot` and fire `trigger` when it arrives.
    Recv {
        src: usize,
        tag: i32,
        max: usize,
        info: MsgInfo,
        slot: Payload,
        trigger: EventTrigger,
    },
    /// All-gather `blob`: every rank's blob, in rank order.
    Allgather { blob: Vec<u8>, reply: Reply },
    /// The send with this id may be ready (its task's waker fired).
    Ready(u64),
    /// A CPU worker ran out of work during a nap: poll again now (pacing).
    Poke,
    /// Finish the sends, drop what is still expected, stop.
    Shutdown(Duration),
}

/// Per-rank message counters (data messages; collectives are counted apart). Sends are
/// counted when the flow plans them (so every rank's count is final once it has spawned the
/// flow); receives when they arrive.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) messages_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) control_messages: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) naps: AtomicU64,
    pub(crate) nap_pokes: AtomicU64,
    /// Nanoseconds since `epoch` of the last message received (any kind).
    pub(crate) last_arrival_ns: AtomicU64,
    pub(crate) tracing: AtomicBool,
}

/// One transfer as the trace shows it.
#[derive(Debug, Clone)]
pub(crate) struct CommEvent {
    pub(crate) label: String,
    pub(crate) peer: usize,
    pub(crate) send: bool,
    pub(crate) bytes: usize,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// What the rank's threads share with the communication thread.
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    pub(crate) epoch: Instant,
    /// A fatal error (a transport failure, a message of another flow): every later wait
    /// reports it.
    pub(crate) fatal: Mutex<Option<DistError>>,
    pub(crate) events: Mutex<Vec<CommEvent>>,
    /// Message buffers, recycled.
    pub(crate) pool: Arc<BufferPool>,
    /// Set while the loop naps because every worker is busy; the idle hook that clears it
    /// sends [`Cmd::Poke`] (pacing).
    pub(crate) napping: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            counters: Counters::default(),
            epoch: Instant::now(),
            napping: AtomicBool::new(false),
            fatal: Mutex::new(None),
            events: Mutex::new(Vec::new()),
            pool: Arc::default(),
        }
    }

    fn set_fatal(&self, e: DistError) {
        tracing::error!(error = %e, "distributed runtime: fatal error");
        self.fatal.lock().get_or_insert(e);
    }

    fn arrived(&self) {
        self.counters
            .last_arrival_ns
            .store(self.epoch.elapsed().as_nanos() as u64, Ordering::Release);
    }

    /// When a message last arrived (or the cluster started).
    pub(crate) fn last_arrival(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.counters.last_arrival_ns.load(Ordering::Acquire))
    }
}

struct SendWaker {
    id: u64,
    tx: mpsc::Sender<Cmd>,
}

impl Wake for SendWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.tx.send(Cmd::Ready(self.id));
    }
}

struct WaitingSend {
    dst: usize,
    tag: i32,
    info: MsgInfo,
    data: TaskHandle<Vec<u8>>,
    waker: Waker,
    since: Instant,
}

struct RecvReq {
    src: usize,
    tag: i32,
    max: usize,
    info: MsgInfo,
    slot: Payload,
    trigger: EventTrigger,
    since: Instant,
}

enum Op {
    Data {
        label: String,
        peer: usize,
        bytes: usize,
        start: Instant,
    },
    Recv(RecvReq),
    CollSend,
    CollLen(usize),
    CollPart(usize),
}

struct Coll {
    seq: u64,
    blob: Vec<u8>,
    lens: Vec<Option<usize>>,
    parts: Vec<Option<Vec<u8>>>,
    /// Transport operations of this collective still in flight.
    open: usize,
    stage2: bool,
    reply: Reply,
}

/// The loop's state.
pub(crate) struct CommThread {
    transport: Box<dyn Transport>,
    /// `None`: never nap (no engine to ask, or one whose idleness is not tracked).
    pace: Option<Box<dyn Pace>>,
    tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    next: Token,
    ops: HashMap<Token, Op>,
    waiting: HashMap<u64, WaitingSend>,
    busy: HashSet<(usize, i32)>,
    deferred: HashMap<(usize, i32), VecDeque<RecvReq>>,
    coll: Option<Coll>,
    colls: VecDeque<(Vec<u8>, Reply)>,
    coll_seq: u64,
    done: Vec<(Token, Option<Vec<u8>>)>,
    dead: bool,
}

/// What the loop asks of the engine to pace its polling (module docs, "Pacing").
pub(crate) trait Pace: Send {
    /// Whether every CPU worker is running a task (none searching, none asleep). Read after
    /// setting [`Shared::napping`]; a worker that becomes idle afterwards runs the idle hook.
    fn workers_busy(&self) -> bool;
}

/// The longest nap while every worker is busy.
const BUSY_NAP: Duration = Duration::from_millis(2);

/// Polling after the last completion: spin (yielding) this long, then sleep from
/// `BACKOFF_MIN` doubling to `BACKOFF_MAX`.
const SPIN: Duration = Duration::from_micros(50);
const BACKOFF_MIN: Duration = Duration::from_micros(10);
const BACKOFF_MAX: Duration = Duration::from_micros(200);

/// Sleeps of a few µs need a timer slack below Linux's default 50 µs.
fn fine_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects this thread only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

impl CommThread {
    pub(crate) fn new(
        transport: Box<dyn Transport>,
        pace: Option<Box<dyn Pace>>,
        tx: mpsc::Sender<Cmd>,
        shared: Arc<Shared>,
    ) -> CommThread {
        CommThread {
            transport,
            pace,
            tx,
            shared,
            next: 0,
            ops: HashMap::new(),
            waiting: HashMap::new(),
            busy: HashSet::new(),
            deferred: HashMap::new(),
            coll: None,
            colls: VecDeque::new(),
            coll_seq: 0,
            done: Vec::new(),
            dead: false,
        }
    }

    fn rank(&self) -> usize {
        self.transport.rank()
    }

    fn token(&mut self) -> Token {
        self.next += 1;
        self.next
    }

    /// Runs until a shutdown command has been served (or every sender is gone).
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut backoff = BACKOFF_MIN;
        let mut last_progress = Instant::now();
        let mut shutdown: Option<Instant> = None;
        fine_timer_slack();
        loop {
            let first = if self.ops.is_empty() && shutdown.is_none() {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            } else if shutdown.is_none() && self.may_nap() {
                let r = rx.recv_timeout(BUSY_NAP);
                self.shared.napping.store(false, Ordering::SeqCst);
                match r {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else if last_progress.elapsed() < SPIN {
                // Just after a completion more usually follow (a reply, the next tile):
                // poll without sleeping, yielding the core to anyone runnable.
                match rx.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::TryRecvError::Empty) => {
                        std::thread::yield_now();
                        None
                    }
                    Err(mpsc::TryRecvError::Disconnected) if shutdown.is_some() => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv_timeout(backoff) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        None
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) if shutdown.is_some() => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut progressed = false;
            for cmd in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                progressed = true;
                if let Cmd::Shutdown(grace) = cmd {
                    shutdown = Some(Instant::now() + grace);
                } else {
                    self.command(cmd);
                }
            }
            progressed |= self.progress();
            if progressed {
                last_progress = Instant::now();
                backoff = BACKOFF_MIN;
            }
            if let Some(deadline) = shutdown {
                let sending = !self.waiting.is_empty()
                    || self
                        .ops
                        .values()
                        .any(|o| !matches!(o, Op::Recv(_) | Op::CollLen(_) | Op::CollPart(_)));
                if !sending && self.coll.is_none() {
                    break;
                }
                if Instant::now() > deadline {
                    tracing::warn!(
                        rank = self.rank(),
                        sends = self.waiting.len(),
                        "shutting down with sends not done (their tasks did not finish or the peers stopped receiving)"
                    );
                    break;
                }
            }
        }
        self.fail_all(&|rank| DistError::Stopped { rank });
    }

    /// Whether to nap: every worker busy, checked again after announcing the nap so that a
    /// worker going idle in between either is seen here or sees the flag and pokes.
    fn may_nap(&self) -> bool {
        let Some(p) = &self.pace else { return false };
        if !p.workers_busy() {
            return false;
        }
        self.shared.napping.store(true, Ordering::SeqCst);
        if p.workers_busy() {
            self.shared.counters.naps.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.shared.napping.store(false, Ordering::SeqCst);
        false
    }

    fn command(&mut self, cmd: Cmd) {
        if matches!(cmd, Cmd::Poke) {
            self.shared
                .counters
                .nap_pokes
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.dead {
            // After a fatal error nothing new is posted: fail it at once.
            let err = self.fatal();
            match cmd {
                Cmd::Recv { trigger, .. } => trigger.fail(to_task_error(&err)),
                Cmd::Allgather { reply, .. } => drop(reply.send(Err(err))),
                _ => {}
            }
            return;
        }
        match cmd {
            Cmd::Send {
                dst,
                tag,
                info,
                data,
            } => {
                let id = self.token();
                let waker = Waker::from(Arc::new(SendWaker {
                    id,
                    tx: self.tx.clone(),
                }));
                self.waiting.insert(
                    id,
                    WaitingSend {
                        dst,
                        tag,
                        info,
                        data,
                        waker,
                        since: Instant::now(),
                    },
                );
                self.poll_send(id);
            }
            Cmd::Recv {
                src,
                tag,
                max,
                info,
                slot,
                trigger,
            } => {
                let req = RecvReq {
                    src,
                    tag,
                    max,
                    info,
                    slot,
                    trigger,
                    since: Instant::now(),
                };
                self.post_recv(req);
            }
            Cmd::Allgather { blob, reply } => {
                self.colls.push_back((blob, reply));
                self.start_coll();
            }
            Cmd::Ready(id) => self.poll_send(id),
            Cmd::Poke | Cmd::Shutdown(_) => {}
        }
    }

    fn fatal(&self) -> DistError {
        self.shared
            .fatal
            .lock()
            .clone()
            .unwrap_or(DistError::Stopped { rank: self.rank() })
    }

    fn poll_send(&mut self, id: u64) {
        let Some(w) = self.waiting.get_mut(&id) else {
            return;
        };
        let waker = w.waker.clone();
        let mut cx = Context::from_waker(&waker);
        let msg = match Pin::new(&mut w.data).poll(&mut cx) {
            Poll::Pending => return,
            Poll::Ready(r) => r,
        };
        let w = self.waiting.remove(&id).expect("present");
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                let root = Root::of(&e, self.rank());
                tracing::debug!(array = %w.info.label, root = %root.task, "sending a failure instead of data");
                failure_message(&w.info, &root)
            }
        };
        let bytes = msg.len();
        let token = self.token();
        match self.transport.isend(token, w.dst, w.tag, msg) {
            Ok(()) => {
                self.ops.insert(
                    token,
                    Op::Data {
                        label: w.info.label,
                        peer: w.dst,
                        bytes,
                        start: w.since,
                    },
                );
            }
            Err(e) => self.die(e),
        }
    }

    fn post_recv(&mut self, req: RecvReq) {
        let key = (req.src, req.tag);
        if !self.busy.insert(key) {
            self.deferred.entry(key).or_default().push_back(req);
            return;
        }
        let token = self.token();
        match self.transport.irecv(token, req.src, req.tag, req.max) {
            Ok(()) => {
                self.ops.insert(token, Op::Recv(req));
            }
            Err(e) => {
                req.trigger.fail(to_task_error(&e));
                self.die(e);
            }
        }
    }

    fn ctrl_tag(&self, seq: u64, stage2: bool) -> i32 {
        CTRL_BASE + ((seq * 2 + stage2 as u64) % CTRL_TAGS) as i32
    }

    fn start_coll(&mut self) {
        if self.coll.is_some() {
            return;
        }
        let Some((blob, reply)) = self.colls.pop_front() else {
            return;
        };
        let (rank, size) = (self.rank(), self.transport.size());
        let seq = self.coll_seq;
        self.coll_seq += 1;
        let mut lens = vec![None; size];
        lens[rank] = Some(blob.len());
        self.coll = Some(Coll {
            seq,
            blob,
            lens,
            parts: vec![None; size],
            open: 0,
            stage2: false,
            reply,
        });
        let tag = self.ctrl_tag(seq, false);
        let len = (self.coll.as_ref().expect("set").blob.len() as u64).to_le_bytes();
        for peer in (0..size).filter(|p| *p != rank) {
            let (s, r) = (self.token(), self.token());
            let res = self
                .transport
                .isend(s, peer, tag, len.to_vec())
                .and_then(|()| self.transport.irecv(r, peer, tag, 8));
            if let Err(e) = res {
                return self.die(e);
            }
            self.ops.insert(s, Op::CollSend);
            self.ops.insert(r, Op::CollLen(peer));
            self.coll.as_mut().expect("set").open += 2;
        }
        self.check_coll();
    }

    fn check_coll(&mut self) {
        let (rank, size) = (self.rank(), self.transport.size());
        let Some(c) = self.coll.as_mut() else {
            return;
        };
        if c.open > 0 {
            return;
        }
        if !c.stage2 {
            c.stage2 = true;
            let seq = c.seq;
            let lens: Vec<usize> = c.lens.iter().map(|l| l.unwrap_or(0)).collect();
            let blob = c.blob.clone();
            let tag = self.ctrl_tag(seq, true);
            for peer in (0..size).filter(|p| *p != rank) {
                let (s, r) = (self.token(), self.token());
                let res = self
                    .transport
                    .isend(s, peer, tag, blob.clone())
                    .and_then(|()| self.transport.irecv(r, peer, tag, lens[peer]));
                if let Err(e) = res {
                    return self.die(e);
                }
                self.ops.insert(s, Op::CollSend);
                self.ops.insert(r, Op::CollPart(peer));
                self.coll.as_mut().expect("set").open += 2;
            }
            let c = self.coll.as_mut().expect("set");
            c.parts[rank] = Some(std::mem::take(&mut c.blob));
            if c.open > 0 {
                return;
            }
        }
        let c = self.coll.take().expect("set");
        let parts = c.parts.into_iter().map(Option::unwrap_or_default).collect();
        let _ = c.reply.send(Ok(parts));
        self.start_coll();
    }

    /// Drives the transport once; whether anything completed.
    fn progress(&mut self) -> bool {
        if self.dead {
            return false;
        }
        let gone: Vec<usize> = (0..self.transport.size())
            .filter(|r| self.transport.peer_gone(*r))
            .collect();
        let mut done = std::mem::take(&mut self.done);
        self.shared.counters.polls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.transport.progress(&mut done) {
            self.die(e);
            return true;
        }
        let any = !done.is_empty();
        for (token, bytes) in done.drain(..) {
            self.complete(token, bytes);
        }
        self.done = done;
        if !gone.is_empty() {
            self.peers_gone(&gone);
        }
        any
    }

    fn complete(&mut self, token: Token, bytes: Option<Vec<u8>>) {
        let Some(op) = self.ops.remove(&token) else {
            return;
        };
        if bytes.is_some() {
            self.shared.arrived();
        }
        match (op, bytes) {
            (
                Op::Data {
                    label,
                    peer,
                    bytes,
                    start,
                },
                _,
            ) => self.trace(label, peer, true, bytes, start),
            (Op::Recv(req), Some(msg)) => {
                let key = (req.src, req.tag);
                self.busy.remove(&key);
                if let Some(next) = self.deferred.get_mut(&key).and_then(VecDeque::pop_front) {
                    self.post_recv(next);
                }
                self.deliver(req, msg);
            }
            (Op::CollSend, _) => self.coll_step(|_| {}),
            (Op::CollLen(peer), Some(m)) => {
                let len = m
                    .get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8")) as usize);
                self.coll_step(|c| c.lens[peer] = len);
            }
            (Op::CollPart(peer), Some(m)) => self.coll_step(|c| c.parts[peer] = Some(m)),
            (_, None) => {}
        }
    }

    fn coll_step(&mut self, f: impl FnOnce(&mut Coll)) {
        self.shared
            .counters
            .control_messages
            .fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.coll.as_mut() {
            f(c);
            c.open -= 1;
        }
        self.check_coll();
    }

    fn deliver(&mut self, req: RecvReq, msg: Vec<u8>) {
        let rank = self.rank();
        let bad = |got: String| DistError::BadMessage {
            rank,
            from: req.src,
            expected: format!(
                "{} (array {}, version {}, flow {:016x})",
                req.info.label, req.info.array, req.info.version, req.info.flow
            ),
            got,
        };
        if msg.len() < HEADER || word(&msg, 0) & !0xff != MAGIC {
            let e = bad(format!(
                "{} bytes that are not a hetflow message",
                msg.len()
            ));
            req.trigger.fail(to_task_error(&e));
            return self.shared.set_fatal(e);
        }
        let (kind, array, version, flow, from_rank, len) = (
            word(&msg, 0) & 0xff,
            word(&msg, 1),
            word(&msg, 2),
            word(&msg, 3),
            word(&msg, 4) as usize,
            word(&msg, 5) as usize,
        );
        if (array, version) != (req.info.array, req.info.version) || flow != req.info.flow {
            let e = if flow != req.info.flow {
                DistError::FlowMismatch {
                    rank,
                    other: req.src,
                    detail: format!(
                        "the message for {} was planned at flow hash {flow:016x} there, {:016x} here",
                        req.info.label, req.info.flow
                    ),
                }
            } else {
                bad(format!("array {array}, version {version}"))
            };
            req.trigger.fail(to_task_error(&e));
            return self.shared.set_fatal(e);
        }
        let payload = &msg[HEADER..HEADER + len.min(msg.len() - HEADER)];
        if kind == FAILURE {
            let text = String::from_utf8_lossy(payload);
            let (task, message) = text.split_once('\0').unwrap_or((&text, ""));
            let root = Root {
                task: task.to_string(),
                rank: from_rank,
                message: message.to_string(),
            };
            tracing::debug!(array = %req.info.label, root = %root.task, rank = root.rank, "a failure arrived instead of data");
            req.trigger.fail(root.to_task_error());
            return;
        }
        let c = &self.shared.counters;
        c.messages_received.fetch_add(1, Ordering::Relaxed);
        c.bytes_received.fetch_add(len as u64, Ordering::Relaxed);
        self.trace(req.info.label.clone(), req.src, false, msg.len(), req.since);
        *req.slot.lock() = Some(msg);
        req.trigger.complete();
    }

    fn trace(&self, label: String, peer: usize, send: bool, bytes: usize, start: Instant) {
        if self.shared.counters.tracing.load(Ordering::Relaxed) {
            self.shared.events.lock().push(CommEvent {
                label,
                peer,
                send,
                bytes,
                start,
                end: Instant::now(),
            });
        }
    }

    fn peers_gone(&mut self, gone: &[usize]) {
        let rank = self.rank();
        let lost: Vec<Token> = self
            .ops
            .iter()
            .filter(|(_, o)| match o {
                Op::Recv(r) => gone.contains(&r.src),
                Op::CollLen(p) | Op::CollPart(p) => gone.contains(p),
                _ => false,
            })
            .map(|(t, _)| *t)
            .collect();
        if lost.is_empty() {
            return;
        }
        let e = DistError::Timeout {
            rank,
            waiting_for: format!("messages from rank(s) {gone:?}, which stopped"),
            secs: 0,
        };
        self.die(e);
    }

    /// A fatal transport error: fail everything expected, refuse what comes.
    fn die(&mut self, e: DistError) {
        self.shared.set_fatal(e.clone());
        self.dead = true;
        self.fail_all(&|_| e.clone());
    }

    fn fail_all(&mut self, err: &dyn Fn(usize) -> DistError) {
        let rank = self.rank();
        for (_, op) in self.ops.drain() {
            if let Op::Recv(r) = op {
                r.trigger.fail(to_task_error(&err(rank)));
            }
        }
        for (_, q) in self.deferred.drain() {
            for r in q {
                r.trigger.fail(to_task_error(&err(rank)));
            }
        }
        if let Some(c) = self.coll.take() {
            let _ = c.reply.send(Err(err(rank)));
        }
        for (_, reply) in self.colls.drain(..) {
            let _ = reply.send(Err(err(rank)));
        }
        for (_, w) in self.waiting.drain() {
            tracing::debug!(array = %w.info.label, waited = ?w.since.elapsed(), "a send was dropped");
        }
    }
}

/// A distributed error as the error of the local task it stops.
pub(crate) fn to_task_error(e: &DistError) -> TaskError {
    TaskError::Failed {
        task: "distributed transfer".into(),
        error: Arc::new(e.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_rank_it_came_from() {
        let remote = TaskError::Remote {
            task: "potrf(0)".into(),
            rank: 3,
            message: "boom".into(),
        };
        let dep = TaskError::DependencyFailed {
            task: "send".into(),
            root: "potrf(0)".into(),
            cause: Arc::new(remote),
        };
        assert_eq!(
            Root::of(&dep, 1),
            Root {
                task: "potrf(0)".into(),
                rank: 3,
                message: "boom".into()
            }
        );
        let local = TaskError::Panicked {
            task: "t".into(),
            message: "x".into(),
        };
        assert_eq!(Root::of(&local, 1).rank, 1);
    }

    #[test]
    fn messages_round_trip_their_header() {
        let info = MsgInfo {
            array: 7,
            version: 9,
            flow: 0xdead_beef,
            label: "a v9".into(),
        };
        let m = data_message(&BufferPool::default(), &info, 2, &[1, 2, 3]);
        assert_eq!(m.len(), HEADER + 3);
        assert_eq!(
            (
                word(&m, 0),
                word(&m, 1),
                word(&m, 2),
                word(&m, 3),
                word(&m, 4)
            ),
            (MAGIC | DATA, 7, 9, 0xdead_beef, 2)
        );
        let root = Root {
            task: "t".into(),
            rank: 1,
            message: "m".repeat(5000),
        };
        assert!(failure_message(&info, &root).len() <= receive_room(0));
    }
}
