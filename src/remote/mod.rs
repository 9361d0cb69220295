//! Remote buffers and replicated tensor sharding (PopXL's streaming memory), on the engine.
//!
//! Job: give programs PopXL's vocabulary for data that lives in host ("streaming") memory
//! and is brought to a device only while it is used:
//! - [`RemoteBuffer`]: `entries` slots of one shape and element type; [`RemoteBuffer::store`]
//!   and [`RemoteBuffer::load`] are tasks; the offset is a host integer or a one-element
//!   array read where the access runs ([`Offset`]);
//! - [`remote_variable`]: a variable placed in a slot and readable from the host at any time;
//! - [`Replication`]: R replicas on devices; [`Replicated`] (whole tensor per replica) and
//!   [`Sharded`] (ceil(n/R) elements per replica, zero-padded) tensors; RTS variables
//!   ([`remote_replica_sharded_variable`], [`replica_sharded_variable`]);
//! - collectives across replicas ([`all_gather`], [`reduce_scatter`], [`all_reduce`],
//!   [`sharded_slice`]): WGSL kernels on GPU replicas, loops on CPU replicas;
//! - [`sgd`]: data-parallel SGD of a linear model with the optimizer state sharded in a
//!   remote buffer (ZeRO style), the worked use of all of the above.
//!
//! Invariants (the ordering argument is in `PROTOCOL.md` beside this file):
//! - every slot is a slice of one managed array per buffer, so it is a coherent object of the
//!   data layer: loads, stores and any task touching a slot (or the whole buffer) are ordered
//!   by the family's range tracker, and a slot moves to a device like any array;
//! - stores write slots on the host; loads copy a slot into a new array on their device;
//! - shapes, element types and host offsets are checked before anything is spawned; device
//!   offsets are checked by a host task that a load depends on, and that runs after a
//!   store's copy (which skips a bad offset): a bad offset fails only that operation, never
//!   the buffer's other entries or later operations;
//! - a buffer's size is computed with checked arithmetic and allocated fallibly: too large
//!   is [`RemoteError::SizeOverflow`] or [`RemoteError::Allocation`], never a wrapped size
//!   or an aborted process;
//! - a sharded tensor's padding is zero and never reaches the host view (`to_vec`, `get`).
//!
//! Nothing here touches wgpu or host bytes directly except through task bodies: this layer
//! sits on `task/` and `data/`'s public vocabulary.

mod buffer;
mod collective;
mod element;
mod error;
mod replication;
pub mod sgd;

mod variable;

pub use buffer::{remote_buffer, Offset, RemoteBuffer};
pub use collective::{
    accumulate, all_gather, all_reduce, reduce_scatter, sharded_slice, CollectiveOp, GatherAxis,
};
pub use element::{Element, ElementType, HostTensor};
pub use error::RemoteError;
pub use replication::{Replicated, Replication, Sharded};
pub use variable::{
    remote_replica_sharded_variable, remote_variable, replica_sharded_variable, RemoteVariable,
    RtsVariable,
};
