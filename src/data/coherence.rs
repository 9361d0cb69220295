//! The MESI state machine for the copies of one array: pure data, no wgpu, no threads.
//!
//! One [`Coherence`] state per memory space (index 0 is the host, `1 + i` is GPU `i`).
//!
//! ## Invariants (checked by [`CopyStates::check`] after every transition in tests)
//! 1. At least one copy is valid (Modified, Exclusive or Shared).
//! 2. At most one copy is Modified or Exclusive, and then every other copy is Invalid.
//!
//! ## Transitions
//! | event on space `d`      | `d` before | moves planned                          | after                          |
//! |-------------------------|------------|----------------------------------------|--------------------------------|
//! | read                    | M / E / S  | none                                   | unchanged                      |
//! | read                    | I          | from a valid copy (host first; GPU→GPU goes through the host) | `d` and every hop S; a former M/E owner S |
//! | write (discard)         | any        | none                                   | `d` M, all others I            |
//! | read-write              | any        | as read                                | `d` M, all others I            |
//! | evict (another copy valid, after a write-back if `d` was M/E) | any | none | `d` I; a lone remaining S becomes E |
//!
//! A freshly created array is Exclusive on the space that holds its initial contents.

use std::fmt;

/// A memory space: host RAM or one GPU's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemorySpace {
    /// Host RAM.
    Host,
    /// Memory of GPU `i`.
    Gpu(usize),
}

impl MemorySpace {
    /// The memory a device computes in: the host for the CPU, its own memory for a GPU.
    pub fn of(device: crate::device::DeviceId) -> Self {
        match device {
            crate::device::DeviceId::Cpu => MemorySpace::Host,
            crate::device::DeviceId::Gpu(i) => MemorySpace::Gpu(i),
        }
    }

    /// Position of this space in per-space tables (0 the host, 1 + i GPU i).
    pub fn slot(self) -> usize {
        match self {
            MemorySpace::Host => 0,
            MemorySpace::Gpu(i) => i + 1,
        }
    }

    /// Inverse of [`MemorySpace::slot`].
    pub fn from_slot(slot: usize) -> Self {
        if slot == 0 {
            MemorySpace::Host
        } else {
            MemorySpace::Gpu(slot - 1)
        }
    }
}

impl fmt::Display for MemorySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemorySpace::Host => write!(f, "host"),
            MemorySpace::Gpu(i) => write!(f, "gpu{i}"),
        }
    }
}

/// State of one copy of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coherence {
    /// The only valid copy, written since it was fetched.
    Modified,
    /// The only valid copy, unchanged since it was fetched or created.
    Exclusive,
    /// One of several valid copies.
    Shared,
    /// Stale or absent.
    Invalid,
}

impl Coherence {
    /// Whether the copy holds the current contents.
    pub fn is_valid(self) -> bool {
        self != Coherence::Invalid
    }

    /// One-letter form used by overviews: M, E, S or I.
    pub fn letter(self) -> char {
        match self {
            Coherence::Modified => 'M',
            Coherence::Exclusive => 'E',
            Coherence::Shared => 'S',
            Coherence::Invalid => 'I',
        }
    }
}

/// One copy to perform: bring the contents of `from` into `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// Source space (valid).
    pub from: MemorySpace,
    /// Destination space.
    pub to: MemorySpace,
}

/// The per-space states of one array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStates {
    states: Vec<Coherence>,
}

impl CopyStates {
    /// `spaces` copies (host + GPUs), the contents valid (Exclusive) on `home` only.
    pub fn new(spaces: usize, home: MemorySpace) -> Self {
        let mut states = vec![Coherence::Invalid; spaces.max(home.slot() + 1)];
        states[home.slot()] = Coherence::Exclusive;
        CopyStates { states }
    }

    /// State of the copy in `space`.
    pub fn get(&self, space: MemorySpace) -> Coherence {
        self.states
            .get(space.slot())
            .copied()
            .unwrap_or(Coherence::Invalid)
    }

    /// Every (space, state) pair.
    pub fn iter(&self) -> impl Iterator<Item = (MemorySpace, Coherence)> + '_ {
        self.states
            .iter()
            .enumerate()
            .map(|(i, s)| (MemorySpace::from_slot(i), *s))
    }

    /// The space holding an M or E copy, if one does.
    pub fn owner(&self) -> Option<MemorySpace> {
        self.iter()
            .find(|(_, s)| matches!(s, Coherence::Modified | Coherence::Exclusive))
            .map(|(sp, _)| sp)
    }

    /// The moves that make `target` valid, in order (empty when it already is).
    pub fn plan_read(&self, target: MemorySpace) -> Vec<Move> {
        if self.get(target).is_valid() {
            return Vec::new();
        }
        let host_valid = self.get(MemorySpace::Host).is_valid();
        let some_gpu = || {
            self.iter()
                .find(|(sp, s)| s.is_valid() && *sp != MemorySpace::Host)
                .map(|(sp, _)| sp)
        };
        match target {
            MemorySpace::Host => some_gpu()
                .map(|from| vec![Move { from, to: target }])
                .unwrap_or_default(),
            MemorySpace::Gpu(_) if host_valid => vec![Move {
                from: MemorySpace::Host,
                to: target,
            }],
            MemorySpace::Gpu(_) => match some_gpu() {
                Some(from) => vec![
                    Move {
                        from,
                        to: MemorySpace::Host,
                    },
                    Move {
                        from: MemorySpace::Host,
                        to: target,
                    },
                ],
                None => Vec::new(),
            },
        }
    }

    fn grow(&mut self, space: MemorySpace) {
        if self.states.len() <= space.slot() {
            self.states.resize(space.slot() + 1, Coherence::Invalid);
        }
    }

    /// Records that `moves` (from [`CopyStates::plan_read`]) were performed: every space they
    /// touched is Shared.
    pub fn apply_moves(&mut self, moves: &[Move]) {
        for m in moves {
            self.grow(m.to);
            self.states[m.from.slot()] = Coherence::Shared;
            self.states[m.to.slot()] = Coherence::Shared;
        }
    }

    /// A write on `space`: it becomes Modified, every other copy Invalid.
    pub fn write(&mut self, space: MemorySpace) {
        self.grow(space);
        for s in &mut self.states {
            *s = Coherence::Invalid;
        }
        self.states[space.slot()] = Coherence::Modified;
    }

    /// Drops the copy in `space` (eviction). The caller guarantees another copy is valid
    /// (after a write-back if needed); a lone remaining Shared copy becomes Exclusive.
    pub fn invalidate(&mut self, space: MemorySpace) {
        if let Some(s) = self.states.get_mut(space.slot()) {
            *s = Coherence::Invalid;
        }
        let valid: Vec<usize> = (0..self.states.len())
            .filter(|&i| self.states[i].is_valid())
            .collect();
        if let [only] = valid[..] {
            if self.states[only] == Coherence::Shared {
                self.states[only] = Coherence::Exclusive;
            }
        }
    }

    /// Checks the invariants of the module docs.
    pub fn check(&self) -> Result<(), String> {
        let valid = self.states.iter().filter(|s| s.is_valid()).count();
        let owners = self
            .states
            .iter()
            .filter(|s| matches!(s, Coherence::Modified | Coherence::Exclusive))
            .count();
        if valid == 0 {
            return Err(format!("no valid copy: {self}"));
        }
        if owners > 1 || (owners == 1 && valid > 1) {
            return Err(format!(
                "an M/E copy coexists with other valid copies: {self}"
            ));
        }
        Ok(())
    }
}

impl fmt::Display for CopyStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (sp, s)) in self.iter().enumerate() {
            if i > 0 {
                write!(f, " ")?;
            }
            write!(f, "{sp}:{}", s.letter())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use MemorySpace::*;

    #[test]
    fn parla_sequence() {
        // T0 reads on gpu0, T1 read-writes on gpu0, T2 reads on the host.
        let mut c = CopyStates::new(2, Host);
        assert_eq!(c.to_string(), "host:E gpu0:I");
        let m = c.plan_read(Gpu(0));
        assert_eq!(
            m,
            vec![Move {
                from: Host,
                to: Gpu(0)
            }]
        );
        c.apply_moves(&m);
        assert_eq!(c.to_string(), "host:S gpu0:S");
        c.write(Gpu(0));
        assert_eq!(c.to_string(), "host:I gpu0:M");
        let m = c.plan_read(Host);
        c.apply_moves(&m);
        assert_eq!(c.to_string(), "host:S gpu0:S");
    }

    #[test]
    fn gpu_to_gpu_goes_through_host() {
        let mut c = CopyStates::new(3, Host);
        c.write(Gpu(1));
        let m = c.plan_read(Gpu(0));
        assert_eq!(
            m,
            vec![
                Move {
                    from: Gpu(1),
                    to: Host
                },
                Move {
                    from: Host,
                    to: Gpu(0)
                }
            ]
        );
        c.apply_moves(&m);
        assert_eq!(c.to_string(), "host:S gpu0:S gpu1:S");
    }

    fn space() -> impl Strategy<Value = MemorySpace> {
        prop_oneof![Just(Host), (0usize..3).prop_map(Gpu)]
    }

    proptest! {
        /// Random reads and writes on random spaces keep the invariants, and a read always
        /// leaves its space valid.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec((space(), any::<bool>()), 1..64)) {
            let mut c = CopyStates::new(4, Host);
            for (sp, is_write) in ops {
                if is_write {
                    c.write(sp);
                } else {
                    let moves = c.plan_read(sp);
                    for m in &moves {
                        prop_assert!(c.get(m.from).is_valid() || moves[0].to == MemorySpace::Host);
                    }
                    c.apply_moves(&moves);
                    prop_assert!(c.get(sp).is_valid());
                }
                prop_assert!(c.check().is_ok(), "{}", c);
            }
        }
    }
}
