//! The sequential task flow's bookkeeping: what every rank computes, identically, for every
//! array and task, without talking to the others.
//!
//! Every rank spawns the same tasks in the same order, so every rank can keep the same
//! table: for each array its owner, its version (how many tasks wrote it) and the set of
//! ranks holding that version. From it each rank decides, for each task, the rank that runs
//! it and the transfers it needs; a rank acts only on its own part (run the task, post a
//! send, post a receive). This module is pure: no MPI, no threads, no engine types.

use super::error::DistError;

/// An array's index in the flow (creation order, equal on every rank).
pub(crate) type ArrayId = u64;

/// How a task uses a distributed array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reads the latest version.
    Read,
    /// Overwrites everything (the old contents are not needed).
    Write,
    /// Reads and updates.
    ReadWrite,
    /// Combines into it (needs the latest version where it runs, like a read-write).
    Reduce,
}

impl Mode {
    /// Whether the task needs the latest version where it runs.
    pub(crate) fn reads(self) -> bool {
        !matches!(self, Mode::Write)
    }

    /// Whether the task makes a new version.
    pub(crate) fn writes(self) -> bool {
        !matches!(self, Mode::Read)
    }

    fn code(self) -> u64 {
        match self {
            Mode::Read => 1,
            Mode::Write => 2,
            Mode::ReadWrite => 3,
            Mode::Reduce => 4,
        }
    }
}

/// A set of ranks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RankSet(Vec<u64>);

impl RankSet {
    pub(crate) fn only(r: usize) -> RankSet {
        let mut s = RankSet::default();
        s.insert(r);
        s
    }
    pub(crate) fn insert(&mut self, r: usize) {
        let (w, b) = (r / 64, r % 64);
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << b;
    }
    pub(crate) fn contains(&self, r: usize) -> bool {
        self.0.get(r / 64).is_some_and(|w| w & (1 << (r % 64)) != 0)
    }
    /// The lowest rank in the set.
    pub(crate) fn first(&self) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }
}

/// What the flow knows of one array.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) owner: usize,
    /// Number of tasks that wrote it (0: the owner's initial contents).
    pub(crate) version: u64,
    /// Ranks holding `version` (never empty).
    pub(crate) holders: RankSet,
    /// The rank that made `version` (the owner for version 0).
    pub(crate) writer: usize,
}

/// One message of the flow: `array` at `version` from `src` to `dst`, the `seq`-th message
/// from `src` to `dst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) array: ArrayId,
    pub(crate) version: u64,
    pub(crate) src: usize,
    pub(crate) dst: usize,
    pub(crate) seq: u64,
}

/// Where a task runs and what it needs moved there.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The rank that runs it.
    pub(crate) exec: usize,
    /// The messages that bring its inputs to `exec`, in access order.
    pub(crate) transfers: Vec<Transfer>,
    /// Inputs `exec` already held as a received copy (a remote cache hit).
    pub(crate) cache_hits: u64,
    /// The flow's hash after this task (equal on every rank running the same program).
    pub(crate) hash: u64,
    /// The task's index in the flow.
    pub(crate) index: u64,
}

/// The table every rank keeps.
#[derive(Debug)]
pub(crate) struct Flow {
    size: usize,
    arrays: Vec<Meta>,
    /// `pairs[src * size + dst]`: messages planned from `src` to `dst` so far.
    pairs: Vec<u64>,
    tasks: u64,
    hash: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn mix(h: u64, x: u64) -> u64 {
    x.to_le_bytes()
        .iter()
        .fold(h, |h, b| (h ^ *b as u64).wrapping_mul(FNV_PRIME))
}

fn mix_str(h: u64, s: &str) -> u64 {
    let h = s
        .bytes()
        .fold(h, |h, b| (h ^ b as u64).wrapping_mul(FNV_PRIME));
    mix(h, s.len() as u64)
}

impl Flow {
    pub(crate) fn new(size: usize) -> Flow {
        Flow {
            size,
            arrays: Vec::new(),
            pairs: vec![0; size * size],
            tasks: 0,
            hash: FNV_OFFSET,
        }
    }

    /// The flow's hash so far and the number of steps (tasks, arrays, gathers) in it.
    pub(crate) fn signature(&self) -> (u64, u64) {
        (self.hash, self.tasks)
    }

    fn check_rank(&self, rank: usize, what: &'static str) -> Result<(), DistError> {
        if rank >= self.size {
            return Err(DistError::NoSuchRank {
                what,
                rank,
                size: self.size,
            });
        }
        Ok(())
    }

    /// A new array of `bytes` bytes whose initial contents live on `owner`.
    pub(crate) fn add_array(&mut self, owner: usize, bytes: usize) -> Result<ArrayId, DistError> {
        self.check_rank(owner, "array owner")?;
        self.hash = mix(mix(mix(self.hash, 0xA77A), owner as u64), bytes as u64);
        self.tasks += 1;
        self.arrays.push(Meta {
            owner,
            version: 0,
            holders: RankSet::only(owner),
            writer: owner,
        });
        Ok(self.arrays.len() as ArrayId - 1)
    }

    pub(crate) fn meta(&self, id: ArrayId) -> &Meta {
        &self.arrays[id as usize]
    }

    fn transfer_to(&mut self, id: ArrayId, dst: usize) -> Transfer {
        let m = &self.arrays[id as usize];
        // The owner if it holds the version, else the lowest holder: a rule every rank
        // evaluates the same way.
        let src = if m.holders.contains(m.owner) {
            m.owner
        } else {
            m.holders.first().expect("an array always has a holder")
        };
        let pair = &mut self.pairs[src * self.size + dst];
        let seq = *pair;
        *pair += 1;
        let t = Transfer {
            array: id,
            version: m.version,
            src,
            dst,
            seq,
        };
        self.arrays[id as usize].holders.insert(dst);
        t
    }

    /// Plans the task `name` with `accesses` (an array may appear more than once), run on
    /// `on_rank` or else on the owner of the first array it writes (else of the first array
    /// it reads; else rank 0). Nothing changes on error.
    pub(crate) fn plan(
        &mut self,
        name: &str,
        accesses: &[(ArrayId, Mode)],
        on_rank: Option<usize>,
    ) -> Result<Plan, DistError> {
        if let Some(r) = on_rank {
            self.check_rank(r, "on_rank")?;
        }
        let exec = on_rank
            .or_else(|| {
                accesses
                    .iter()
                    .find(|(_, m)| m.writes())
                    .map(|(a, _)| self.meta(*a).owner)
            })
            .or_else(|| accesses.first().map(|(a, _)| self.meta(*a).owner))
            .unwrap_or(0);
        let mut h = mix_str(mix(self.hash, 0x7A5C), name);
        h = mix(h, on_rank.map_or(u64::MAX, |r| r as u64));
        for (a, m) in accesses {
            h = mix(mix(h, *a), m.code());
        }
        self.hash = h;
        let index = self.tasks;
        self.tasks += 1;
        let (mut transfers, mut cache_hits) = (Vec::new(), 0);
        let mut seen: Vec<ArrayId> = Vec::new();
        for &(a, _) in accesses {
            if seen.contains(&a) {
                continue;
            }
            seen.push(a);
            let reads = accesses.iter().any(|(b, m)| *b == a && m.reads());
            if !reads {
                continue;
            }
            let m = self.meta(a);
            if !m.holders.contains(exec) {
                transfers.push(self.transfer_to(a, exec));
            } else if m.writer != exec {
                cache_hits += 1;
            }
        }
        for &a in &seen {
            if accesses.iter().any(|(b, m)| *b == a && m.writes()) {
                let m = &mut self.arrays[a as usize];
                m.version += 1;
                m.holders = RankSet::only(exec);
                m.writer = exec;
            }
        }
        Ok(Plan {
            exec,
            transfers,
            cache_hits,
            hash: self.hash,
            index,
        })
    }

    /// Plans a collective gather of `id`'s latest version to every rank that lacks it.
    pub(crate) fn gather(&mut self, id: ArrayId) -> (Vec<Transfer>, u64) {
        self.hash = mix(mix(self.hash, 0x6A7E), id);
        self.tasks += 1;
        let transfers = (0..self.size)
            .filter(|r| !self.meta(id).holders.contains(*r))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|dst| self.transfer_to(id, dst))
            .collect();
        (transfers, self.hash)
    }

    /// Marks a collective step (a wait, a statistics exchange) in the hash.
    pub(crate) fn step(&mut self, what: u64) -> u64 {
        self.hash = mix(mix(self.hash, 0x57E9), what);
        self.tasks += 1;
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_task_runs_on_the_owner_of_what_it_writes_and_fetches_the_rest() {
        let mut f = Flow::new(3);
        let a = f.add_array(0, 8).unwrap();
        let b = f.add_array(2, 8).unwrap();
        let p = f
            .plan("t", &[(a, Mode::Read), (b, Mode::ReadWrite)], None)
            .unwrap();
        assert_eq!(p.exec, 2);
        assert_eq!(
            p.transfers,
            vec![Transfer {
                array: a,
                version: 0,
                src: 0,
                dst: 2,
                seq: 0
            }]
        );
        // The received copy is cached: a second read on rank 2 moves nothing.
        let p = f
            .plan("t", &[(a, Mode::Read), (b, Mode::ReadWrite)], None)
            .unwrap();
        assert!(p.transfers.is_empty());
        assert_eq!(p.cache_hits, 1);
        // The owner writes: rank 2's copy is stale and a new read fetches version 1.
        f.plan("w", &[(a, Mode::ReadWrite)], None).unwrap();
        let p = f.plan("r", &[(a, Mode::Read)], Some(2)).unwrap();
        assert_eq!(p.transfers[0].version, 1);
        assert_eq!(p.transfers[0].seq, 1);
    }

    #[test]
    fn a_write_only_access_moves_nothing_and_bad_ranks_are_errors() {
        let mut f = Flow::new(2);
        let a = f.add_array(1, 8).unwrap();
        let p = f.plan("w", &[(a, Mode::Write)], Some(0)).unwrap();
        assert!(p.transfers.is_empty());
        assert_eq!(f.meta(a).writer, 0);
        // Now rank 0 holds the latest version: the owner fetches it from there.
        let p = f.plan("rw", &[(a, Mode::ReadWrite)], None).unwrap();
        assert_eq!((p.exec, p.transfers[0].src), (1, 0));
        let before = f.signature();
        assert!(matches!(
            f.plan("x", &[], Some(2)),
            Err(DistError::NoSuchRank {
                rank: 2,
                size: 2,
                ..
            })
        ));
        assert_eq!(
            f.signature(),
            before,
            "a refused task leaves the flow unchanged"
        );
        assert!(f.add_array(5, 1).is_err());
    }

    #[test]
    fn the_hash_tells_different_flows_apart() {
        let (mut f, mut g) = (Flow::new(2), Flow::new(2));
        let (a, b) = (f.add_array(0, 4).unwrap(), g.add_array(0, 4).unwrap());
        f.plan("t", &[(a, Mode::Read)], None).unwrap();
        g.plan("t", &[(b, Mode::ReadWrite)], None).unwrap();
        assert_ne!(f.signature(), g.signature());
    }

    proptest! {
        /// Against a model that ships every read's data from the last writer: the flow's
        /// transfers bring exactly the latest version, never one a rank already holds.
        #[test]
        fn transfers_bring_the_latest_version_once(
            ops in proptest::collection::vec((0u64..4, 0usize..4, 0usize..4, proptest::option::of(0usize..3)), 1..200)
        ) {
            let size = 3;
            let mut f = Flow::new(size);
            let ids: Vec<ArrayId> = (0..4).map(|i| f.add_array(i % size, 8).unwrap()).collect();
            // held[r][a] = the version rank r holds of a (None: none).
            let mut held = vec![vec![None; 4]; size];
            let mut version = [0u64; 4];
            for (i, a) in ids.iter().enumerate() { held[i % size][*a as usize] = Some(0); }
            for (a, mode, _, on) in ops {
                let mode = [Mode::Read, Mode::Write, Mode::ReadWrite, Mode::Reduce][mode];
                let p = f.plan("t", &[(ids[a as usize], mode)], on).unwrap();
                let x = p.exec;
                if mode.reads() {
                    if held[x][a as usize] == Some(version[a as usize]) {
                        prop_assert!(p.transfers.is_empty());
                    } else {
                        prop_assert_eq!(p.transfers.len(), 1);
                        let t = &p.transfers[0];
                        prop_assert_eq!(t.version, version[a as usize]);
                        prop_assert_eq!(held[t.src][a as usize], Some(version[a as usize]));
                        held[x][a as usize] = Some(version[a as usize]);
                    }
                }
                if mode.writes() {
                    version[a as usize] += 1;
                    held[x][a as usize] = Some(version[a as usize]);
                }
            }
        }
    }
}
