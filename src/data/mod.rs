//! Data layer: managed arrays, their coherence states, and the copies between memory spaces.
//!
//! Job: give every [`Array`] one copy slot per memory space (host, each GPU), keep the MESI
//! states of those copies ([`coherence`], a pure state machine), and perform the copies a
//! task needs before it runs (`transfer`, the only code that moves bytes between host and
//! device). Around that core, one small type per concern:
//! - `family`: sub-arrays (slices) share their root's host memory; a range-aware tracker
//!   orders accesses that overlap, and an epoch protocol keeps members coherent;
//! - [`reduce`]: reductions into private partials, folded before the next access;
//! - `residency`: per-GPU memory budgets, eviction by an `EvictionPolicy` (LRU, cheapest
//!   copies first) with write-back, pinning;
//! - `transfer`: the mover — the upload paths (mapped, staging ring, `write_buffer`) and
//!   downloads; every copy of an array between host and device is counted there.
//!
//! Invariants:
//! - at least one copy of an array is valid; at most one is Modified/Exclusive, and then all
//!   others are Invalid;
//! - a task that reads an array on space `d` finds `d` valid (and in line with every
//!   overlapping slice) when its body starts; a task that writes it leaves `d` Modified and
//!   every other copy Invalid;
//! - every copy is counted per link in [`TransferCounters`], so tests can assert exact moves;
//! - the host allocation of a family never moves, so CPU bodies can borrow it as a slice;
//! - each GPU holds at most its budget of array copies and reduction partials, give or take
//!   copies pinned by running tasks; eviction never drops the only valid copy without writing
//!   it back, and a finished GPU partial is spilled to the host when its GPU is full
//!   (`residency`, `array.rs`);
//! - dropping an array handle never loses data: its family keeps the member's record while it
//!   holds the only valid copy of its range or pending partials (`family`).
//!
//! Which tasks may run when is the task layer's job: this layer only compares accesses by
//! their byte ranges and modes (`family::RangeTracker<T>`, generic over the task token; the
//! runtime's core keeps one per family) and answers which earlier ones conflict. Nothing here
//! points up: an array names the runtime that made it by an opaque `OwnerId`.

pub(crate) mod array;
pub mod coherence;
mod error;
pub(crate) mod family;
pub mod reduce;
pub(crate) mod residency;
pub(crate) mod transfer;

pub use array::{Access, Array};
pub use coherence::{Coherence, CopyStates, MemorySpace, Move};
pub use error::DataError;
pub use reduce::{ReduceOp, Reducible, Reduction};
pub use residency::MemoryStats;
pub use transfer::{LinkStats, MoveEvent, TransferCounters, UploadPath};
