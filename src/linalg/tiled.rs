//! Tiled matrices and tiled Cholesky.

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, MatMut, MatRef, Par, Side};

use crate::{Array, Kernel, Placement, RuntimeHandle, TaskHandle, Uniform};

/// Errors of the linear-algebra layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LinalgError {
    /// The matrix size is not a multiple of the tile size, or a buffer has the wrong length.
    #[error("bad shape: {0}")]
    Shape(String),
    /// A diagonal tile was not positive definite.
    #[error("tile ({k}, {k}) is not positive definite")]
    NotPositiveDefinite {
        /// The tile's index.
        k: usize,
    },
    /// The kernel failed to compile (should not happen: it ships with the crate).
    #[error(transparent)]
    Kernel(#[from] crate::DeviceError),
}

/// An `n × n` f32 matrix stored as lower-triangular tiles of `tile × tile` (row-major).
pub struct TiledMatrix {
    /// Matrix side.
    pub n: usize,
    /// Tile side.
    pub tile: usize,
    /// Whether every tile is stored (GEMM) or only the lower triangle (Cholesky).
    full: bool,
    /// Full: tile `(i, j)` at `i * nt + j`. Lower: `(i, j)`, `j <= i`, at `i * (i + 1) / 2 + j`.
    tiles: Vec<Array<f32>>,
}

impl TiledMatrix {
    /// Tiles the lower triangle of the row-major `n × n` matrix `dense` (for Cholesky).
    pub fn from_dense(
        rt: &RuntimeHandle,
        dense: &[f32],
        n: usize,
        tile: usize,
    ) -> Result<Self, LinalgError> {
        Self::tiled(rt, dense, n, tile, false, "A")
    }

    /// Tiles all of the row-major `n × n` matrix `dense` (for GEMM); tiles are labelled
    /// `name[i][j]`.
    pub fn from_dense_full(
        rt: &RuntimeHandle,
        dense: &[f32],
        n: usize,
        tile: usize,
        name: &str,
    ) -> Result<Self, LinalgError> {
        Self::tiled(rt, dense, n, tile, true, name)
    }

    fn tiled(
        rt: &RuntimeHandle,
        dense: &[f32],
        n: usize,
        tile: usize,
        full: bool,
        name: &str,
    ) -> Result<Self, LinalgError> {
        if tile == 0 || !n.is_multiple_of(tile) || dense.len() != n * n {
            return Err(LinalgError::Shape(format!(
                "n = {n} must be a multiple of tile = {tile}, and the matrix must have n*n = {} elements (got {})",
                n * n,
                dense.len()
            )));
        }
        let nt = n / tile;
        let mut tiles = Vec::with_capacity(nt * nt);
        for i in 0..nt {
            for j in 0..if full { nt } else { i + 1 } {
                let mut data = Vec::with_capacity(tile * tile);
                for r in 0..tile {
                    let row = (i * tile + r) * n + j * tile;
                    data.extend_from_slice(&dense[row..row + tile]);
                }
                tiles.push(rt.array_named(format!("{name}[{i}][{j}]"), data));
            }
        }
        Ok(TiledMatrix {
            n,
            tile,
            full,
            tiles,
        })
    }

    /// Number of tiles per side.
    pub fn tiles_per_side(&self) -> usize {
        self.n / self.tile
    }

    /// Tile `(i, j)` (`j <= i` for a lower-triangular matrix).
    pub fn tile(&self, i: usize, j: usize) -> &Array<f32> {
        if self.full {
            &self.tiles[i * self.tiles_per_side() + j]
        } else {
            &self.tiles[i * (i + 1) / 2 + j]
        }
    }

    /// The whole matrix as dense row-major (for a full matrix; the lower triangle with zeros
    /// above it otherwise), after every task spawned on the tiles.
    pub fn to_dense(&self) -> Result<Vec<f32>, crate::TaskError> {
        if !self.full {
            return self.to_dense_lower();
        }
        let (n, t, nt) = (self.n, self.tile, self.tiles_per_side());
        let mut out = vec![0.0f32; n * n];
        for i in 0..nt {
            for j in 0..nt {
                let data = self.tile(i, j).to_vec()?;
                for r in 0..t {
                    let row = (i * t + r) * n + j * t;
                    out[row..row + t].copy_from_slice(&data[r * t..(r + 1) * t]);
                }
            }
        }
        Ok(out)
    }

    /// The lower triangle as a dense row-major matrix (upper part zero), after every task
    /// spawned on the tiles.
    pub fn to_dense_lower(&self) -> Result<Vec<f32>, crate::TaskError> {
        let (n, t) = (self.n, self.tile);
        let mut out = vec![0.0f32; n * n];
        for i in 0..self.tiles_per_side() {
            for j in 0..=i {
                let data = self.tile(i, j).to_vec()?;
                for r in 0..t {
                    for c in 0..t {
                        let (gr, gc) = (i * t + r, j * t + c);
                        if gc <= gr {
                            out[gr * n + gc] = data[r * t + c];
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(crate) fn potrf(tile: &mut [f32], t: usize, k: usize) -> Result<(), LinalgError> {
    let m = MatRef::from_row_major_slice(&*tile, t, t).to_owned();
    let l = m
        .llt(Side::Lower)
        .map_err(|_| LinalgError::NotPositiveDefinite { k })?;
    let l = l.L();
    for r in 0..t {
        for c in 0..t {
            tile[r * t + c] = if c <= r { l[(r, c)] } else { 0.0 };
        }
    }
    Ok(())
}

/// `b = b * L^-T` with `L` lower triangular: solve `L X^T = B^T` in place.
pub(crate) fn trsm(l: &[f32], b: &mut [f32], t: usize) {
    let l = MatRef::from_row_major_slice(l, t, t);
    let bt = MatMut::from_row_major_slice_mut(b, t, t).transpose_mut();
    solve_lower_triangular_in_place(l, bt, Par::Seq);
}

/// `c -= a * b^T`.
pub(crate) fn gemm_nt(a: &[f32], b: &[f32], c: &mut [f32], t: usize) {
    let a = MatRef::from_row_major_slice(a, t, t);
    let b = MatRef::from_row_major_slice(b, t, t);
    let c = MatMut::from_row_major_slice_mut(c, t, t);
    matmul(c, Accum::Add, a, b.transpose(), -1.0f32, Par::Seq);
}

/// `c += a * b`.
pub(crate) fn gemm_nn(a: &[f32], b: &[f32], c: &mut [f32], t: usize) {
    matmul(
        MatMut::from_row_major_slice_mut(c, t, t),
        Accum::Add,
        MatRef::from_row_major_slice(a, t, t),
        MatRef::from_row_major_slice(b, t, t),
        1.0f32,
        Par::Seq,
    );
}

/// The tile kernels' WGSL (`nt_sub`: `c -= a bᵀ`; `nn_add`: `c += a b`).
pub(crate) const TILE_GEMM_WGSL: &str = include_str!("../../shaders/tile_gemm.wgsl");

/// One tile task of tiled Cholesky.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TileOp {
    /// Factor the diagonal tile `(k, k)`.
    Potrf(usize),
    /// `(i, k) = (i, k) L(k, k)^-T`.
    Trsm(usize, usize),
    /// `(i, i) -= (i, k) (i, k)ᵀ`.
    Syrk(usize, usize),
    /// `(i, j) -= (i, k) (j, k)ᵀ`.
    Gemm(usize, usize, usize),
}

impl TileOp {
    /// The task's priority in a factorisation with `nt` tiles per side: the critical path
    /// first. Step `k`'s panel (POTRF, then the TRSMs nearest the diagonal) comes before the
    /// trailing updates, and an update comes earlier the sooner its tile is needed (the
    /// tiles of column `k + 1` feed the next panel): `2·nt − 2k − i − j` for the task of
    /// step `k` writing tile `(i, j)`, the rule StarPU's Cholesky examples give their
    /// updates, applied here to every task of the step.
    pub(crate) fn priority(self, nt: usize) -> i32 {
        let (k, i, j) = match self {
            TileOp::Potrf(k) => (k, k, k),
            TileOp::Trsm(i, k) => (k, i, k),
            TileOp::Syrk(i, k) => (k, i, i),
            TileOp::Gemm(i, j, k) => (k, i, j),
        };
        let p = 2 * nt as i64 - 2 * k as i64 - i as i64 - j as i64;
        p.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }
}

/// Tiled Cholesky's tasks in the order they are spawned (right-looking).
pub(crate) fn cholesky_ops(nt: usize) -> Vec<TileOp> {
    let mut ops = Vec::new();
    for k in 0..nt {
        ops.push(TileOp::Potrf(k));
        ops.extend((k + 1..nt).map(|i| TileOp::Trsm(i, k)));
        for i in k + 1..nt {
            ops.push(TileOp::Syrk(i, k));
            ops.extend((k + 1..i).map(|j| TileOp::Gemm(i, j, k)));
        }
    }
    ops
}

/// Spawns tiled Cholesky (`A = L Lᵀ`, lower) on `m` in place and returns the handles of its
/// tasks. POTRF and TRSM run on the CPU; SYRK and GEMM may run on the CPU or a GPU, as the
/// runtime's policy decides (`gpu_updates` false keeps them on the CPU).
pub fn cholesky(
    rt: &RuntimeHandle,
    m: &TiledMatrix,
    gpu_updates: bool,
) -> Result<Vec<TaskHandle<()>>, LinalgError> {
    let t = m.tile;
    let nt = m.tiles_per_side();
    let kernel: Option<Kernel> = if gpu_updates && rt.gpu_count() > 0 {
        Some(rt.kernel(TILE_GEMM_WGSL, "nt_sub")?)
    } else {
        None
    };
    let groups = [t.div_ceil(16) as u32, t.div_ceil(16) as u32, 1];
    let mut handles = Vec::new();
    // C -= A * B^T as a task on tiles (a, b, c); a and b may be the same tile (SYRK).
    let update = |name: String, a: &Array<f32>, b: &Array<f32>, c: &Array<f32>, op: TileOp| {
        let task = rt
            .task(name)
            .args((a.read(), b.read(), c.read_write()))
            .priority(op.priority(nt))
            .cpu(move |(a, b, c)| gemm_nt(a, b, c, t));
        match &kernel {
            Some(k) => {
                let k = k.clone();
                task.gpu(move |cx, (a, b, c)| {
                    cx.dispatch(&k, (Uniform([t as u32, 0, 0, 0]), a, b, c), groups)
                })
                .spawn()
            }
            None => task.on(Placement::Cpu).spawn(),
        }
    };
    for op in cholesky_ops(nt) {
        handles.push(match op {
            TileOp::Potrf(k) => rt
                .task(format!("potrf({k})"))
                .args(m.tile(k, k).read_write())
                .on(Placement::Cpu)
                .priority(op.priority(nt))
                .cpu_try(move |a| potrf(a, t, k))
                .spawn(),
            TileOp::Trsm(i, k) => rt
                .task(format!("trsm({i},{k})"))
                .args((m.tile(k, k).read(), m.tile(i, k).read_write()))
                .on(Placement::Cpu)
                .priority(op.priority(nt))
                .cpu(move |(l, b)| trsm(l, b, t))
                .spawn(),
            TileOp::Syrk(i, k) => {
                let aik = m.tile(i, k);
                update(format!("syrk({i},{k})"), aik, aik, m.tile(i, i), op)
            }
            TileOp::Gemm(i, j, k) => update(
                format!("gemm({i},{j},{k})"),
                m.tile(i, k),
                m.tile(j, k),
                m.tile(i, j),
                op,
            ),
        });
    }
    Ok(handles)
}

/// Spawns tiled `C += A · B` on full tiled matrices of equal shape and returns the tasks
/// (one per (i, j, k) tile product; those of one C tile are ordered by their accesses).
/// Each has a faer CPU body and, with `gpu` and a GPU present, a WGSL GPU body.
pub fn gemm(
    rt: &RuntimeHandle,
    a: &TiledMatrix,
    b: &TiledMatrix,
    c: &TiledMatrix,
    gpu: bool,
) -> Result<Vec<TaskHandle<()>>, LinalgError> {
    if !(a.full && b.full && c.full)
        || a.n != b.n
        || a.n != c.n
        || a.tile != b.tile
        || a.tile != c.tile
    {
        return Err(LinalgError::Shape(
            "gemm needs three full tiled matrices with the same n and tile".into(),
        ));
    }
    let (t, nt) = (a.tile, a.tiles_per_side());
    let kernel = if gpu && rt.gpu_count() > 0 {
        Some(rt.kernel(TILE_GEMM_WGSL, "nn_add")?)
    } else {
        None
    };
    let groups = [t.div_ceil(16) as u32, t.div_ceil(16) as u32, 1];
    let mut handles = Vec::with_capacity(nt * nt * nt);
    for i in 0..nt {
        for j in 0..nt {
            for k in 0..nt {
                let task = rt
                    .task(format!("gemm({i},{j},{k})"))
                    .args((
                        a.tile(i, k).read(),
                        b.tile(k, j).read(),
                        c.tile(i, j).read_write(),
                    ))
                    .cpu(move |(a, b, c)| gemm_nn(a, b, c, t));
                handles.push(match &kernel {
                    Some(kern) => {
                        let kern = kern.clone();
                        task.gpu(move |cx, (a, b, c)| {
                            cx.dispatch(&kern, (Uniform([t as u32, 0, 0, 0]), a, b, c), groups)
                        })
                        .spawn()
                    }
                    None => task.on(Placement::Cpu).spawn(),
                });
            }
        }
    }
    Ok(handles)
}

/// A well-conditioned symmetric positive definite `n × n` matrix (row-major), reproducible
/// from `seed`: `M Mᵀ / n + I` for a pseudo-random `M` with entries in [-0.5, 0.5).
pub fn spd_matrix(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut rnd = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let m: Vec<f32> = (0..n * n).map(|_| rnd()).collect();
    let mm = MatRef::from_row_major_slice(&m, n, n);
    let a = mm * mm.transpose() * faer::Scale(1.0 / n as f32) + faer::Mat::<f32>::identity(n, n);
    (0..n * n).map(|k| a[(k / n, k % n)]).collect()
}

/// The relative residual ‖A − L Lᵀ‖_F / ‖A‖_F of a Cholesky factor, in `f64`.
///
/// `a` and `l` are row-major `n × n`; only the lower triangle of `l` is read (what lies above
/// the diagonal is taken as zero) and the whole of `a`. The product is one faer matrix
/// multiplication in `f64` (O(n³), sequential), so the check does not hide the factor's own
/// `f32` rounding.
///
/// ```
/// let a = vec![4.0f32, 2.0, 2.0, 5.0];
/// let l = vec![2.0f32, 0.0, 1.0, 2.0];
/// assert!(hetflow::linalg::cholesky_residual(&a, &l, 2)? < 1e-12);
/// assert!(hetflow::linalg::cholesky_residual(&a, &l[..3], 2).is_err());
/// # Ok::<(), hetflow::linalg::LinalgError>(())
/// ```
///
/// # Errors
/// [`LinalgError::Shape`] when `a` or `l` does not hold `n × n` values.
pub fn cholesky_residual(a: &[f32], l: &[f32], n: usize) -> Result<f64, LinalgError> {
    for (name, m) in [("a", a), ("l", l)] {
        if m.len() != n * n {
            return Err(LinalgError::Shape(format!(
                "{name} holds {} values, expected n x n = {}",
                m.len(),
                n * n
            )));
        }
    }
    let lf = faer::Mat::<f64>::from_fn(n, n, |i, j| if j <= i { l[i * n + j] as f64 } else { 0.0 });
    let mut p = faer::Mat::<f64>::zeros(n, n);
    matmul(
        p.as_mut(),
        Accum::Replace,
        lf.as_ref(),
        lf.transpose(),
        1.0,
        Par::Seq,
    );
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for i in 0..n {
        for j in 0..n {
            let x = a[i * n + j] as f64;
            num += (x - p[(i, j)]).powi(2);
            den += x * x;
        }
    }
    Ok((num / den).sqrt())
}
