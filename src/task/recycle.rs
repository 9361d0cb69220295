//! Reusing the allocations of finished tasks: their nodes and declaration boxes.
//!
//! A task is usually spawned on one thread and run on another, and the node's last
//! reference goes with the job: the runner frees what the spawner allocated. glibc serves
//! that round trip through the arena's shared bins (a lock or an RMW on a line both threads
//! write, at every task, and consolidation when a large block is freed), which costs the
//! spawner more than the rest of its spawn. So a CPU worker hands the nodes it ran back
//! instead, in batches, and spawns take them from a batch.
//!
//! ## How it works
//! 1. A worker retires the references of the jobs it ran in batches (`sched/cpu.rs`,
//!    `CpuJob::retire`). A node whose reference is the last one (no handle, no dependent
//!    keeps it) is blanked in place — its value, declaration and runtime handle are dropped
//!    there, as a drop would — and staged in the worker's thread-local list ([`retire`]).
//! 2. A full list ([`BATCH`] nodes) goes to its runtime's shared [`NodePool`] with one lock.
//!    The pool keeps at most [`MAX_BATCHES`]; a batch beyond that is freed.
//! 3. A spawn takes a node from its thread's own list ([`spare`]); an empty list takes a
//!    whole batch from the pool (one lock per [`BATCH`] spawns); an empty pool allocates.
//!
//! Blank nodes hold no runtime, value or body: a batch or a thread's list holds only memory
//! (at most `BATCH` nodes per thread and `BATCH * MAX_BATCHES` per runtime), freed with the
//! thread or the runtime. A node is reused only through `Arc::get_mut`, which proves that
//! nothing else refers to it.
//!
//! A task's declaration box (`Decl`: its arrays, placement and booking) takes the same way
//! back, through lists of its own: its runner empties it once the body's accesses are
//! committed ([`retire_decl`]: the arrays are released there) and stages it; a spawn that
//! declares arrays takes one ([`decl_box`]). Before, the boxes went through one shared
//! bounded queue, an RMW on lines both threads write at every task, and a box that found it
//! full or empty went through the allocator.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

use parking_lot::Mutex;

use super::node::{Decl, Node};

/// Allocations moved between a thread and a runtime's pool at once.
pub(crate) const BATCH: usize = 64;
/// Batches a runtime keeps of each kind (1024 nodes of 128 bytes: 128 KiB).
pub(crate) const MAX_BATCHES: usize = 16;

/// A runtime's spare allocations of one kind, in batches (see the module's doc).
pub(crate) struct Batches<T> {
    batches: Mutex<Vec<Vec<T>>>,
}

impl<T> Default for Batches<T> {
    fn default() -> Self {
        Batches {
            batches: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Batches<T> {
    fn put(&self, batch: Vec<T>) {
        let mut batches = self.batches.lock();
        if batches.len() < MAX_BATCHES {
            batches.push(batch);
        }
    }

    fn take(&self) -> Option<Vec<T>> {
        self.batches.lock().pop()
    }

    #[cfg(test)]
    fn spare(&self) -> usize {
        self.batches.lock().iter().map(Vec::len).sum()
    }
}

/// A runtime's blank nodes.
pub(crate) type NodePool = Batches<Arc<Node>>;
/// A runtime's emptied declaration boxes.
pub(crate) type DeclPool = Batches<Box<Decl>>;

type Local<T> = LocalKey<RefCell<Vec<T>>>;

thread_local! {
    /// Nodes this thread retired, not yet given to a pool.
    static RETIRED: RefCell<Vec<Arc<Node>>> = const { RefCell::new(Vec::new()) };
    /// Blank nodes this thread took from a pool, for its next spawns.
    static SPARE: RefCell<Vec<Arc<Node>>> = const { RefCell::new(Vec::new()) };
    /// Declaration boxes this thread emptied, not yet given to a pool. (The boxes are what
    /// is kept: the allocations themselves are reused, hence `Vec<Box<_>>`.)
    #[allow(clippy::vec_box)]
    static DECLS_RETIRED: RefCell<Vec<Box<Decl>>> = const { RefCell::new(Vec::new()) };
    /// Empty declaration boxes this thread took from a pool, for its next spawns.
    #[allow(clippy::vec_box)]
    static DECLS_SPARE: RefCell<Vec<Box<Decl>>> = const { RefCell::new(Vec::new()) };
}

/// One of this thread's spares in `local`, or of a batch taken from `pool`; `None` when both
/// are empty (or the thread is ending).
fn take_spare<T: 'static>(local: &'static Local<T>, pool: &Batches<T>) -> Option<T> {
    local
        .try_with(|s| {
            let mut s = s.borrow_mut();
            if s.is_empty() {
                if let Some(batch) = pool.take() {
                    *s = batch;
                }
            }
            s.pop()
        })
        .ok()
        .flatten()
}

/// Stages `item` in this thread's `local` list; returns the list when it is a full batch
/// (for the caller to give to its pool). Dropped if the thread is ending.
fn stage<T: 'static>(local: &'static Local<T>, item: T) -> Option<Vec<T>> {
    local
        .try_with(|r| {
            let mut r = r.borrow_mut();
            r.push(item);
            (r.len() >= BATCH).then(|| std::mem::replace(&mut *r, Vec::with_capacity(BATCH)))
        })
        .ok()
        .flatten()
}

/// A blank node for a spawn: one of this thread's, or of a batch taken from `pool`; `None`
/// when both are empty (the spawn allocates). The caller fills it through `Arc::get_mut`.
pub(crate) fn spare(pool: &NodePool) -> Option<Arc<Node>> {
    take_spare(&SPARE, pool)
}

/// A box holding `decl` for a spawn: an emptied one of this thread's or of a batch taken
/// from `pool` (as [`spare`]), else a new one.
pub(crate) fn decl_box(pool: &DeclPool, decl: Decl) -> Box<Decl> {
    match take_spare(&DECLS_SPARE, pool) {
        Some(mut b) => {
            // SAFETY: a spare box holds `Decl::default()` ([`retire_decl`]), which owns
            // nothing (no arrays, the default placement, no booking): writing over it
            // without a drop leaks nothing and does not read what the thread that emptied
            // it wrote last.
            unsafe { std::ptr::write(&mut *b, decl) };
            b
        }
        None => Box::new(decl),
    }
}

/// Takes back a finished task's declaration: empties it here (its arrays are released now)
/// and keeps the box for a later spawn.
pub(crate) fn retire_decl(pool: &DeclPool, mut decl: Box<Decl>) {
    *decl = Decl::default();
    if let Some(batch) = stage(&DECLS_RETIRED, decl) {
        pool.put(batch);
    }
}

/// Takes back `node`, the reference a CPU worker ran it with: if it is the last one, the
/// node is blanked and kept for a later spawn; otherwise the reference is simply dropped.
pub(crate) fn retire(mut node: Arc<Node>) {
    // A handle or a dependent still holds it (often the spawner, dropping its handle now):
    // a plain drop, without `get_mut`'s RMW on the line that thread writes.
    if Arc::strong_count(&node) != 1 {
        return;
    }
    let Some(n) = Arc::get_mut(&mut node) else {
        return;
    };
    // Blanked here, before it is staged: what it held (a value nobody took, its runtime)
    // is dropped now, as it would be by a drop. That may run a user's `Drop`.
    let Some(core) = n.blank() else {
        return;
    };
    if let Some(batch) = stage(&RETIRED, node) {
        core.core.nodes.put(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;

    fn one_worker() -> Runtime {
        Runtime::builder()
            .cpu_workers(1)
            .no_gpu()
            .build()
            .expect("runtime")
    }

    /// After `4 * BATCH` finished tasks, `spare` (of `what`) came back in whole batches.
    fn assert_whole_batches(spare: usize, what: &str) {
        assert!(
            spare >= BATCH,
            "{spare} spare {what} after {} tasks",
            4 * BATCH
        );
        assert_eq!(spare % BATCH, 0, "whole batches only");
    }

    #[test]
    fn finished_nodes_go_back_to_the_pool_in_batches_and_serve_spawns() {
        let rt = one_worker();
        let core = rt.handle().core.clone();
        // Handles dropped at once: the worker holds the last reference of each node.
        for _ in 0..4 * BATCH {
            drop(rt.task("t").cpu(|_| 1u64).spawn());
        }
        rt.wait_idle();
        assert_whole_batches(core.nodes.spare(), "nodes");
        // Reused nodes carry nothing of their last task: values are the new task's.
        let hs: Vec<_> = (0..2 * BATCH as u64)
            .map(|i| rt.task("u").cpu(move |_| i * 3).spawn())
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.wait().expect("task"), i as u64 * 3);
        }
    }

    #[test]
    fn a_node_still_held_is_not_reused() {
        let rt = one_worker();
        let kept: Vec<_> = (0..2 * BATCH)
            .map(|i| rt.task("kept").cpu(move |_| i).spawn())
            .collect();
        rt.wait_idle();
        for _ in 0..4 * BATCH {
            drop(rt.task("t").cpu(|_| 0usize).spawn());
        }
        rt.wait_idle();
        // The held handles still see their own values.
        for (i, h) in kept.into_iter().enumerate() {
            assert_eq!(h.wait().expect("task"), i);
        }
    }

    #[test]
    fn declarations_go_back_in_batches_and_carry_only_the_new_tasks_arrays() {
        let rt = one_worker();
        let core = rt.handle().core.clone();
        // A chain through one array: every task declares it, and its runner retires the box.
        let a = rt.array_from(vec![0u64]);
        for _ in 0..4 * BATCH {
            let ac = a.clone();
            drop(
                rt.task("inc")
                    .read_write(&a)
                    .cpu(move |cx| cx.write(&ac)[0] += 1)
                    .spawn(),
            );
        }
        rt.wait_idle();
        assert_eq!(a.to_vec().expect("read"), vec![4 * BATCH as u64]);
        assert_whole_batches(core.decls.spare(), "declarations");
        // Reused boxes hold the new tasks' arrays and modes, nothing of the old ones: each
        // task writes its own array, and a reader of all of them sees every write.
        let arrays: Vec<_> = (0..2 * BATCH).map(|_| rt.array::<u64>(1)).collect();
        for (i, x) in arrays.iter().enumerate() {
            let xc = x.clone();
            drop(
                rt.task("own")
                    .writes(x)
                    .cpu(move |cx| cx.write(&xc)[0] = i as u64 + 1)
                    .spawn(),
            );
        }
        let mut reader = rt.task("sum");
        for x in &arrays {
            reader = reader.reads(x);
        }
        let xs = arrays.clone();
        let sum = reader
            .cpu(move |cx| xs.iter().map(|x| cx.read(x)[0]).sum::<u64>())
            .spawn()
            .wait()
            .expect("sum");
        let n = 2 * BATCH as u64;
        assert_eq!(sum, n * (n + 1) / 2);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_batches() {
        let pool = NodePool::default();
        for _ in 0..MAX_BATCHES + 5 {
            pool.put(vec![Node::finished("spare".into(), Ok(()))]);
        }
        assert_eq!(pool.spare(), MAX_BATCHES);
    }
}
