//! Distributed tiled matrices (1-D or 2-D block-cyclic) and the distributed tiled Cholesky
//! and GEMM, with the tile kernels of [`crate::linalg`] (faer on the CPU, WGSL on a GPU).

use std::collections::BTreeSet;

use super::cluster::{Cluster, DistArray, DistHandle};
use super::error::DistError;
use crate::linalg::tiled::{cholesky_ops, gemm_nn, gemm_nt, potrf, trsm, TileOp, TILE_GEMM_WGSL};
use crate::{Kernel, Placement, Uniform};

/// A `p × q` grid of ranks; tile `(i, j)` lives on rank `(i mod p) · q + (j mod q)`
/// (ScaLAPACK's 2-D block-cyclic distribution; `q = 1` is 1-D by block rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCyclic {
    /// Grid rows.
    pub p: usize,
    /// Grid columns.
    pub q: usize,
}

impl BlockCyclic {
    /// A `p × q` grid for a cluster of `size` ranks: `p · q` must be `size`.
    pub fn new(p: usize, q: usize, size: usize) -> Result<BlockCyclic, DistError> {
        if p == 0 || q == 0 || p * q != size {
            return Err(DistError::Layout(format!(
                "a {p} x {q} process grid needs {} ranks, the cluster has {size}",
                p * q
            )));
        }
        Ok(BlockCyclic { p, q })
    }

    /// The squarest grid for `size` ranks (`p ≤ q`, `p · q = size`). More grid columns
    /// than rows balances the lower triangle better: with `1 × 2` the two ranks get equal
    /// Cholesky work on 8 × 8 tiles, with `2 × 1` the odd rows get 46% more.
    pub fn square(size: usize) -> BlockCyclic {
        let p = (1..=size)
            .filter(|p| size.is_multiple_of(*p) && p * p <= size)
            .max()
            .unwrap_or(1);
        BlockCyclic { p, q: size / p }
    }

    /// The rank owning tile `(i, j)`.
    pub fn owner(&self, i: usize, j: usize) -> usize {
        (i % self.p) * self.q + (j % self.q)
    }
}

/// An `n × n` f32 matrix as `tile × tile` tiles (row-major), each a [`DistArray`] on the
/// rank the layout gives: the lower triangle (Cholesky) or every tile (GEMM).
pub struct DistMatrix {
    /// Matrix side.
    pub n: usize,
    /// Tile side.
    pub tile: usize,
    /// The distribution.
    pub layout: BlockCyclic,
    full: bool,
    tiles: Vec<DistArray<f32>>,
}

impl DistMatrix {
    /// The lower triangle of the row-major `n × n` matrix `dense` (read on the owners only).
    pub fn lower(
        c: &Cluster,
        dense: &[f32],
        n: usize,
        tile: usize,
        layout: BlockCyclic,
    ) -> Result<DistMatrix, DistError> {
        Self::tiled(c, dense, n, tile, layout, false, "A")
    }

    /// Every tile of `dense`, labelled `name[i][j]`.
    pub fn full(
        c: &Cluster,
        dense: &[f32],
        n: usize,
        tile: usize,
        layout: BlockCyclic,
        name: &str,
    ) -> Result<DistMatrix, DistError> {
        Self::tiled(c, dense, n, tile, layout, true, name)
    }

    fn tiled(
        c: &Cluster,
        dense: &[f32],
        n: usize,
        tile: usize,
        layout: BlockCyclic,
        full: bool,
        name: &str,
    ) -> Result<DistMatrix, DistError> {
        BlockCyclic::new(layout.p, layout.q, c.size())?;
        if tile == 0 || !n.is_multiple_of(tile) || dense.len() != n * n {
            return Err(DistError::Layout(format!(
                "n = {n} must be a multiple of tile = {tile} and the matrix must have n*n = {} elements (got {})",
                n * n,
                dense.len()
            )));
        }
        let nt = n / tile;
        let mut tiles = Vec::new();
        for i in 0..nt {
            for j in 0..if full { nt } else { i + 1 } {
                let init = || {
                    let mut d = Vec::with_capacity(tile * tile);
                    for r in 0..tile {
                        let row = (i * tile + r) * n + j * tile;
                        d.extend_from_slice(&dense[row..row + tile]);
                    }
                    d
                };
                tiles.push(c.array_named(
                    format!("{name}[{i}][{j}]"),
                    layout.owner(i, j),
                    tile * tile,
                    init,
                )?);
            }
        }
        Ok(DistMatrix {
            n,
            tile,
            layout,
            full,
            tiles,
        })
    }

    /// Tiles per side.
    pub fn tiles_per_side(&self) -> usize {
        self.n / self.tile
    }

    /// Tile `(i, j)` (`j ≤ i` for a lower-triangular matrix).
    pub fn tile(&self, i: usize, j: usize) -> &DistArray<f32> {
        if self.full {
            &self.tiles[i * self.tiles_per_side() + j]
        } else {
            &self.tiles[i * (i + 1) / 2 + j]
        }
    }

    /// Collective: the matrix as dense row-major on every rank (the lower triangle with
    /// zeros above for a lower-triangular one).
    pub fn to_dense(&self) -> Result<Vec<f32>, DistError> {
        let (n, t, nt) = (self.n, self.tile, self.tiles_per_side());
        let mut out = vec![0.0f32; n * n];
        for i in 0..nt {
            for j in 0..if self.full { nt } else { i + 1 } {
                let d = self.tile(i, j).to_vec()?;
                for r in 0..t {
                    for col in 0..t {
                        let (gr, gc) = (i * t + r, j * t + col);
                        if self.full || gc <= gr {
                            out[gr * n + gc] = d[r * t + col];
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The tile kernel on a GPU, if the rank has one and `gpu` asks for it.
fn kernel(c: &Cluster, gpu: bool, entry: &str) -> Result<Option<Kernel>, DistError> {
    if !gpu || c.runtime().gpu_count() == 0 {
        return Ok(None);
    }
    Ok(Some(
        c.runtime()
            .kernel(TILE_GEMM_WGSL, entry)
            .map_err(crate::TaskError::from)?,
    ))
}

/// A tile product task `c ∓= a · b(ᵀ)` with a faer CPU body and, with `k`, a GPU body.
fn product(
    c: &Cluster,
    name: String,
    (a, b, m): (&DistArray<f32>, &DistArray<f32>, &DistArray<f32>),
    (t, priority): (usize, i32),
    cpu: fn(&[f32], &[f32], &mut [f32], usize),
    k: &Option<Kernel>,
) -> Result<DistHandle<()>, DistError> {
    let task = c
        .task(name)
        .args((a.read(), b.read(), m.read_write()))
        .priority(priority)
        .cpu(move |(a, b, m)| cpu(a, b, m, t));
    let groups = [t.div_ceil(16) as u32, t.div_ceil(16) as u32, 1];
    match k {
        Some(k) => {
            let k = k.clone();
            task.gpu(move |cx, (a, b, m)| {
                cx.dispatch(&k, (Uniform([t as u32, 0, 0, 0]), a, b, m), groups)
            })
            .spawn()
        }
        None => task.on(Placement::Cpu).spawn(),
    }
}

/// Spawns distributed tiled Cholesky (`A = L Lᵀ`, lower, in place) on every rank: the same
/// tasks as [`crate::linalg::cholesky`], each on the rank owning the tile it writes. POTRF
/// and TRSM run on the CPU; SYRK and GEMM may run on a GPU of their rank with `gpu_updates`.
pub fn cholesky(
    c: &Cluster,
    m: &DistMatrix,
    gpu_updates: bool,
) -> Result<Vec<DistHandle<()>>, DistError> {
    let t = m.tile;
    let nt = m.tiles_per_side();
    let k = kernel(c, gpu_updates, "nt_sub")?;
    cholesky_ops(nt)
        .into_iter()
        .map(|op| match op {
            TileOp::Potrf(kk) => c
                .task(format!("potrf({kk})"))
                .args(m.tile(kk, kk).read_write())
                .on(Placement::Cpu)
                .priority(op.priority(nt))
                .cpu_try(move |a| potrf(a, t, kk))
                .spawn(),
            TileOp::Trsm(i, kk) => c
                .task(format!("trsm({i},{kk})"))
                .args((m.tile(kk, kk).read(), m.tile(i, kk).read_write()))
                .on(Placement::Cpu)
                .priority(op.priority(nt))
                .cpu(move |(l, b)| trsm(l, b, t))
                .spawn(),
            TileOp::Syrk(i, kk) => {
                let aik = m.tile(i, kk);
                product(
                    c,
                    format!("syrk({i},{kk})"),
                    (aik, aik, m.tile(i, i)),
                    (t, op.priority(nt)),
                    gemm_nt,
                    &k,
                )
            }
            TileOp::Gemm(i, j, kk) => product(
                c,
                format!("gemm({i},{j},{kk})"),
                (m.tile(i, kk), m.tile(j, kk), m.tile(i, j)),
                (t, op.priority(nt)),
                gemm_nt,
                &k,
            ),
        })
        .collect()
}

/// Spawns distributed `C += A · B` on full matrices of one shape and layout: task
/// `(i, j, k)` runs on the owner of `C(i, j)`.
pub fn gemm(
    c: &Cluster,
    a: &DistMatrix,
    b: &DistMatrix,
    cm: &DistMatrix,
    gpu: bool,
) -> Result<Vec<DistHandle<()>>, DistError> {
    let same = |x: &DistMatrix| x.full && x.n == a.n && x.tile == a.tile && x.layout == a.layout;
    if !(same(a) && same(b) && same(cm)) {
        return Err(DistError::Layout(
            "gemm needs three full distributed matrices with the same n, tile and layout".into(),
        ));
    }
    let (t, nt) = (a.tile, a.tiles_per_side());
    let k = kernel(c, gpu, "nn_add")?;
    let mut handles = Vec::with_capacity(nt * nt * nt);
    for i in 0..nt {
        for j in 0..nt {
            for kk in 0..nt {
                handles.push(product(
                    c,
                    format!("gemm({i},{j},{kk})"),
                    (a.tile(i, kk), b.tile(kk, j), cm.tile(i, j)),
                    (t, 0),
                    gemm_nn,
                    &k,
                )?);
            }
        }
    }
    Ok(handles)
}

/// Tile messages distributed Cholesky sends on `layout` with `nt` tiles per side, counted
/// from the layout alone: each final tile of `L` goes once to every other rank that reads
/// it (L(k,k) to the TRSMs of column k; L(i,k) to the SYRK of (i,i) and the GEMMs of row i
/// and column i), and no tile is read off its owner before it is final.
pub fn cholesky_messages(nt: usize, layout: BlockCyclic) -> u64 {
    let o = |i, j| layout.owner(i, j);
    let mut total = 0;
    for k in 0..nt {
        let readers: BTreeSet<usize> = (k + 1..nt).map(|i| o(i, k)).collect();
        total += readers.iter().filter(|r| **r != o(k, k)).count() as u64;
        for i in k + 1..nt {
            let mut readers: BTreeSet<usize> = BTreeSet::from([o(i, i)]);
            readers.extend((k + 1..i).map(|j| o(i, j)));
            readers.extend((i + 1..nt).map(|r| o(r, i)));
            total += readers.iter().filter(|r| **r != o(i, k)).count() as u64;
        }
    }
    total
}

/// Tile messages distributed GEMM sends: `A(i,k)` to the other owners of row `i` of `C`,
/// `B(k,j)` to the other owners of column `j`.
pub fn gemm_messages(nt: usize, layout: BlockCyclic) -> u64 {
    let o = |i, j| layout.owner(i, j);
    let mut total = 0;
    for x in 0..nt {
        for kk in 0..nt {
            let row: BTreeSet<usize> = (0..nt).map(|j| o(x, j)).collect();
            total += row.iter().filter(|r| **r != o(x, kk)).count() as u64;
            let col: BTreeSet<usize> = (0..nt).map(|i| o(i, x)).collect();
            total += col.iter().filter(|r| **r != o(kk, x)).count() as u64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::LocalCluster;

    #[test]
    fn layouts_check_the_grid() {
        assert_eq!(BlockCyclic::square(4), BlockCyclic { p: 2, q: 2 });
        assert_eq!(BlockCyclic::square(2), BlockCyclic { p: 1, q: 2 });
        assert_eq!(BlockCyclic::square(6), BlockCyclic { p: 2, q: 3 });
        assert!(BlockCyclic::new(2, 3, 4).is_err());
        let l = BlockCyclic::new(2, 2, 4).unwrap();
        assert_eq!(
            [l.owner(0, 0), l.owner(0, 1), l.owner(1, 0), l.owner(3, 3)],
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn distributed_gemm_and_cholesky_equal_one_process_bit_for_bit_with_the_predicted_messages() {
        let (n, t) = (96, 32);
        let a = crate::linalg::spd_matrix(n, 7);
        let b: Vec<f32> = (0..n * n).map(|k| ((k * 7) % 11) as f32 - 5.0).collect();
        let out = LocalCluster::new(4)
            .run(|c| {
                let layout = BlockCyclic::square(4);
                let (am, bm) = (
                    DistMatrix::full(c, &a, n, t, layout, "A").unwrap(),
                    DistMatrix::full(c, &b, n, t, layout, "B").unwrap(),
                );
                let cm = DistMatrix::full(c, &vec![0.0; n * n], n, t, layout, "C").unwrap();
                gemm(c, &am, &bm, &cm, false).unwrap();
                c.wait_all().unwrap();
                let sent_gemm = c.stats().messages_sent;
                let l = DistMatrix::lower(c, &a, n, t, layout).unwrap();
                cholesky(c, &l, false).unwrap();
                c.wait_all().unwrap();
                let sent_chol = c.stats().messages_sent - sent_gemm;
                (
                    cm.to_dense().unwrap(),
                    l.to_dense().unwrap(),
                    sent_gemm,
                    sent_chol,
                )
            })
            .unwrap();
        let rt = crate::Runtime::builder()
            .cpu_workers(1)
            .no_gpu()
            .build()
            .unwrap();
        let h = rt.handle();
        let ta = crate::linalg::TiledMatrix::from_dense_full(&h, &a, n, t, "A").unwrap();
        let tb = crate::linalg::TiledMatrix::from_dense_full(&h, &b, n, t, "B").unwrap();
        let tc =
            crate::linalg::TiledMatrix::from_dense_full(&h, &vec![0.0; n * n], n, t, "C").unwrap();
        crate::linalg::gemm(&h, &ta, &tb, &tc, false).unwrap();
        let tl = crate::linalg::TiledMatrix::from_dense(&h, &a, n, t).unwrap();
        crate::linalg::cholesky(&h, &tl, false).unwrap();
        let (want_c, want_l) = (tc.to_dense().unwrap(), tl.to_dense_lower().unwrap());
        let layout = BlockCyclic::square(4);
        let (gm, cm): (u64, u64) = (out.iter().map(|o| o.2).sum(), out.iter().map(|o| o.3).sum());
        assert_eq!(gm, gemm_messages(3, layout));
        assert_eq!(cm, cholesky_messages(3, layout));
        for (c, l, ..) in out {
            assert!(c
                .iter()
                .zip(&want_c)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
            assert!(l
                .iter()
                .zip(&want_l)
                .all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
