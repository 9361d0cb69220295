//! A task in the dependency graph: its counters, its dependents, its completion.
//!
//! ## Life of a node
//! `spawn` creates the node with `remaining = 1` (a guard), adds one to `remaining` for every
//! dependency that has not finished, then drops the guard. When `remaining` reaches 0 the node
//! is *ready* and [`Core::schedule`] places it. A dependency releases its dependents either at
//! completion, or — for a GPU task — as soon as it is *encoded* ("released early"): the
//! dependent then carries the fence `(gpu, batch)`; on the same GPU queue order is enough, and
//! anywhere else it waits for the fence before it runs.
//!
//! ## Layout: the common task in one small allocation
//! A task with a `'static` name, one body, no declared arrays and a single possible device
//! (the common fine-grained task) is one allocation of at most 120 bytes (`Arc` counts
//! included), which glibc serves from its fast bins even when the node is freed on another
//! thread than the one that made it (a 144-byte chunk costs about twice as much there:
//! measured in the closing note of the overhead issue). Once a runtime's workers have
//! finished tasks, that allocation is usually a finished node's, reused (`recycle.rs`), so
//! the common task allocates nothing. Everything else is out of line and
//! allocated only by the tasks that need it:
//! - [`Decl`]: declared arrays, the user's placement and the scheduler's booking — for tasks
//!   with arrays, or with more than one possible device;
//! - `Ext`: an owned name, a TaskSpace key — for tasks that have them;
//! - `Rare`: more than one dependent, waiters, GPU fences and pins, a pending failure,
//!   timing — for the tasks that meet them.
//!
//! The lock-free word `flags` answers "is it done, did it fail, where did it run, where
//! must it run, which bodies does it have, is there anything in its locked state" without
//! the node's lock: a successful task's result, `is_done`, and the scheduling of a task with
//! one possible device take no lock. A plain task (no declaration, no dependent, no waiter,
//! untimed) takes no lock at all: its start and its completion are one atomic RMW each.
//!
//! ## The slot
//! `Node::slot` (the bodies, then the value or the error) is outside the lock, and used by
//! one thread at a time, by phase:
//! 1. until the node is ready: the spawning thread (a key's node: the spawn that claimed it);
//!    readiness is published by `remaining`'s AcqRel decrement and the queue's push/pop;
//! 2. from ready to `DONE`: the task's runner alone — the one thread that took the job from
//!    its queue (a GPU task: its driver, which may put the bodies back and retry). It takes
//!    the bodies (`begin`), may put them back (`restore`), and writes the outcome before
//!    it publishes `DONE` with an AcqRel RMW (`finish`; a GPU task's value in its encoding);
//! 3. after `DONE`: anyone, with the node's lock held (`take_value`, `failure`).
//!
//! Nothing reads the slot to learn which bodies a task has: `HAS_CPU`/`HAS_GPU` in `flags`
//! say it, set before the node is ready.
//!
//! ## Completion without a lock
//! The locked state (`NodeState`: the declaration, `Rare`) is touched by other threads at
//! any time: a task that comes to depend on this one (`add_edge`, beyond the first), a
//! waiter (`register_waker`), a cycle search (`dependents`). They *announce* themselves:
//! holding the lock, they set `LINKED` with one RMW that also returns whether `DONE` was
//! set; if it was, they register nothing (the task is finished), else they register before
//! they unlock. Whoever allocates `Rare` sets `RARE`; whoever stores a declaration sets
//! `HAS_DECL`; `fail_with` sets `FAIL_PENDING`.
//!
//! Completion sets `DONE` with one RMW. RMWs on `flags` are totally ordered, so either an
//! announcement came first — then completion sees `LINKED`, takes the lock (waiting for the
//! registration to end) and takes what was registered — or `DONE` came first and nothing
//! was registered. Everything else that sets `RARE` happens before completion (before the
//! node was ready, or on its runner). So when the RMW returns neither `LINKED` nor `RARE`,
//! the locked state is empty and completion does not touch it; readers holding the lock
//! meanwhile (a cycle search) see it empty. The start is the same: without `HAS_DECL` or
//! `FAIL_PENDING` (and untimed), there is nothing to take but the bodies in the slot.
//!
//! ## The first dependent
//! Most tasks that get a dependent get one (a chain, a reader after a writer), so the first
//! registers without the lock, in `Node::first`:
//! 1. *Claim.* The dependent sets `FIRST_CLAIMED` with one RMW. If the old flags had none of
//!    `DONE`, `RELEASED`, `FIRST_CLAIMED`, the claim succeeded: it adds one to its own
//!    `remaining`, then stores its `Arc::into_raw` (tagged with whether it propagates
//!    failure) into `first`, holding no lock. Otherwise it takes the locked path above
//!    (which sees `DONE`, the early release, or registers in `Rare::dependents`).
//! 2. *End of registrations.* Completion's `DONE` RMW, or an early release's `RELEASED`
//!    RMW (made under the lock, after `Rare::released` is set), returns whether a claim came
//!    first; if one did (and no early release took it), that one takes the dependent:
//!    waits for the pointer (the claimant stores it right after its claim and holds no
//!    lock, so the wait is short and cannot deadlock), nulls the field and releases it. A
//!    claim after the RMW fails, and the locked path sees `DONE` or the early release.
//!    Exactly one side of the RMW order holds, so the dependent is released exactly once.
//! 3. *Readers.* A cycle search reads `first` under the lock after announcing itself with
//!    `LINKED` as above: if `DONE` came later, completion takes the lock before it takes the
//!    dependent, so the pointer read is alive while it is cloned; if `DONE` came first the
//!    reader lists nothing.
//!
//! A chain link thus costs its spawner one RMW on its dependency (the claim) instead of a
//! lock, an RMW and an unlock, and the dependency's completion no lock at all. A node
//! dropped unfinished (its runtime gone) drops the reference in `first` (`Drop`).
//!
//! ## Waiting and completion
//! Completion publishes `DONE`, then wakes what `Rare::wakers` holds. A waiter checks
//! `DONE`, then announces itself under the lock as above and registers its waker: either
//! it registered before completion (which then takes the lock and wakes it) or it sees
//! `DONE`. No condition variable: a task nobody waits for pays nothing for waiting.
//!
//! Locks are never nested: a node's state lock is held only to read or edit that node.

use std::borrow::Cow;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Wake, Waker};

use parking_lot::Mutex;

use super::context::{CpuContext, GpuContext};
use super::error::TaskError;
use super::space::TaskKey;
use crate::data::array::{GpuPin, Memory, RawArray};
use crate::data::reduce::{GpuPartial, HostPartial};
use crate::data::transfer::{padded, BatchTransfers, UploadCtx};
use crate::data::{Access, DataError, Reduction};
use crate::device::DeviceId;
use crate::runtime::core::Core;
use crate::runtime::RuntimeHandle;
use crate::sched::cpu::{help_while_waiting, quiet_next_push};
use crate::sched::gpu::{on_driver_thread, GpuDriver};
use crate::sched::job::{
    BatchEncoder, BatchFailure, CpuJob, CpuJobRef, Encoded, Encoding, Fence, GpuJob, GpuJobRef,
    ScopedEncode,
};
use crate::sched::scheduler::{Booking, TaskShape};
use crate::sched::spin_until;
use crate::sched::Placement;

/// A task's name: free for `&'static str` names.
pub(crate) type TaskName = Cow<'static, str>;

pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// A task's value, type-erased (a `()` value costs no allocation).
pub(crate) type Value = Box<dyn std::any::Any + Send>;
pub(crate) type CpuBody = Box<dyn FnOnce(&mut CpuContext<'_>) -> Result<Value, BodyError> + Send>;
pub(crate) type GpuBody = Box<dyn FnOnce(&mut GpuContext<'_>) -> Result<Value, BodyError> + Send>;

/// One declared array and how the task accesses it.
pub(crate) type Declared = (Arc<RawArray>, Access);

/// A task's declared arrays: the first inline (most tasks declare one or two), the others
/// in a vector, so that a one-array task's declaration is one small allocation.
pub(crate) type AccessList = OneOrMany<Declared>;

/// A list whose first element is inline: a list of one allocates nothing (the arrays a task
/// declares, the handles it waits for).
#[derive(Default)]
pub(crate) enum OneOrMany<T> {
    #[default]
    Empty,
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::Empty => &[],
            OneOrMany::One(d) => std::slice::from_ref(d),
            OneOrMany::Many(v) => v,
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            OneOrMany::Empty => &mut [],
            OneOrMany::One(d) => std::slice::from_mut(d),
            OneOrMany::Many(v) => v,
        }
    }

    pub(crate) fn push(&mut self, d: T) {
        *self = match std::mem::take(self) {
            OneOrMany::Empty => OneOrMany::One(d),
            OneOrMany::One(first) => OneOrMany::Many(vec![first, d]),
            OneOrMany::Many(mut v) => {
                v.push(d);
                OneOrMany::Many(v)
            }
        };
    }
}

impl<T> std::ops::Deref for OneOrMany<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> Extend<T> for OneOrMany<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for d in items {
            self.push(d);
        }
    }
}

/// A task's declaration beyond its bodies, out of line (see "Layout" above).
#[derive(Default)]
pub(crate) struct Decl {
    /// Where the user allows it to run.
    pub placement: Placement,
    /// The arrays it declared, with their access modes.
    pub accesses: AccessList,
    /// The scheduler's bookkeeping, set when the task is placed.
    pub booking: Booking,
}

impl Decl {
    /// The task as the scheduler sees it, and its booking, which the scheduler may update
    /// while it reads the rest (a split borrow). `bodies` is (CPU body, GPU body).
    fn shape<'a>(
        &'a mut self,
        name: &'a str,
        (has_cpu, has_gpu): (bool, bool),
    ) -> (TaskShape<'a>, &'a mut Booking) {
        let Decl {
            placement,
            accesses,
            booking,
        } = self;
        let shape = TaskShape {
            name,
            placement,
            has_cpu,
            has_gpu,
            accesses,
        };
        (shape, booking)
    }
}

/// The bodies of a task not yet run, or the outcome of one that finished.
#[derive(Default)]
enum Slot {
    /// No body (a barrier or a placeholder), or taken to run.
    #[default]
    Empty,
    Cpu(CpuBody),
    Gpu(GpuBody),
    Both(Box<(CpuBody, GpuBody)>),
    /// The task's value, until a handle takes it.
    Value(Value),
    /// The task failed with this error.
    Failed(Box<TaskError>),
}

impl Slot {
    /// The [`HAS_CPU`] and [`HAS_GPU`] bits of the bodies it holds.
    fn body_bits(&self) -> u32 {
        match self {
            Slot::Cpu(_) => HAS_CPU,
            Slot::Gpu(_) => HAS_GPU,
            Slot::Both(_) => HAS_CPU | HAS_GPU,
            _ => 0,
        }
    }

    /// Takes the bodies, leaving a value or an outcome where it is.
    fn take_bodies(&mut self) -> (Option<CpuBody>, Option<GpuBody>) {
        match std::mem::take(self) {
            Slot::Cpu(c) => (Some(c), None),
            Slot::Gpu(g) => (None, Some(g)),
            Slot::Both(b) => (Some(b.0), Some(b.1)),
            other => {
                *self = other;
                (None, None)
            }
        }
    }

    fn from_bodies(cpu: Option<CpuBody>, gpu: Option<GpuBody>) -> Slot {
        match (cpu, gpu) {
            (Some(c), Some(g)) => Slot::Both(Box::new((c, g))),
            (Some(c), None) => Slot::Cpu(c),
            (None, Some(g)) => Slot::Gpu(g),
            (None, None) => Slot::Empty,
        }
    }
}

/// What a task runs with, taken from its node when it starts.
pub(crate) struct Work {
    pub cpu: Option<CpuBody>,
    pub gpu: Option<GpuBody>,
    pub decl: Option<Box<Decl>>,
}

/// A task being spawned: what its node is made with (or a key's node is given).
pub(crate) struct Spawned {
    pub name: TaskName,
    pub runtime: RuntimeHandle,
    pub cpu: Option<CpuBody>,
    pub gpu: Option<GpuBody>,
    /// The value of a body-less `()` task (a barrier).
    pub value: Option<Value>,
    /// The one device it can run on, when there is one.
    pub only: Option<DeviceId>,
    /// Its declaration, when it has one now (arrays are added by [`Node::set_decl`] once
    /// tracked).
    pub decl: Option<Box<Decl>>,
    /// Its priority among ready CPU jobs.
    pub priority: i32,
}

impl Spawned {
    fn slot(cpu: Option<CpuBody>, gpu: Option<GpuBody>, value: Option<Value>) -> Slot {
        match value {
            Some(v) => Slot::Value(v),
            None => Slot::from_bodies(cpu, gpu),
        }
    }
}

/// Where a ready task goes: `Ok(None)` for a barrier (no body), else the device and
/// whether an idle device should be woken to steal it; `Err` says why no device can run it.
pub(crate) type Route = Result<Option<(DeviceId, bool)>, String>;

/// The part of a node that most tasks never need (see "Layout" above).
#[derive(Default)]
struct Rare {
    /// The error this task completes with instead of running (a failed dependency, no
    /// device); the first one wins.
    fail_with: Option<TaskError>,
    released: Option<Fence>,
    /// Dependents after the first (which is inline in the state).
    dependents: Vec<(Arc<Node>, bool)>,
    /// Dependents released early (at encoding), kept until completion: if the task's batch
    /// fails, those its failure fails must fail too, and they do before its fence passes.
    released_to: Vec<(Arc<Node>, bool)>,
    wakers: Vec<Waker>,
    fences: Vec<Fence>,
    /// GPU copies this task uses, kept from eviction until it completes.
    pins: Vec<GpuPin>,
    /// When the task started running (body start, or GPU encoding), and on which CPU worker.
    started: Option<(crate::time::Instant, Option<usize>)>,
    /// Bytes of the arrays it accesses, and dmda's prediction (for the model and backlog).
    data_bytes: u64,
    predicted: Option<(u32, u64)>,
    /// dmda's exploration debit, settled at completion (0: not an exploration).
    explore_ns: u64,
    /// A GPU task's share of its batch's device time (what the model learns for it).
    device_time: Option<std::time::Duration>,
    /// A GPU reducer's partials, handed to their arrays when its batch finishes.
    gpu_partials: Vec<(Arc<RawArray>, Reduction, GpuPartial)>,
}

#[derive(Default)]
struct NodeState {
    decl: Option<Box<Decl>>,
    rare: Option<Box<Rare>>,
}

impl NodeState {
    fn fences(&self) -> Vec<Fence> {
        self.rare
            .as_ref()
            .map_or_else(Vec::new, |r| r.fences.clone())
    }
}

/// What only some nodes have: an owned name, a TaskSpace key.
struct Ext {
    /// The task's name when it is not `'static`, or a key's task's name once spawned.
    name: OnceLock<TaskName>,
    /// For a node of a [`super::TaskSpace`]: the space's name, the key, and `space[key]`.
    key: Option<(String, TaskKey, String)>,
    /// [`KEY_PLACEHOLDER`], [`KEY_SPAWNED`] or [`KEY_ABANDONED`].
    key_state: AtomicU8,
    /// A key's node is made before its task: the runtime it is spawned on, once it is.
    runtime: OnceLock<RuntimeHandle>,
}

pub(crate) struct Node {
    remaining: AtomicU32,
    /// `DONE`, `FAILED`, `FIRST_CLAIMED`, and the devices `ran_on` and `only` (see the
    /// constants below).
    flags: AtomicU32,
    /// The first task waiting for this one, without a lock ("The first dependent" above):
    /// null, or an `Arc::into_raw` of the dependent whose lowest bit says whether this
    /// task's failure fails it ([`PROPAGATES`]). The other dependents are in
    /// `Rare::dependents`.
    first: AtomicPtr<Node>,
    /// The task's name when it is `'static` (else in `ext`).
    name: &'static str,
    /// The runtime this node was spawned on (a key's node: in `ext`).
    runtime: Option<RuntimeHandle>,
    ext: Option<Box<Ext>>,
    /// Its priority among ready CPU jobs (`TaskBuilder::priority`; a key's node gets it when
    /// its task is attached, before it can be ready).
    priority: AtomicI32,
    /// The bodies until the task runs, then its outcome; no lock until `DONE` (see "The
    /// slot" above).
    slot: UnsafeCell<Slot>,
    st: Mutex<NodeState>,
}

// SAFETY: every field of a node but `slot` is `Send + Sync` (checked below, in this crate);
// `slot` holds `Send` values and is used by one thread at a time ("The slot" above). The core
// holds nodes and nodes hold the core: left to the compiler, proving `Runtime: Send + Sync`
// walks that cycle through every wgpu type inside and overflows the default recursion limit
// in *users'* crates (a `static OnceLock<Runtime>` stops compiling). Stating the two auto
// traits here stops the walk at the node (as `tracking::SharedTrackers` does for the
// trackers).
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<AtomicU32>();
    send_sync::<AtomicPtr<Node>>();
    send_sync::<&'static str>();
    send_sync::<Option<RuntimeHandle>>();
    send_sync::<Option<Box<Ext>>>();
    send_sync::<AtomicI32>();
    send_sync::<Mutex<NodeState>>();
    const fn send<T: Send>() {}
    send::<Slot>();
};

// `Node::first` keeps a tag in its pointers' lowest bit.
const _: () = assert!(std::mem::align_of::<Node>() >= 2);
// The common task's node stays in glibc's fast bins (see "Layout" above): 104 bytes here,
// plus the `Arc` counts, at most 120; and so does a one-array task's declaration.
const _: () = assert!(std::mem::size_of::<Node>() <= 104);
const _: () = assert!(std::mem::size_of::<Decl>() <= 120);

/// The task finished (its result is final).
const DONE: u32 = 1;
/// The task finished with an error (in its slot).
const FAILED: u32 = 1 << 1;
/// A dependent claimed `Node::first` ("The first dependent" above): when the RMW that set
/// it found none of `DONE`, `RELEASED` and `FIRST_CLAIMED`, that dependent stores itself in
/// `first` right after, and whoever ends the registrations (completion, early release)
/// takes it from there.
const FIRST_CLAIMED: u32 = 1 << 2;
/// The dependents were released early (`Rare::released` is set, under the lock): no
/// dependent claims `first` any more.
const RELEASED: u32 = 1 << 30;
/// In `Node::first`: the dependent takes on this task's failure (nodes are aligned to 8).
const PROPAGATES: usize = 1;

/// At least one GPU fence is recorded in `Rare::fences`.
const HAS_FENCES: u32 = 1 << 3;
/// Another thread registered with the node (a dependent or a waiter), under its lock (set
/// under the lock, by an RMW that also tells whether `DONE` was set before): the completion
/// takes the lock ("Completion without a lock" above).
const LINKED: u32 = 1 << 4;
/// `NodeState::rare` was allocated (its completion takes the lock to read it).
const RARE: u32 = 1 << 5;
/// A declaration was put in `NodeState::decl` (the start takes the lock to take it).
const HAS_DECL: u32 = 1 << 6;
/// A failure was recorded in `Rare::fail_with` (the start takes the lock to take it).
const FAIL_PENDING: u32 = 1 << 7;
/// Where the task ran: bits 8..18, 0 = not yet, 1 = CPU, 2 + i = GPU i.
const RAN_SHIFT: u32 = 8;
/// The one device the task can run on, decided at spawn: bits 18..28, same encoding.
const ONLY_SHIFT: u32 = 18;
const DEVICE_MASK: u32 = 0x3ff;
/// The task was given a CPU body (set before it can be ready; kept once it ran).
const HAS_CPU: u32 = 1 << 28;
/// The task was given a GPU body.
const HAS_GPU: u32 = 1 << 29;

fn encode_device(d: Option<DeviceId>) -> u32 {
    match d {
        None => 0,
        Some(DeviceId::Cpu) => 1,
        // GPU indices are below the runtime's GPU count; 1022 GPUs in one process is far
        // beyond any machine, and a larger index reads as "none" (placement then decides).
        Some(DeviceId::Gpu(i)) if i + 2 <= DEVICE_MASK as usize => i as u32 + 2,
        Some(DeviceId::Gpu(_)) => 0,
    }
}

fn decode_device(bits: u32) -> Option<DeviceId> {
    match bits & DEVICE_MASK {
        0 => None,
        1 => Some(DeviceId::Cpu),
        i => Some(DeviceId::Gpu(i as usize - 2)),
    }
}

/// A `Node::first` pointer without its [`PROPAGATES`] tag.
fn untag(p: *mut Node) -> *const Node {
    p.map_addr(|a| a & !PROPAGATES).cast_const()
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node dropped before it finished (its runtime gone) still owns its first
        // dependent's reference.
        drop(self.first_dependent_owned());
    }
}

/// A TaskSpace key's node that no task was spawned under yet (others may wait for it).
const KEY_PLACEHOLDER: u8 = 0;
/// A task was spawned under the key.
const KEY_SPAWNED: u8 = 1;
/// A runtime whose tasks waited for the key shut down first: the node failed with
/// [`TaskError::NeverSpawned`], and a later spawn under the key gets a fresh node.
const KEY_ABANDONED: u8 = 2;

/// Serialises the dependency phase of spawns under a TaskSpace key, across runtimes, so that
/// two such spawns cannot each close half of a cycle unseen (see [`Node::path_to`]).
pub(crate) static KEY_GRAPH: Mutex<()> = Mutex::new(());

/// How long a thread outside the pool spins (yielding) for a task before it blocks: GPU round
/// trips are tens of microseconds, and waking a blocked thread on a VM costs about as much.
const SPIN_WAIT: std::time::Duration = std::time::Duration::from_micros(100);

/// Wakes a thread blocked in [`Node::wait_done`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name())
            .field("done", &self.is_done())
            .finish()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl Node {
    fn make(
        name: TaskName,
        runtime: Option<RuntimeHandle>,
        key: Option<(String, TaskKey, String)>,
        (slot, st): (Slot, NodeState),
        flags: u32,
        priority: i32,
    ) -> Arc<Node> {
        let flags = flags | slot.body_bits() | if st.decl.is_some() { HAS_DECL } else { 0 };
        let (name, ext) = match (name, key) {
            (Cow::Borrowed(s), None) => (s, None),
            (name, None) => (
                "",
                Some(Box::new(Ext {
                    name: OnceLock::from(name),
                    key: None,
                    key_state: AtomicU8::new(KEY_SPAWNED),
                    runtime: OnceLock::new(),
                })),
            ),
            (_, Some(key)) => (
                "",
                Some(Box::new(Ext {
                    name: OnceLock::new(),
                    key: Some(key),
                    key_state: AtomicU8::new(KEY_PLACEHOLDER),
                    runtime: OnceLock::new(),
                })),
            ),
        };
        // A task of a runtime goes into a finished task's allocation if there is a spare
        // one (`recycle.rs`).
        let spare = runtime
            .as_ref()
            .and_then(|r| super::recycle::spare(&r.core.nodes));
        let node = Node {
            remaining: AtomicU32::new(1),
            flags: AtomicU32::new(flags),
            first: AtomicPtr::new(std::ptr::null_mut()),
            name,
            runtime,
            ext,
            priority: AtomicI32::new(priority),
            slot: UnsafeCell::new(slot),
            st: Mutex::new(st),
        };
        match spare {
            Some(mut arc) => match Arc::get_mut(&mut arc) {
                Some(n) => {
                    // SAFETY: `n` is a blank node (`Node::blank` emptied it before it was
                    // kept: no runtime, an empty slot and state, no `ext`), which owns
                    // nothing: writing over it without dropping it leaks nothing, and does
                    // not read memory that the thread which blanked it wrote last (a cache
                    // miss a drop would wait for).
                    unsafe { std::ptr::write(n, node) };
                    arc
                }
                // Unreachable: only nodes `Arc::get_mut` accepted are kept.
                None => Arc::new(node),
            },
            None => Arc::new(node),
        }
    }

    /// Empties a finished task's node that nothing else refers to (`&mut`), dropping what it
    /// held, for reuse (`recycle.rs`). Returns the runtime it was spawned on; `None` (and
    /// nothing emptied) for a node that is not a finished plain task.
    pub(crate) fn blank(&mut self) -> Option<RuntimeHandle> {
        if *self.flags.get_mut() & DONE == 0 || self.ext.is_some() {
            return None;
        }
        let runtime = self.runtime.take()?;
        // What a finished node may still own: a value nobody took; a declaration, first
        // dependent or `Rare` only if something went unusual (each is taken at start or
        // completion otherwise). The rest owns nothing (`ext` is None, checked above).
        *self.slot.get_mut() = Slot::Empty;
        let st = self.st.get_mut();
        st.decl = None;
        st.rare = None;
        // Completion took the first dependent; nothing claims it after `DONE`.
        drop(self.first_dependent_owned());
        Some(runtime)
    }

    /// The node of a task spawned (not under a key), holding its spawn guard.
    pub(crate) fn task(t: Spawned) -> Arc<Node> {
        let slot = Spawned::slot(t.cpu, t.gpu, t.value);
        let st = NodeState {
            decl: t.decl,
            rare: None,
        };
        let flags = encode_device(t.only) << ONLY_SHIFT;
        Node::make(t.name, Some(t.runtime), None, (slot, st), flags, t.priority)
    }

    /// The node of `space[key]` before a task is spawned under it.
    pub(crate) fn placeholder(space: &str, key: &TaskKey) -> Arc<Node> {
        let label = format!("{space}{key}");
        Node::make(
            Cow::Borrowed(""),
            None,
            Some((space.to_string(), key.clone(), label)),
            Default::default(),
            0,
            0,
        )
    }

    /// A node completed from outside the graph ([`super::Event`]): no body, no runtime; it
    /// finishes when its trigger fires (or is dropped).
    pub(crate) fn event(name: String) -> Arc<Node> {
        Node::make(Cow::Owned(name), None, None, Default::default(), 0, 0)
    }

    /// A node that is already finished with `result` (spawn errors).
    pub(crate) fn finished(name: TaskName, result: Result<(), TaskError>) -> Arc<Node> {
        let (slot, flags) = match result {
            Ok(()) => (Slot::Empty, DONE),
            Err(e) => (Slot::Failed(Box::new(e)), DONE | FAILED),
        };
        Node::make(name, None, None, (slot, NodeState::default()), flags, 0)
    }

    /// Gives a key's node the task spawned under it (after [`Node::try_claim`]).
    pub(crate) fn attach(&self, t: Spawned) {
        if let Some(ext) = &self.ext {
            let _ = ext.name.set(t.name);
            let _ = ext.runtime.set(t.runtime);
        }
        self.priority.store(t.priority, Ordering::Relaxed);
        let slot = Spawned::slot(t.cpu, t.gpu, t.value);
        self.flags.fetch_or(
            (encode_device(t.only) << ONLY_SHIFT) | slot.body_bits(),
            Ordering::AcqRel,
        );
        // SAFETY: the key's node was claimed by this spawn (`try_claim`) and is not ready:
        // nothing else uses the slot ("The slot").
        unsafe { *self.slot.get() = slot };
        if let Some(decl) = t.decl {
            self.set_decl(decl);
        }
    }

    /// Sets the declaration of a task not yet released (its arrays, once tracked), or puts
    /// back the one its runner took (`restore`).
    pub(crate) fn set_decl(&self, decl: Box<Decl>) {
        self.st.lock().decl = Some(decl);
        self.flags.fetch_or(HAS_DECL, Ordering::AcqRel);
    }

    /// `st.rare`, allocated (and announced in `flags`) if needed. Call with `st` locked.
    fn rare_of<'a>(&self, st: &'a mut NodeState) -> &'a mut Rare {
        if st.rare.is_none() {
            self.flags.fetch_or(RARE, Ordering::AcqRel);
        }
        st.rare.get_or_insert_with(Box::default)
    }

    /// The bodies of a task not yet run, from `flags`.
    fn bodies(&self) -> (bool, bool) {
        let f = self.flags.load(Ordering::Acquire);
        (f & HAS_CPU != 0, f & HAS_GPU != 0)
    }

    /// Claims a key's node for the task being spawned: `Err(true)` if it was abandoned
    /// (the caller makes a fresh one), `Err(false)` if a task was spawned under it already.
    pub(crate) fn try_claim(&self) -> Result<(), bool> {
        let Some(ext) = &self.ext else {
            return Err(false);
        };
        match ext.key_state.compare_exchange(
            KEY_PLACEHOLDER,
            KEY_SPAWNED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(state) => Err(state == KEY_ABANDONED),
        }
    }

    fn key_state(&self) -> u8 {
        self.ext
            .as_ref()
            .map_or(KEY_SPAWNED, |e| e.key_state.load(Ordering::Acquire))
    }

    /// Whether a task was spawned under this key's node (always true for a plain task).
    pub(crate) fn is_spawned(&self) -> bool {
        self.key_state() == KEY_SPAWNED
    }

    /// Whether this is a key's node that no task was spawned under (nor abandoned).
    pub(crate) fn is_unspawned_key(&self) -> bool {
        self.key_state() == KEY_PLACEHOLDER
    }

    /// Fails a key's node that no task was spawned under with [`TaskError::NeverSpawned`]
    /// (its waiters fail naming it); nothing if a task was spawned under it meanwhile.
    pub(crate) fn abandon(self: &Arc<Self>) {
        let Some((ext, (space, key, _))) = self
            .ext
            .as_ref()
            .and_then(|e| e.key.as_ref().map(|k| (e, k)))
        else {
            return;
        };
        if ext
            .key_state
            .compare_exchange(
                KEY_PLACEHOLDER,
                KEY_ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            tracing::warn!(space = %space, key = %key, "no task was spawned under a key that tasks wait for");
            self.complete(Err(TaskError::NeverSpawned {
                space: space.clone(),
                key: key.to_string(),
            }));
        }
    }

    /// The task's name (a key's node before its task is spawned: `space[key]`).
    pub(crate) fn name(&self) -> &str {
        match &self.ext {
            None => self.name,
            Some(e) => match (e.name.get(), &e.key) {
                (Some(n), _) => n,
                (None, Some((_, _, label))) => label,
                (None, None) => "",
            },
        }
    }

    /// How the node is named in cycles and reports: `space[key]` for a key's node, else the
    /// task's name.
    pub(crate) fn label(&self) -> String {
        match self.ext.as_ref().and_then(|e| e.key.as_ref()) {
            Some((_, _, label)) => label.clone(),
            None => self.name().to_string(),
        }
    }

    /// The tasks waiting for this one (none once it finished).
    fn dependents(&self) -> Vec<Arc<Node>> {
        let st = self.st.lock();
        // Announced as a registrant does: a completion after this sees LINKED and waits for
        // this lock before it takes the first dependent, so the one read below stays alive
        // while it is cloned ("The first dependent").
        let f = self.flags.fetch_or(LINKED, Ordering::AcqRel);
        if f & DONE != 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        if f & (FIRST_CLAIMED | RELEASED) == FIRST_CLAIMED {
            let p = self.first_published();
            // SAFETY: `p` came from `Arc::into_raw` and is not taken before this lock is
            // released (above), so the node is alive; the new count is owned by the `Arc`.
            out.push(unsafe {
                let p = untag(p);
                Arc::increment_strong_count(p);
                Arc::from_raw(p)
            });
        }
        out.extend(
            st.rare
                .iter()
                .flat_map(|r| r.dependents.iter().map(|(d, _)| d.clone())),
        );
        out
    }

    /// The first dependent's pointer, once its claimant stored it (it does right after its
    /// claim, holding no lock: the wait is short and cannot deadlock). Call only when a
    /// claim succeeded and nobody took the dependent yet.
    fn first_published(&self) -> *mut Node {
        let mut spins = 0u32;
        loop {
            let p = self.first.load(Ordering::Acquire);
            if !p.is_null() {
                return p;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Takes the first dependent (and whether it propagates failure) out of `first`: for
    /// whoever ends the registrations, once a claim succeeded.
    fn take_first(&self) -> (Arc<Node>, bool) {
        let p = self.first_published();
        self.first.store(std::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: `p` is the claimant's `Arc::into_raw` (tagged), taken once (the field is
        // null again and nobody stores into it after the end of registrations).
        (
            unsafe { Arc::from_raw(untag(p)) },
            p.addr() & PROPAGATES != 0,
        )
    }

    /// The first dependent still in `first`, if any, for a node nothing else refers to.
    fn first_dependent_owned(&mut self) -> Option<Arc<Node>> {
        let p = std::mem::replace(self.first.get_mut(), std::ptr::null_mut());
        // SAFETY: a non-null `first` is an `Arc::into_raw` nobody took (`&mut self`).
        (!p.is_null()).then(|| unsafe { Arc::from_raw(untag(p)) })
    }

    /// Names of the tasks waiting for this one.
    pub(crate) fn dependent_names(&self) -> Vec<String> {
        self.dependents()
            .iter()
            .map(|d| d.name().to_string())
            .collect()
    }

    /// A chain of waiting tasks from `self` to `target` (`[self, .., target]`), if there is
    /// one: then `self` waiting for `target` would close a cycle.
    ///
    /// Only a key's node can have waiters before its own dependencies are added, so only
    /// spawns under a key look (under [`KEY_GRAPH`]): the edge that closes a cycle always
    /// ends at such a node. Finished nodes have no waiters left, so the search covers only
    /// pending tasks downstream of `self`.
    pub(crate) fn path_to(self: &Arc<Self>, target: &Arc<Node>) -> Option<Vec<Arc<Node>>> {
        let mut seen = std::collections::HashSet::new();
        // (node, index of the node it was reached from)
        let mut found: Vec<(Arc<Node>, usize)> = vec![(self.clone(), usize::MAX)];
        let mut next = 0;
        seen.insert(Arc::as_ptr(self));
        while next < found.len() {
            let dependents = found[next].0.dependents();
            for d in dependents {
                if !seen.insert(Arc::as_ptr(&d)) {
                    continue;
                }
                let hit = Arc::ptr_eq(&d, target);
                found.push((d, next));
                if hit {
                    let mut path = Vec::new();
                    let mut i = found.len() - 1;
                    while i != usize::MAX {
                        path.push(found[i].0.clone());
                        i = found[i].1;
                    }
                    path.reverse();
                    return Some(path);
                }
            }
            next += 1;
        }
        None
    }

    /// The runtime this node was spawned on, once it is.
    fn runtime(&self) -> Option<&RuntimeHandle> {
        self.runtime
            .as_ref()
            .or_else(|| self.ext.as_ref().and_then(|e| e.runtime.get()))
    }

    /// The shared state of the runtime this node was spawned on, once attached.
    pub(crate) fn core(&self) -> Option<&Arc<Core>> {
        self.runtime().map(|r| &r.core)
    }

    /// The one device the task can run on, when it has one and no GPU fence to respect:
    /// then the scheduler sends it there without looking at the node's state.
    pub(crate) fn only_unfenced(&self) -> Option<DeviceId> {
        let f = self.flags.load(Ordering::Acquire);
        if f & HAS_FENCES != 0 {
            return None;
        }
        decode_device(f >> ONLY_SHIFT)
    }

    /// Where a ready task runs: `place` decides from its shape unless it has no body (a
    /// barrier: `Ok(None)`) or one possible device. Returns the decision (device, steal hint)
    /// and the fences the node must respect, read under one lock.
    pub(crate) fn placement_and_fences(
        &self,
        place: impl FnOnce(&TaskShape<'_>, &mut Booking) -> Result<(DeviceId, bool), String>,
    ) -> (Route, Vec<Fence>) {
        let only = decode_device(self.flags.load(Ordering::Acquire) >> ONLY_SHIFT);
        let name = self.name();
        let (has_cpu, has_gpu) = self.bodies();
        let mut st = self.st.lock();
        let fences = st.fences();
        let decision = if !has_cpu && !has_gpu {
            Ok(None)
        } else if let Some(t) = only {
            Ok(Some((t, false)))
        } else {
            // A task with a choice always has a declaration (made at spawn); without one it
            // reads as `Placement::Any` with no arrays.
            let mut spare = Decl::default();
            let decl = st.decl.as_deref_mut().unwrap_or(&mut spare);
            let (shape, booking) = decl.shape(name, (has_cpu, has_gpu));
            place(&shape, booking).map(Some)
        };
        (decision, fences)
    }

    /// Puts back work taken by [`Node::begin`] (the GPU driver retries the task later).
    fn restore(&self, work: Work) {
        // SAFETY: called by the task's runner, before the task is done ("The slot").
        unsafe { *self.slot.get() = Slot::from_bodies(work.cpu, work.gpu) };
        if let Some(decl) = work.decl {
            self.set_decl(decl);
        }
        self.flags
            .fetch_and(!(DEVICE_MASK << RAN_SHIFT), Ordering::AcqRel);
    }

    /// Takes the work and any pending failure in one lock; records `device` as where the task
    /// runs when it will run its body there.
    ///
    /// A task with no declaration and no failure recorded, untimed, takes no lock: its
    /// bodies are in the slot, which its runner owns ("The slot").
    fn begin(&self, device: DeviceId) -> (Work, Option<TaskError>) {
        let tracing = self.core().is_some_and(|c| c.tracing());
        // SAFETY: `begin` is called by the task's runner, before the task is done.
        let (cpu, gpu) = unsafe { (*self.slot.get()).take_bodies() };
        let ran = encode_device(Some(device)) << RAN_SHIFT;
        let runs = cpu.is_some() || gpu.is_some();
        if !tracing && self.flags.load(Ordering::Acquire) & (HAS_DECL | FAIL_PENDING) == 0 {
            if runs {
                self.flags.fetch_or(ran, Ordering::AcqRel);
            }
            return (
                Work {
                    cpu,
                    gpu,
                    decl: None,
                },
                None,
            );
        }
        let mut st = self.st.lock();
        let decl = st.decl.take();
        let failure = st.rare.as_mut().and_then(|r| r.fail_with.take());
        // Timed for a trace, or for dmda when it chose among devices.
        let timing = tracing || decl.as_ref().is_some_and(|d| d.booking.timed);
        if let Some(b) = decl
            .as_ref()
            .map(|d| d.booking)
            .filter(|b| b.predicted.is_some() || b.explore_ns > 0)
        {
            // Unbooked (and an exploration settled) at completion, whether it runs or fails.
            let rare = self.rare_of(&mut st);
            rare.predicted = b.predicted;
            rare.explore_ns = b.explore_ns;
        }
        if failure.is_none() && runs {
            self.flags.fetch_or(ran, Ordering::AcqRel);
            if timing {
                let rare = self.rare_of(&mut st);
                rare.data_bytes = decl
                    .as_ref()
                    .map_or(0, |d| d.accesses.iter().map(|(r, _)| r.bytes as u64).sum());
                rare.started = Some((
                    crate::time::Instant::now(),
                    crate::sched::cpu::worker_index(),
                ));
            }
        }
        (Work { cpu, gpu, decl }, failure)
    }

    /// Whether the node still waits for a dependency (beyond its spawn guard).
    pub(crate) fn waits(&self) -> bool {
        self.remaining.load(Ordering::Acquire) > 1
    }

    pub(crate) fn is_done(&self) -> bool {
        self.flags.load(Ordering::Acquire) & DONE != 0
    }

    /// The error of a failed task, read with its lock held (`_st`, its guard).
    fn failure(&self, _st: &NodeState) -> TaskError {
        // SAFETY: only called once FAILED (so DONE) was seen, with the lock held: after
        // `DONE`, the slot is used under the lock only ("The slot").
        match unsafe { &*self.slot.get() } {
            Slot::Failed(e) => (**e).clone(),
            // FAILED is set after the slot is written.
            _ => TaskError::ShutDown {
                task: String::new(),
            },
        }
    }

    /// The result, once finished: a success without a lock.
    pub(crate) fn result(&self) -> Option<Result<(), TaskError>> {
        let f = self.flags.load(Ordering::Acquire);
        if f & DONE == 0 {
            None
        } else if f & FAILED == 0 {
            Some(Ok(()))
        } else {
            Some(Err(self.failure(&self.st.lock())))
        }
    }

    pub(crate) fn ran_on(&self) -> Option<DeviceId> {
        decode_device(self.flags.load(Ordering::Acquire) >> RAN_SHIFT)
    }

    /// Marks the task to complete with `err` instead of running (first error wins).
    pub(crate) fn fail_with(&self, err: TaskError) {
        let mut st = self.st.lock();
        self.rare_of(&mut st).fail_with.get_or_insert(err);
        self.flags.fetch_or(FAIL_PENDING, Ordering::AcqRel);
    }

    fn dependency_failed(&self, dep_err: &TaskError, dep_name: &str) -> TaskError {
        let (root, cause) = match dep_err {
            TaskError::DependencyFailed { root, cause, .. } => (root.clone(), cause.clone()),
            // A task of another process: the root is that task, not the local event that
            // brought its failure here.
            remote @ TaskError::Remote { task, .. } => (task.clone(), Arc::new(remote.clone())),
            other => (dep_name.to_string(), Arc::new(other.clone())),
        };
        TaskError::DependencyFailed {
            task: self.name().to_string(),
            root,
            cause,
        }
    }

    /// Makes `self` wait for `dep`, and fail naming it if it fails. Call before the spawn
    /// guard is dropped.
    pub(crate) fn add_dependency(self: &Arc<Self>, dep: &Arc<Node>) {
        self.add_edge(dep, true);
    }

    /// Makes `self` wait for `dep` without taking on its failure: for a task that overwrites
    /// everything `dep` left in an array (`Access::Write`), which therefore reads nothing of
    /// what `dep` did or failed to do.
    pub(crate) fn add_order_dependency(self: &Arc<Self>, dep: &Arc<Node>) {
        self.add_edge(dep, false);
    }

    fn add_edge(self: &Arc<Self>, dep: &Arc<Node>, propagate: bool) {
        if Arc::ptr_eq(self, dep) {
            self.fail_with(TaskError::SelfDependency {
                task: self.name().to_string(),
            });
            return;
        }
        // A dependency that succeeded constrains nothing (and needs no lock).
        if dep.flags.load(Ordering::Acquire) & (DONE | FAILED) == DONE {
            return;
        }
        // The first dependent registers without the lock: it claims `first` with one RMW
        // that also tells whether `dep` finished, was released early, or has a first
        // dependent already ("The first dependent").
        let f = dep.flags.fetch_or(FIRST_CLAIMED, Ordering::AcqRel);
        if f & (DONE | RELEASED | FIRST_CLAIMED) == 0 {
            // Counted before it is published: whoever takes it releases it.
            self.remaining.fetch_add(1, Ordering::AcqRel);
            let raw = Arc::into_raw(self.clone()).cast_mut();
            let tagged = if propagate {
                raw.map_addr(|a| a | PROPAGATES)
            } else {
                raw
            };
            dep.first.store(tagged, Ordering::Release);
            return;
        }
        enum Seen {
            Pending,
            Failed(TaskError),
            Released(Fence),
            Ok,
        }
        let seen = {
            let mut ds = dep.st.lock();
            // Announced and checked in one step: either `dep`'s completion sees LINKED and
            // takes the lock (after this), or this sees DONE.
            let f = dep.flags.fetch_or(LINKED, Ordering::AcqRel);
            if f & FAILED != 0 {
                Seen::Failed(dep.failure(&ds))
            } else if f & DONE != 0 {
                Seen::Ok
            } else if let Some(fence) = ds.rare.as_ref().and_then(|r| r.released) {
                Seen::Released(fence)
            } else {
                self.remaining.fetch_add(1, Ordering::AcqRel);
                dep.rare_of(&mut ds)
                    .dependents
                    .push((self.clone(), propagate));
                Seen::Pending
            }
        };
        match seen {
            Seen::Failed(e) if propagate => {
                let err = self.dependency_failed(&e, dep.name());
                self.fail_with(err);
            }
            Seen::Released(f) => self.push_fence(f),
            Seen::Failed(_) | Seen::Pending | Seen::Ok => {}
        }
    }

    fn push_fence(&self, f: Fence) {
        let mut st = self.st.lock();
        self.rare_of(&mut st).fences.push(f);
        self.flags.fetch_or(HAS_FENCES, Ordering::AcqRel);
    }

    /// Drops one count of `remaining`; schedules the node when it reaches zero. `via` is a
    /// runtime the caller holds a reference to (the spawner's, a finishing dependency's):
    /// when it is this node's, the node's own reference moves into the queue, with no
    /// clone to drop after the push — a drop that would write the node's count while
    /// another worker may already be running it.
    pub(crate) fn release_one(self: Arc<Self>, via: Option<&Arc<Core>>) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ready(via);
        }
    }

    /// Drops the spawn guard (see "Life of a node"), from the spawning thread, which holds
    /// `core`. Only that thread adds to `remaining`, before this; each dependency then
    /// subtracts once. So if `remaining` is 1, every dependency already released the node
    /// and no other thread will write the count again: the node is ready without an RMW.
    pub(crate) fn release_guard(self: Arc<Self>, core: &Arc<Core>) {
        if self.remaining.load(Ordering::Acquire) == 1 {
            self.remaining.store(0, Ordering::Relaxed);
            self.ready(Some(core));
        } else {
            self.release_one(Some(core));
        }
    }

    /// The node's count reached zero: it goes to its runtime's scheduler.
    fn ready(self: Arc<Self>, via: Option<&Arc<Core>>) {
        match (self.core(), via) {
            (Some(mine), Some(via)) if Arc::ptr_eq(mine, via) => via.schedule(self),
            (Some(mine), _) => mine.clone().schedule(self),
            (None, _) => tracing::error!(task = %self.name(), "ready task without a runtime"),
        }
    }

    fn dep_done(
        self: Arc<Self>,
        failure: Option<(&TaskError, &str)>,
        fence: Option<Fence>,
        via: Option<&Arc<Core>>,
    ) {
        if let Some((e, dep_name)) = failure {
            let err = self.dependency_failed(e, dep_name);
            self.fail_with(err);
        }
        if let Some(f) = fence {
            self.push_fence(f);
        }
        self.release_one(via);
    }

    /// Releases dependents before completion: the task is encoded in GPU batch `fence`. They
    /// are remembered, so that a failure of the batch reaches them (see `complete`).
    fn release_early(&self, fence: Fence) {
        let dependents = {
            let mut st = self.st.lock();
            let rare = self.rare_of(&mut st);
            rare.released = Some(fence);
            let mut out = std::mem::take(&mut rare.dependents);
            // From here a dependent that comes finds RELEASED (and, under this lock, the
            // fence); one that claimed `first` before is taken here.
            let f = self.flags.fetch_or(RELEASED, Ordering::AcqRel);
            if f & (FIRST_CLAIMED | RELEASED) == FIRST_CLAIMED {
                out.insert(0, self.take_first());
            }
            out
        };
        for (d, _) in &dependents {
            d.clone().dep_done(None, Some(fence), self.core());
        }
        let mut st = self.st.lock();
        self.rare_of(&mut st).released_to = dependents;
    }

    /// Finishes the task without a value of its own (a barrier keeps the `()` it was given).
    pub(crate) fn complete(&self, result: Result<(), TaskError>) {
        self.finish(result.map(|()| None));
    }

    /// Finishes the task: records the outcome (and the body's value), wakes waiters,
    /// releases dependents.
    fn finish(&self, outcome: Result<Option<Value>, TaskError>) {
        let failure = outcome.as_ref().err().cloned();
        let name = self.name();
        if let Some(e) = &failure {
            tracing::debug!(task = %name, error = %e, "task failed");
        }
        // SAFETY: `finish` runs once, on the thread that completes the task, before DONE
        // ("The slot").
        let slot = unsafe { &mut *self.slot.get() };
        let done = match outcome {
            Ok(Some(v)) => {
                *slot = Slot::Value(v);
                DONE
            }
            Ok(None) => DONE,
            Err(e) => {
                *slot = Slot::Failed(Box::new(e));
                DONE | FAILED
            }
        };
        let flags = self.flags.fetch_or(done, Ordering::AcqRel);
        // Nobody registered under the lock before DONE (and nobody will after) and nothing
        // rare was recorded: `st` holds nothing to take ("Completion without a lock").
        let rare = if flags & (LINKED | RARE) == 0 {
            None
        } else {
            self.st.lock().rare.take()
        };
        // A dependent that claimed `first` before DONE (and not before an early release,
        // which took it): taken after the lock above, which a cycle search reading it holds
        // ("The first dependent").
        let first =
            (flags & (FIRST_CLAIMED | RELEASED) == FIRST_CLAIMED).then(|| self.take_first());
        let mut rare = rare.map(|r| *r);
        if let (Some(r), Some(core)) = (rare.as_mut(), self.core()) {
            let started = r.started.take();
            let ran_on = self.ran_on();
            if r.predicted.is_some() || r.explore_ns > 0 || started.is_some() {
                let ok = failure.is_none();
                core.sched.task_ran(
                    || Cow::Borrowed(name),
                    started.map(|(s, _)| (r.device_time.unwrap_or_else(|| s.elapsed()), ok)),
                    ran_on,
                    r.data_bytes,
                    (r.predicted.take(), std::mem::take(&mut r.explore_ns)),
                );
            }
            drop(std::mem::take(&mut r.pins));
            if let (Some((start, worker)), Some(device)) = (started, ran_on) {
                core.trace_task(|| super::trace::TaskEvent {
                    name: name.to_string(),
                    device,
                    worker,
                    start,
                    end: crate::time::Instant::now(),
                    ok: failure.is_none(),
                });
            }
        }
        if let Some(r) = rare.as_mut() {
            for w in r.wakers.drain(..) {
                w.wake();
            }
            if let Some(e) = &failure {
                // Released early, they wait for this task's fence (elsewhere) or are queued
                // behind it (same GPU): neither has run, and neither may run on what this task
                // did not produce. (On success the list is simply dropped.)
                for (d, propagate) in r.released_to.drain(..) {
                    if propagate {
                        let err = d.dependency_failed(e, name);
                        d.fail_with(err);
                    }
                }
            }
        }
        let more = rare.map(|r| r.dependents).unwrap_or_default();
        for (d, propagate) in first.into_iter().chain(more) {
            let failure = failure.as_ref().filter(|_| propagate);
            d.dep_done(failure.map(|e| (e, name)), None, self.core());
        }
        if let Some(core) = self.core() {
            core.task_finished();
        }
    }

    /// Registers `w` to be woken at completion (at once if already complete).
    pub(crate) fn register_waker(&self, w: &Waker) -> bool {
        if self.is_done() {
            return true;
        }
        let mut st = self.st.lock();
        // Announced and checked in one step: either the completion sees LINKED and takes
        // the wakers under this lock, or this sees DONE. No wake-up is lost.
        if self.flags.fetch_or(LINKED, Ordering::AcqRel) & DONE != 0 {
            return true;
        }
        let wakers = &mut self.rare_of(&mut st).wakers;
        if !wakers.iter().any(|x| x.will_wake(w)) {
            wakers.push(w.clone());
        }
        false
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks the calling thread until the task is complete (woken by it, not polling),
    /// calling `check` before each park of at most `period`; returns `check`'s first error.
    pub(crate) fn wait_done_checking<E>(
        &self,
        period: std::time::Duration,
        mut check: impl FnMut() -> Result<(), E>,
    ) -> Result<(), E> {
        if self.is_done() {
            return Ok(());
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        if self.register_waker(&waker) {
            return Ok(());
        }
        while !self.is_done() {
            check()?;
            std::thread::park_timeout(period);
        }
        Ok(())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Blocks until the task is complete. On a CPU worker, runs other tasks meanwhile.
    pub(crate) fn wait_done(self: &Arc<Self>) -> Result<(), TaskError> {
        if let Some(r) = self.result() {
            return r;
        }
        if on_driver_thread() {
            return Err(TaskError::WaitInGpuBody {
                task: self.name().to_string(),
            });
        }
        let helped = help_while_waiting(&|| self.is_done(), &|w| {
            if self.register_waker(&w) {
                w.wake();
            }
        });
        if !helped && !spin_until(SPIN_WAIT, || self.is_done()) {
            let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
            if !self.register_waker(&waker) {
                while !self.is_done() {
                    std::thread::park();
                }
            }
        }
        self.result().unwrap_or_else(|| {
            Err(TaskError::ShutDown {
                task: self.name().to_string(),
            })
        })
    }

    /// Turns a body's outcome into the task's outcome.
    fn body_result(
        &self,
        r: std::thread::Result<Result<Value, BodyError>>,
    ) -> Result<Option<Value>, TaskError> {
        match r {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(e)) => Err(TaskError::Failed {
                task: self.name().to_string(),
                error: Arc::from(e),
            }),
            Err(p) => Err(TaskError::Panicked {
                task: self.name().to_string(),
                message: panic_message(&*p),
            }),
        }
    }

    /// Takes the stored value (None if already taken, or the task produced none).
    pub(crate) fn take_value(&self) -> Option<Value> {
        if !self.is_done() {
            return None;
        }
        let _st = self.st.lock();
        // SAFETY: the task is done and the lock is held ("The slot").
        let slot = unsafe { &mut *self.slot.get() };
        match std::mem::take(slot) {
            Slot::Value(v) => Some(v),
            other => {
                *slot = other;
                None
            }
        }
    }
}

impl CpuJob for Node {
    fn priority(&self) -> i32 {
        // Written before the node can be ready; readiness is published by `remaining`'s
        // AcqRel decrement, which orders this load after the store.
        self.priority.load(Ordering::Relaxed)
    }

    fn move_to_gpu(&self, gpu: usize) -> bool {
        self.steal_to(DeviceId::Cpu, DeviceId::Gpu(gpu), 0)
    }

    fn into_gpu_job(self: Arc<Self>) -> GpuJobRef {
        self
    }

    fn retire(self: Arc<Self>) {
        super::recycle::retire(self);
    }

    #[cfg(target_arch = "wasm32")]
    fn host_fetch(&self) -> Option<crate::sched::job::HostFetch> {
        self.fetch_inputs(true)
    }

    fn run_on_cpu(&self) {
        let (work, failure) = self.begin(DeviceId::Cpu);
        if let Some(err) = failure {
            return self.complete(Err(err));
        }
        // A task with no CPU body here (a barrier) completes as soon as it is ready.
        let (Some(body), Some(runtime)) = (work.cpu, self.runtime()) else {
            return self.complete(Ok(()));
        };
        let accesses = work.decl.as_ref().map_or(&[][..], |d| &d.accesses[..]);
        let core = &runtime.core;
        let name = self.name();
        for (raw, access) in accesses {
            if let Err(error) = raw.prepare_host(*access, core.gpus(), core.counters()) {
                return self.complete(Err(TaskError::TaskData {
                    task: name.to_string(),
                    error,
                }));
            }
        }
        let partials: Vec<HostPartial> = accesses
            .iter()
            .filter_map(|(raw, a)| {
                a.reduction()
                    .map(|r| HostPartial::new(raw.id, raw.bytes, r))
            })
            .collect();
        let mut cx = CpuContext::new(name, accesses, runtime, &partials);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut cx)));
        if matches!(r, Ok(Ok(_))) {
            cx.commit();
        } else {
            drop(cx);
        }
        let result = self.body_result(r);
        if result.is_ok() && !partials.is_empty() {
            let mut partials = partials;
            for (raw, a) in accesses {
                if let Some(r) = a.reduction() {
                    if let Some(i) = partials.iter().position(|p| p.array_id == raw.id) {
                        raw.deposit_host_partial(r, partials.swap_remove(i).into_bytes());
                    }
                }
            }
        }
        // The declaration is done with (its arrays were prepared and committed): back to
        // the spares before the dependents are released, so a spawn they trigger reuses it.
        if let Some(decl) = work.decl {
            super::recycle::retire_decl(&core.decls, decl);
        }
        quiet_next_push(|| self.finish(result));
    }
}

impl Node {
    /// In the browser: fetches the GPU copies this task's preparation reads on the host.
    #[cfg(target_arch = "wasm32")]
    fn fetch_inputs(&self, on_host: bool) -> Option<crate::sched::job::HostFetch> {
        let core = self.core()?.clone();
        let arrays: Vec<(Arc<RawArray>, Access)> = {
            let st = self.st.lock();
            st.decl.as_ref()?.accesses.iter().cloned().collect()
        };
        if arrays.is_empty() || core.gpus().is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            crate::data::transfer::fetch_for_host(&arrays, core.gpus(), on_host).await
        }))
    }

    /// Heterogeneous stealing: asks the runtime whether this queued task should move from
    /// `from` to the idle device `to`, and retargets it if so. A task that will fail anyway,
    /// that has one possible device, or that carries a fence not yet passed (a same-GPU
    /// predecessor still running), stays.
    fn steal_to(&self, from: DeviceId, to: DeviceId, ahead_ns: u64) -> bool {
        if decode_device(self.flags.load(Ordering::Acquire) >> ONLY_SHIFT).is_some() {
            return false;
        }
        let Some(core) = self.core() else {
            return false;
        };
        let name = self.name();
        let mut st = self.st.lock();
        if let Some(r) = &st.rare {
            if r.fail_with.is_some()
                || !r
                    .fences
                    .iter()
                    .all(|f| core.sched.drivers[f.gpu].fence_passed(f.seq))
            {
                return false;
            }
        }
        let bodies = self.bodies();
        match st.decl.as_deref_mut() {
            Some(d) => {
                let (shape, booking) = d.shape(name, bodies);
                core.sched
                    .steal_pays(&shape, booking, core.data_view(), (from, to), ahead_ns)
            }
            None => false,
        }
    }
}

/// What a GPU task's encoding knows before its error scope is resolved (see
/// [`crate::sched::job::Encoding`]).
struct EncodeTail {
    node: Arc<Node>,
    body: std::thread::Result<Result<Value, BodyError>>,
    cx_error: Option<TaskError>,
    commands: Option<wgpu::CommandBuffer>,
    pins: Vec<GpuPin>,
    gpu_partials: Vec<(Arc<RawArray>, Reduction, GpuPartial)>,
    /// The fence to release dependents early on, when they may be.
    early: Option<Fence>,
}

impl ScopedEncode for EncodeTail {
    fn finish(self: Box<Self>, scope_error: Option<wgpu::Error>) -> Encoded {
        let EncodeTail {
            node,
            body,
            cx_error,
            commands,
            pins,
            gpu_partials,
            early,
        } = *self;
        let name = node.name();
        let outcome = node.body_result(body);
        let failed = match (&outcome, cx_error, scope_error) {
            (Err(_), _, _) => None,
            (Ok(_), Some(e), _) => Some(e),
            (Ok(_), None, Some(e)) => Some(TaskError::Wgpu {
                task: name.to_string(),
                source: Arc::new(e),
            }),
            (Ok(_), None, None) => None,
        };
        let value = match (outcome, failed) {
            (Err(e), _) | (Ok(_), Some(e)) => {
                node.complete(Err(e));
                return Encoded::Finished;
            }
            (Ok(v), None) => v,
        };
        if let Some(v) = value {
            // Delivered once the batch finishes (`gpu_done` keeps it).
            // SAFETY: the encoding driver is the task's runner; not done yet ("The slot").
            unsafe { *node.slot.get() = Slot::Value(v) };
        }
        {
            let mut st = node.st.lock();
            let rare = node.rare_of(&mut st);
            rare.pins = pins;
            rare.gpu_partials = gpu_partials;
        }
        if let Some(fence) = early {
            node.release_early(fence);
        }
        match commands {
            Some(c) => Encoded::Commands(c),
            None => Encoded::Recorded,
        }
    }
}

impl GpuJob for Node {
    fn predicted_ns(&self) -> u64 {
        self.st
            .lock()
            .decl
            .as_ref()
            .and_then(|d| d.booking.predicted)
            .map_or(0, |(_, ns)| ns)
    }

    fn move_to_cpu(&self, gpu: usize, ahead_ns: u64) -> bool {
        self.steal_to(DeviceId::Gpu(gpu), DeviceId::Cpu, ahead_ns)
    }

    fn into_cpu_job(self: Arc<Self>) -> Option<CpuJobRef> {
        Some(self)
    }

    fn encode(
        self: Arc<Self>,
        driver: &GpuDriver,
        seq: u64,
        may_overcommit: bool,
        transfers: &mut BatchTransfers,
        batch: &mut BatchEncoder,
    ) -> Encoding {
        let (mut work, failure) = self.begin(DeviceId::Gpu(driver.index));
        if let Some(err) = failure {
            self.complete(Err(err));
            return Encoding::Done(Encoded::Finished);
        }
        let Some(core) = self.core().cloned() else {
            self.complete(Ok(()));
            return Encoding::Done(Encoded::Finished);
        };
        if work.gpu.is_none() {
            self.complete(Ok(()));
            return Encoding::Done(Encoded::Finished);
        }
        let name = self.name();
        let gpu = driver.index;
        let fail = |error: DataError| TaskError::TaskData {
            task: name.to_string(),
            error,
        };
        let accesses = work.decl.as_ref().map_or(&[][..], |d| &d.accesses[..]);
        let working_set: u64 = accesses.iter().map(|(r, _)| padded(r.bytes)).sum();
        let budget = core.residency.budget(gpu);
        if working_set > budget {
            let names: Vec<&str> = accesses.iter().map(|(r, _)| r.label.as_str()).collect();
            self.complete(Err(fail(DataError::OverBudget {
                array: names.join(" + "),
                bytes: working_set,
                gpu,
                budget,
            })));
            return Encoding::Done(Encoded::Finished);
        }
        let device = &driver.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut up = UploadCtx {
            path: core.upload,
            batch: Some(transfers),
        };
        let mem = Memory {
            gpus: core.gpus(),
            counters: core.counters(),
            residency: &core.residency,
        };
        let mut buffers = Vec::with_capacity(accesses.len());
        let mut pins = Vec::with_capacity(accesses.len());
        let mut gpu_partials = Vec::new();
        for (raw, access) in accesses {
            match raw.prepare_gpu(*access, gpu, &mem, may_overcommit, &mut up) {
                Ok(p) => {
                    if let (Some(r), Some(partial)) = (access.reduction(), p.partial) {
                        gpu_partials.push((raw.clone(), r, partial));
                    }
                    buffers.push((raw.id, *access, p.buffer));
                    pins.extend(p.pin);
                }
                Err(DataError::GpuMemoryBusy { .. }) => {
                    drop(pins);
                    self.restore(work);
                    return Encoding::Done(Encoded::Retry);
                }
                Err(error) => {
                    self.complete(Err(fail(error)));
                    return Encoding::Done(Encoded::Finished);
                }
            }
        }
        let Some(body) = work.gpu.take() else {
            self.complete(Ok(()));
            return Encoding::Done(Encoded::Finished);
        };
        let (r, cx_error, own) = {
            let mut cx = GpuContext::new(name, &driver.gpu, gpu, batch, &buffers);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&mut cx)));
            (r, cx.take_error(), cx.take_own())
        };
        // A body's own command buffer is finished inside its scope: wgpu's errors there are
        // this task's.
        let commands = own.map(|e| e.finish());
        // Dependents are released at encode time only when nothing they do can need this
        // task's results on the host: a reducer's partial is folded there, and a member of a
        // sliced family may be flushed there for an overlapping relative.
        let early = gpu_partials.is_empty() && !accesses.iter().any(|(r, _)| r.family.has_slices());
        Encoding::Check(
            scope,
            Box::new(EncodeTail {
                node: self.clone(),
                body: r,
                cx_error,
                commands,
                pins,
                gpu_partials,
                early: early.then_some(Fence { gpu, seq }),
            }),
        )
    }

    #[cfg(target_arch = "wasm32")]
    fn host_fetch(&self) -> Option<crate::sched::job::HostFetch> {
        self.fetch_inputs(false)
    }

    fn gpu_done(
        self: Arc<Self>,
        _driver: &GpuDriver,
        result: Result<std::time::Duration, BatchFailure>,
    ) {
        let partials = {
            let mut st = self.st.lock();
            let rare = self.rare_of(&mut st);
            if let (Some(_), Ok(share)) = (&rare.started, &result) {
                rare.device_time = Some(*share);
            }
            std::mem::take(&mut rare.gpu_partials)
        };
        let name = self.name();
        let mut result = result.map(drop).map_err(|f| TaskError::GpuBatchFailed {
            task: name.to_string(),
            gpu: f.gpu,
            batch: f.seq,
            tasks: f.jobs,
            cause: f.cause,
        });
        if result.is_ok() {
            if let Some(core) = self.core() {
                let mem = Memory {
                    gpus: core.gpus(),
                    counters: core.counters(),
                    residency: &core.residency,
                };
                for (raw, r, partial) in partials {
                    if let Err(error) = raw.deposit_gpu_partial(r, partial, &mem) {
                        result = Err(TaskError::TaskData {
                            task: name.to_string(),
                            error,
                        });
                    }
                }
            }
        }
        self.complete(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_codes_round_trip() {
        for d in [
            None,
            Some(DeviceId::Cpu),
            Some(DeviceId::Gpu(0)),
            Some(DeviceId::Gpu(1021)),
        ] {
            assert_eq!(decode_device(encode_device(d)), d);
        }
        // Beyond the field: read as "none", so placement decides instead.
        assert_eq!(
            decode_device(encode_device(Some(DeviceId::Gpu(1022)))),
            None
        );
        // The two fields do not overlap each other or the flag bits.
        let bits = [
            DONE,
            FAILED,
            FIRST_CLAIMED,
            RELEASED,
            HAS_FENCES,
            LINKED,
            RARE,
            HAS_DECL,
            FAIL_PENDING,
            HAS_CPU,
            HAS_GPU,
        ];
        let fields = (DEVICE_MASK << RAN_SHIFT) | (DEVICE_MASK << ONLY_SHIFT);
        assert_eq!((DEVICE_MASK << RAN_SHIFT) & (DEVICE_MASK << ONLY_SHIFT), 0);
        let mut seen = fields;
        for b in bits {
            assert_eq!(b.count_ones(), 1);
            assert_eq!(seen & b, 0, "flag {b:#x} overlaps");
            seen |= b;
        }
        let all = (encode_device(Some(DeviceId::Gpu(7))) << RAN_SHIFT)
            | (encode_device(Some(DeviceId::Cpu)) << ONLY_SHIFT)
            | bits.iter().fold(0, |a, b| a | b);
        assert_eq!(decode_device(all >> RAN_SHIFT), Some(DeviceId::Gpu(7)));
        assert_eq!(decode_device(all >> ONLY_SHIFT), Some(DeviceId::Cpu));
    }

    #[test]
    fn access_lists_keep_order_inline_then_on_the_heap() {
        let raw = |n: usize| RawArray::new(None, n, 4, None, 1, crate::data::array::OwnerId(0));
        let mut l = AccessList::default();
        assert!(l.is_empty());
        l.push((raw(1), Access::Read));
        assert!(matches!(l, OneOrMany::One(_)));
        l.push((raw(2), Access::Write));
        l.push((raw(3), Access::ReadWrite));
        let lens: Vec<usize> = l.iter().map(|(r, _)| r.len).collect();
        assert_eq!(lens, vec![1, 2, 3]);
        l.as_mut_slice()[0].1 = Access::ReadWrite;
        assert_eq!(l[0].1, Access::ReadWrite);
    }

    #[test]
    fn a_finished_node_reports_without_a_runtime() {
        let ok = Node::finished("ok".into(), Ok(()));
        assert!(ok.is_done());
        assert!(matches!(ok.result(), Some(Ok(()))));
        let err = Node::finished(
            format!("bad {}", 1).into(),
            Err(TaskError::ShutDown {
                task: "bad 1".into(),
            }),
        );
        assert_eq!(err.name(), "bad 1");
        assert!(matches!(
            err.result(),
            Some(Err(TaskError::ShutDown { .. }))
        ));
        assert_eq!(err.ran_on(), None);
    }
}
