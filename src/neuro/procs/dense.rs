//! Dense synapses (Lava's `Dense`): floating point (`PyDenseModelFloat`) and bit-accurate
//! fixed point (`PyDenseModelBitAcc`), MODELS.md §4 and §5.
//!
//! The weight matrix is a Var of shape `[n_out, n_in]` (as given to Lava). For speed the
//! models keep a column-compressed copy without the zero weights (one list of
//! `(row, weight)` per presynaptic neuron), so a step costs one pass over the input plus one
//! add per synaptic event. Adding a zero changes no sum, so the result is the same.

use crate::neuro::model::{Cx, ModelSpec, Part, Pool, PortIx, ProcessModel, VarIx};
use crate::neuro::{Data, InPort, Network, NeuroError, OutPort, Process, Var, VarType};

/// How the fixed-point model treats weight signs (Lava's `SignMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    /// Positive and negative weights: 9 bits, clipped to [-256, 255], one LSB dropped.
    Mixed,
    /// Non-negative weights: clipped to [0, 255].
    Excitatory,
    /// Non-positive weights: magnitudes clipped to [0, 255].
    Inhibitory,
}

/// Parameters of a Dense connection.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseParams {
    /// Rows: postsynaptic neurons.
    pub n_out: usize,
    /// Columns: presynaptic neurons.
    pub n_in: usize,
    /// Row-major `n_out x n_in` weights.
    pub weights: Vec<f64>,
    /// Fixed point: exponent applied to the accumulated sum.
    pub weight_exp: i32,
    /// Fixed point: weight precision (1..=8).
    pub num_weight_bits: i32,
    /// Fixed point: sign mode, inferred from the weights when `None`.
    pub sign_mode: Option<SignMode>,
    /// 0: binary spikes (sum of the columns of the neurons that spiked); >0: graded (W·s).
    pub num_message_bits: i32,
    /// Compressed rows `(row_ptr, cols)`: then `weights` holds only the listed values and the
    /// process is a `Sparse` (same dynamics, storage for large sparse matrices).
    pub csr: Option<(Vec<i32>, Vec<i32>)>,
}

impl DenseParams {
    /// `weights` given as rows (`weights[i][j]`: from presynaptic `j` to postsynaptic `i`).
    pub fn from_rows(weights: &[Vec<f64>]) -> Result<DenseParams, NeuroError> {
        let n_out = weights.len();
        let n_in = weights.first().map_or(0, Vec::len);
        if let Some(r) = weights.iter().position(|r| r.len() != n_in) {
            return Err(NeuroError::Invalid {
                what: "Dense weights".into(),
                reason: format!("row {r} has {} columns, row 0 has {n_in}", weights[r].len()),
            });
        }
        Ok(DenseParams::new(n_out, n_in, weights.concat()))
    }

    /// Row-major weights of shape `n_out x n_in`, Lava's defaults otherwise.
    pub fn new(n_out: usize, n_in: usize, weights: Vec<f64>) -> DenseParams {
        DenseParams {
            n_out,
            n_in,
            weights,
            weight_exp: 0,
            num_weight_bits: 8,
            sign_mode: None,
            num_message_bits: 0,
            csr: None,
        }
    }

    /// A sparse matrix from compressed rows: row `i` holds `values[row_ptr[i]..row_ptr[i+1]]`
    /// at columns `cols[..]` (Lava's `Sparse` process: same dynamics as Dense).
    pub fn sparse(
        n_out: usize,
        n_in: usize,
        row_ptr: Vec<i32>,
        cols: Vec<i32>,
        values: Vec<f64>,
    ) -> DenseParams {
        DenseParams {
            csr: Some((row_ptr, cols)),
            ..DenseParams::new(n_out, n_in, values)
        }
    }

    fn layout(&self) -> Layout {
        match self.csr {
            Some(_) => Layout::Csr { n_in: self.n_in },
            None => Layout::Dense,
        }
    }
    /// Sets weight_exp.
    pub fn weight_exp(mut self, e: i32) -> Self {
        self.weight_exp = e;
        self
    }
    /// Sets num_weight_bits.
    pub fn num_weight_bits(mut self, b: i32) -> Self {
        self.num_weight_bits = b;
        self
    }
    /// Sets the sign mode.
    pub fn sign_mode(mut self, m: SignMode) -> Self {
        self.sign_mode = Some(m);
        self
    }
    /// Sets num_message_bits.
    pub fn num_message_bits(mut self, b: i32) -> Self {
        self.num_message_bits = b;
        self
    }
}

const WEIGHTS: VarIx = VarIx(0);
const A_BUFF: VarIx = VarIx(1);
const S_IN: PortIx = PortIx(0);
const A_OUT: PortIx = PortIx(1);

/// A Dense connection: Vars `weights` (`[n_out, n_in]`), `a_buff` (`[n_out]`) and its
/// parameters `weight_exp`, `num_weight_bits`, `num_message_bits`, `sign_mode` (0 inferred,
/// 1 mixed, 2 excitatory, 3 inhibitory; shape `[1]`, read at compilation); ports
/// `s_in` (InPort, `[n_in]`) and `a_out` (OutPort, `[n_out]`). It sends in each step what
/// it accumulated in the previous one (a one-step synaptic delay).
#[derive(Clone, Debug)]
pub struct Dense {
    proc: Process,
}

impl Dense {
    /// Declares a Dense connection in `net`.
    pub fn new(net: &Network, name: &str, p: DenseParams) -> Result<Dense, NeuroError> {
        if let Some((ptr, cols)) = &p.csr {
            if ptr.len() != p.n_out + 1 || cols.len() != p.weights.len() {
                return Err(NeuroError::Invalid {
                    what: format!("Sparse `{name}` rows"),
                    reason: format!(
                        "row_ptr has {} entries ({} expected), cols {} ({} values)",
                        ptr.len(),
                        p.n_out + 1,
                        cols.len(),
                        p.weights.len()
                    ),
                });
            }
        } else if p.weights.len() != p.n_out * p.n_in {
            return Err(NeuroError::Invalid {
                what: format!("Dense `{name}` weights"),
                reason: format!(
                    "{} values for shape [{}, {}]",
                    p.weights.len(),
                    p.n_out,
                    p.n_in
                ),
            });
        }
        if !(1..=8).contains(&p.num_weight_bits) {
            return Err(NeuroError::Invalid {
                what: format!("Dense `{name}` num_weight_bits"),
                reason: format!("{} given, 1..=8 expected", p.num_weight_bits),
            });
        }
        if !(-31..=31).contains(&p.weight_exp) {
            return Err(NeuroError::Invalid {
                what: format!("Dense `{name}` weight_exp"),
                reason: format!("{} given, -31..=31 expected", p.weight_exp),
            });
        }
        let sparse = p.csr.is_some();
        let (type_name, float_name, fixed_name) = if sparse {
            ("Sparse", "PySparseModelFloat", "PySparseModelBitAcc")
        } else {
            ("Dense", "PyDenseModelFloat", "PyDenseModelBitAcc")
        };
        let w_shape = if sparse {
            vec![p.weights.len()]
        } else {
            vec![p.n_out, p.n_in]
        };
        let (fp, xp) = (
            DenseParams {
                weights: Vec::new(),
                ..p.clone()
            },
            DenseParams {
                weights: Vec::new(),
                csr: None,
                ..p.clone()
            },
        );
        let xp_layout = fp.layout();
        let (ptr, cols) = p.csr.clone().unwrap_or_default();
        let mut b = net
            .process(name, type_name)
            .var("weights", &w_shape, p.weights)
            .var("a_buff", &[p.n_out], vec![0.0; p.n_out])
            .var("weight_exp", &[1], vec![p.weight_exp as f64])
            .var("num_weight_bits", &[1], vec![p.num_weight_bits as f64])
            .var("num_message_bits", &[1], vec![p.num_message_bits as f64])
            .var(
                "sign_mode",
                &[1],
                vec![match p.sign_mode {
                    None => 0.0,
                    Some(SignMode::Mixed) => 1.0,
                    Some(SignMode::Excitatory) => 2.0,
                    Some(SignMode::Inhibitory) => 3.0,
                }],
            );
        if sparse {
            b = b.var("row_ptr", &[ptr.len()], Data::I32(ptr)).var(
                "cols",
                &[cols.len()],
                Data::I32(cols),
            );
        }
        let proc = b
            .in_port("s_in", &[p.n_in])
            .out_port("a_out", &[p.n_out])
            .model(ModelSpec::leaf(float_name, &["floating_pt"], move |b| {
                b.set_dtype(WEIGHTS, VarType::F64);
                b.set_dtype(A_BUFF, VarType::F64);
                Ok(Box::new(DenseFloat {
                    layout: fp.layout(),
                    cols: Blocks::default(),
                    built: false,
                    s: vec![0.0; fp.n_in],
                    active: Vec::new(),
                    n_out: fp.n_out,
                    graded: fp.num_message_bits > 0,
                }))
            }))
            .model(ModelSpec::leaf(
                fixed_name,
                &["fixed_pt", "bit_accurate_loihi"],
                move |b| {
                    b.set_dtype(WEIGHTS, VarType::I32);
                    b.set_dtype(A_BUFF, VarType::I32);
                    Ok(Box::new(DenseFixed {
                        layout: xp_layout,
                        cols: Blocks::default(),
                        built: false,
                        processed: false,
                        s: vec![0; xp.n_in],
                        active: Vec::new(),
                        n_out: xp.n_out,
                        weight_exp: xp.weight_exp,
                        num_weight_bits: xp.num_weight_bits,
                        sign_mode: xp.sign_mode,
                        graded: xp.num_message_bits > 0,
                    }))
                },
            ))
            .build()?;
        Ok(Dense { proc })
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.proc
    }
    /// Var `weights`.
    pub fn weights(&self) -> Var {
        self.proc.var("weights").expect("Dense declares this Var")
    }
    /// Var `a_buff`.
    pub fn a_buff(&self) -> Var {
        self.proc.var("a_buff").expect("Dense declares this Var")
    }
    /// InPort `s_in`.
    pub fn s_in(&self) -> InPort {
        self.proc.in_port("s_in").expect("Dense declares this port")
    }
    /// OutPort `a_out`.
    pub fn a_out(&self) -> OutPort {
        self.proc
            .out_port("a_out")
            .expect("Dense declares this port")
    }
}

/// Column-compressed non-zero weights: column `j` is `rows[ptr[j]..ptr[j+1]]`.
#[derive(Default)]
struct Columns<W> {
    ptr: Vec<usize>,
    rows: Vec<u32>,
    vals: Vec<W>,
}

impl<W: Copy + Default + PartialEq> Columns<W> {
    fn build(w: &[W], n_out: usize) -> Columns<W> {
        let n_in = w.len().checked_div(n_out).unwrap_or(0);
        let zero = W::default();
        let mut counts = vec![0usize; n_in + 1];
        for row in w.chunks_exact(n_in.max(1)) {
            for (j, x) in row.iter().enumerate() {
                if *x != zero {
                    counts[j + 1] += 1;
                }
            }
        }
        for j in 0..n_in {
            counts[j + 1] += counts[j];
        }
        let nnz = counts[n_in];
        let mut rows = vec![0u32; nnz];
        let mut vals = vec![zero; nnz];
        let mut fill = counts.clone();
        for (i, row) in w.chunks_exact(n_in.max(1)).enumerate() {
            for (j, x) in row.iter().enumerate() {
                if *x != zero {
                    rows[fill[j]] = i as u32;
                    vals[fill[j]] = *x;
                    fill[j] += 1;
                }
            }
        }
        Columns {
            ptr: counts,
            rows,
            vals,
        }
    }

    /// From rows `ptr`/`cols`/`vals` (CSR) to columns; zero values are dropped.
    fn from_csr(
        ptr: &[i32],
        cols: &[i32],
        vals: &[W],
        n_in: usize,
    ) -> Result<Columns<W>, NeuroError> {
        let bad = |reason: String| NeuroError::Invalid {
            what: "Sparse weights".into(),
            reason,
        };
        if ptr.first() != Some(&0)
            || ptr.windows(2).any(|w| w[1] < w[0])
            || *ptr.last().unwrap_or(&0) as usize != vals.len()
            || cols.len() != vals.len()
        {
            return Err(bad(format!(
                "row_ptr must rise from 0 to {} (the number of weights)",
                vals.len()
            )));
        }
        if let Some(&c) = cols.iter().find(|&&c| c < 0 || c as usize >= n_in) {
            return Err(bad(format!("column {c} outside 0..{n_in}")));
        }
        let zero = W::default();
        let mut counts = vec![0usize; n_in + 1];
        for (&c, v) in cols.iter().zip(vals) {
            if *v != zero {
                counts[c as usize + 1] += 1;
            }
        }
        for j in 0..n_in {
            counts[j + 1] += counts[j];
        }
        let mut fill = counts.clone();
        let nnz = counts[n_in];
        let (mut rows, mut out) = (vec![0u32; nnz], vec![zero; nnz]);
        for i in 0..ptr.len() - 1 {
            for k in ptr[i] as usize..ptr[i + 1] as usize {
                if vals[k] != zero {
                    let j = cols[k] as usize;
                    rows[fill[j]] = i as u32;
                    out[fill[j]] = vals[k];
                    fill[j] += 1;
                }
            }
        }
        Ok(Columns {
            ptr: counts,
            rows,
            vals: out,
        })
    }

    #[inline]
    fn column(&self, j: usize) -> (&[u32], &[W]) {
        let r = self.ptr[j]..self.ptr[j + 1];
        (&self.rows[r.clone()], &self.vals[r])
    }
}

/// The compressed columns cut into row blocks, one per data-parallel part: block `b` holds
/// rows `b * chunk ..` (numbered from the block's first row), so the parts write disjoint
/// pieces of `a_buff`. Within a row the weights are added in the order of their columns,
/// as without blocks, so the sums are the same to the bit.
struct Blocks<W> {
    chunk: usize,
    blocks: Vec<Columns<W>>,
}

impl<W> Default for Blocks<W> {
    fn default() -> Self {
        Blocks {
            chunk: 1,
            blocks: Vec::new(),
        }
    }
}

impl<W: Copy + Default + PartialEq> Blocks<W> {
    fn split(c: Columns<W>, n_out: usize, parts: usize) -> Blocks<W> {
        let chunk = n_out.div_ceil(parts.max(1)).max(1);
        let nb = n_out.div_ceil(chunk).max(1);
        if nb == 1 {
            return Blocks {
                chunk,
                blocks: vec![c],
            };
        }
        let n_in = c.ptr.len().saturating_sub(1);
        let mut blocks: Vec<Columns<W>> = (0..nb)
            .map(|_| Columns {
                ptr: vec![0; n_in + 1],
                rows: Vec::new(),
                vals: Vec::new(),
            })
            .collect();
        for j in 0..n_in {
            let (rows, vals) = c.column(j);
            for (&r, &w) in rows.iter().zip(vals) {
                let b = r as usize / chunk;
                blocks[b].rows.push(r - (b * chunk) as u32);
                blocks[b].vals.push(w);
            }
            for blk in &mut blocks {
                blk.ptr[j + 1] = blk.rows.len();
            }
        }
        Blocks { chunk, blocks }
    }
}

/// The element arithmetic of a synapse model: floats add, integers wrap (as numpy int32).
trait Syn: Copy + Default + PartialEq + Send + Sync {
    fn add(a: Self, w: Self, s: Self, graded: bool) -> Self;
    /// Bits that are all zero exactly when `self == Self::default()` (for floats: when it
    /// compares equal to 0.0, so -0.0 counts as zero and NaN does not).
    fn nonzero_bits(self) -> u64;
}

impl Syn for f64 {
    #[inline(always)]
    fn add(a: f64, w: f64, s: f64, graded: bool) -> f64 {
        if graded {
            a + w * s
        } else {
            a + w
        }
    }
    #[inline(always)]
    fn nonzero_bits(self) -> u64 {
        self.to_bits() << 1
    }
}

impl Syn for i32 {
    #[inline(always)]
    fn add(a: i32, w: i32, s: i32, graded: bool) -> i32 {
        if graded {
            a.wrapping_add(w.wrapping_mul(s))
        } else {
            a.wrapping_add(w)
        }
    }
    #[inline(always)]
    fn nonzero_bits(self) -> u64 {
        self as u32 as u64
    }
}

/// The event-driven accumulation: `active` lists the presynaptic neurons that spiked (with
/// their message), so only their columns are touched; one part per row block, each
/// writing its piece of `a` and then applying `finish` to it.
fn accumulate<W: Syn>(
    pool: Pool<'_>,
    blocks: &Blocks<W>,
    active: &[(u32, W)],
    a: &mut [W],
    graded: bool,
    finish: &(dyn Fn(&mut [W]) + Sync),
) -> Result<(), NeuroError> {
    let parts: Vec<Part<'_>> = blocks
        .blocks
        .iter()
        .zip(a.chunks_mut(blocks.chunk))
        .map(|(blk, a)| {
            Box::new(move || {
                a.fill(W::default());
                for (q, &(j, sj)) in active.iter().enumerate() {
                    let (rows, vals) = blk.column(j as usize);
                    // The column `AHEAD` spikes later, prefetched as this one is read.
                    let next = active.get(q + AHEAD).map(|&(j, _)| blk.column(j as usize));
                    for (c, (rows, vals)) in rows.chunks(16).zip(vals.chunks(16)).enumerate() {
                        if let Some((nr, nv)) = next {
                            prefetch_chunk(nr, nv, c * 16);
                        }
                        for (&r, &w) in rows.iter().zip(vals) {
                            let r = r as usize;
                            a[r] = W::add(a[r], w, sj, graded);
                        }
                    }
                }
                finish(a);
                Ok(())
            }) as Part<'_>
        })
        .collect();
    pool.run(parts)
}

/// How many spikes ahead [`accumulate`] prefetches a column. The columns of the neurons
/// that spiked are scattered over a weight store much larger than the caches, so each one
/// starts with cache misses the hardware prefetcher cannot foresee; reading column `q + 2`'s
/// lines while adding column `q` keeps the memory busy. Measured on this repository's 2-core
/// machine (a standalone loop of the bench network's accumulation, 3000 steps): 10k neurons
/// p = 0.1 (1000 weights per column) 50 -> 25 µs per step, 100k p = 0.001 (100 per column)
/// 450 -> 170 µs; one and three spikes ahead were within noise of two.
const AHEAD: usize = 2;

/// Prefetches the cache lines of elements `k .. k + 16` of a column (`rows`, `vals`):
/// one line of 16 row indices and the lines of 16 weights.
#[inline(always)]
fn prefetch_chunk<W>(rows: &[u32], vals: &[W], k: usize) {
    if k < rows.len() {
        prefetch(rows.as_ptr().wrapping_add(k));
        let v = vals.as_ptr().wrapping_add(k);
        prefetch(v);
        if std::mem::size_of::<W>() * 16 > 64 {
            prefetch(v.wrapping_add(64 / std::mem::size_of::<W>()));
        }
    }
}

/// Asks the CPU to start loading the cache line holding `p` (nothing where the target has
/// no prefetch instruction we use).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it reads nothing the program sees and cannot fault,
    // whatever the address (SSE, part of every x86_64 target).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The presynaptic neurons whose message is not zero, in index order. Spikes are rare, so
/// the input is read in blocks of 64 whose bits are OR-ed together (a loop without
/// branches, which the compiler vectorizes), and only a block that has a message is looked
/// at element by element.
fn compact<W: Syn>(s: &[W], active: &mut Vec<(u32, W)>) {
    const BLOCK: usize = 64;
    active.clear();
    let zero = W::default();
    for (b, block) in s.chunks(BLOCK).enumerate() {
        if block.iter().fold(0, |m, &x| m | x.nonzero_bits()) == 0 {
            continue;
        }
        active.extend(
            block
                .iter()
                .enumerate()
                .filter(|(_, &x)| x != zero)
                .map(|(k, &x)| ((b * BLOCK + k) as u32, x)),
        );
    }
}

/// How a model's `weights` Var is laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// `[n_out, n_in]` row-major.
    Dense,
    /// Values by rows, with the Vars `row_ptr` and `cols` (a Sparse process).
    Csr { n_in: usize },
}

const ROW_PTR: VarIx = VarIx(6);
const COLS: VarIx = VarIx(7);

fn columns<W: Copy + Default + PartialEq>(
    layout: Layout,
    cx: &Cx<'_>,
    w: &[W],
    n_out: usize,
) -> Result<Columns<W>, NeuroError> {
    match layout {
        Layout::Dense => Ok(Columns::build(w, n_out)),
        Layout::Csr { n_in } => {
            let ptr = cx.var(ROW_PTR).to_i32();
            let cols = cx.var(COLS).to_i32();
            Columns::from_csr(&ptr, &cols, w, n_in)
        }
    }
}

struct DenseFloat {
    layout: Layout,
    cols: Blocks<f64>,
    built: bool,
    s: Vec<f64>,
    active: Vec<(u32, f64)>,
    n_out: usize,
    graded: bool,
}

impl ProcessModel for DenseFloat {
    fn name(&self) -> &str {
        match self.layout {
            Layout::Dense => "PyDenseModelFloat",
            Layout::Csr { .. } => "PySparseModelFloat",
        }
    }

    fn sends_early(&self) -> bool {
        true
    }

    fn run_spk_early(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        cx.send_var_swap(A_OUT, A_BUFF);
        Ok(())
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        let pool = cx.pool();
        if !self.built {
            let c = columns(
                self.layout,
                cx,
                cx.var(WEIGHTS).as_f64("weights")?,
                self.n_out,
            )?;
            self.cols = Blocks::split(c, self.n_out, pool.parts(self.n_out));
            self.built = true;
        }
        match cx.recv_borrow(S_IN, self.s.len()) {
            Some(Data::F64(s)) => compact(s, &mut self.active),
            _ => {
                cx.recv_f64(S_IN, &mut self.s)?;
                compact(&self.s, &mut self.active);
            }
        }
        let a = cx.var_mut(A_BUFF).as_f64_mut("a_buff")?;
        accumulate(pool, &self.cols, &self.active, a, self.graded, &|_| {})
    }

    fn var_set(&mut self, var: VarIx) {
        if var == WEIGHTS {
            self.built = false;
        }
    }
}

struct DenseFixed {
    layout: Layout,
    cols: Blocks<i32>,
    built: bool,
    processed: bool,
    s: Vec<i32>,
    active: Vec<(u32, i32)>,
    n_out: usize,
    weight_exp: i32,
    num_weight_bits: i32,
    sign_mode: Option<SignMode>,
    graded: bool,
}

/// The sign mode Lava infers from the weights (an all-zero matrix is excitatory).
pub fn infer_sign_mode(w: &[i32]) -> SignMode {
    if w.iter().all(|&x| x >= 0) {
        SignMode::Excitatory
    } else if w.iter().all(|&x| x <= 0) {
        SignMode::Inhibitory
    } else {
        SignMode::Mixed
    }
}

/// Clips and truncates weights in place as Lava's bit-accurate Dense does on its first step
/// (MODELS.md §5); `num_weight_bits` must be in 1..=8.
pub fn process_weights(w: &mut [i32], sign_mode: Option<SignMode>, num_weight_bits: i32) {
    let mode = sign_mode.unwrap_or_else(|| infer_sign_mode(w));
    let k = (8 - num_weight_bits + i32::from(mode == SignMode::Mixed)).clamp(0, 31) as u32;
    for x in w.iter_mut() {
        *x = match mode {
            SignMode::Mixed => (((*x).clamp(-256, 255)) >> k) << k,
            SignMode::Excitatory => (((*x).clamp(0, 255)) >> k) << k,
            SignMode::Inhibitory => -(((-(*x).max(-i32::MAX)).clamp(0, 255) >> k) << k),
        };
    }
}

impl ProcessModel for DenseFixed {
    fn name(&self) -> &str {
        match self.layout {
            Layout::Dense => "PyDenseModelBitAcc",
            Layout::Csr { .. } => "PySparseModelBitAcc",
        }
    }

    fn sends_early(&self) -> bool {
        true
    }

    fn run_spk_early(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        cx.send_var_swap(A_OUT, A_BUFF);
        Ok(())
    }

    fn run_spk(&mut self, cx: &mut Cx<'_>) -> Result<(), NeuroError> {
        if !self.processed {
            let w = cx.var_mut(WEIGHTS).as_i32_mut("weights")?;
            process_weights(w, self.sign_mode, self.num_weight_bits);
            self.processed = true;
            self.built = false;
        }
        let pool = cx.pool();
        if !self.built {
            let c = columns(
                self.layout,
                cx,
                cx.var(WEIGHTS).as_i32("weights")?,
                self.n_out,
            )?;
            self.cols = Blocks::split(c, self.n_out, pool.parts(self.n_out));
            self.built = true;
        }
        match cx.recv_borrow(S_IN, self.s.len()) {
            Some(Data::I32(s)) => compact(s, &mut self.active),
            _ => {
                cx.recv_i32(S_IN, &mut self.s)?;
                compact(&self.s, &mut self.active);
            }
        }
        let e = self.weight_exp;
        let a = cx.var_mut(A_BUFF).as_i32_mut("a_buff")?;
        accumulate(pool, &self.cols, &self.active, a, self.graded, &|a| {
            for x in a.iter_mut() {
                *x = if e > 0 {
                    x.wrapping_shl(e as u32)
                } else {
                    *x >> (-e)
                };
            }
        })
    }

    fn var_set(&mut self, var: VarIx) {
        if var == WEIGHTS {
            self.built = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_processing_follows_models_md() {
        let mut w = vec![5, -5, 300, -300, 0];
        process_weights(&mut w, None, 8);
        assert_eq!(w, vec![4, -6, 254, -256, 0]);
        let mut w = vec![5, 7, 300, 0];
        process_weights(&mut w, None, 8);
        assert_eq!(w, vec![5, 7, 255, 0]);
        let mut w = vec![5, 7, 300, 0];
        process_weights(&mut w, None, 6);
        assert_eq!(w, vec![4, 4, 252, 0]);
        let mut w = vec![-5, -7, -300, 0];
        process_weights(&mut w, None, 6);
        assert_eq!(w, vec![-4, -4, -252, 0]);
        let mut w = vec![5, -5];
        process_weights(&mut w, Some(SignMode::Excitatory), 8);
        assert_eq!(w, vec![5, 0]);
        assert_eq!(infer_sign_mode(&[0, 0]), SignMode::Excitatory);
    }

    #[test]
    fn compact_finds_every_message_that_is_not_zero() {
        // Blocks without a message, a partial last block, and the float edge cases.
        let mut s = vec![0.0; 200];
        for (j, x) in [
            (3, 1.0),
            (63, -2.0),
            (64, f64::NAN),
            (130, 0.5),
            (199, 1e-300),
        ] {
            s[j] = x;
        }
        s[100] = -0.0;
        let mut active = Vec::new();
        compact(&s, &mut active);
        let got: Vec<u32> = active.iter().map(|&(j, _)| j).collect();
        assert_eq!(got, vec![3, 63, 64, 130, 199]);
        assert_eq!(active[1].1, -2.0);
        let mut s = vec![0i32; 70];
        s[69] = -1;
        s[0] = 7;
        let mut active = Vec::new();
        compact(&s, &mut active);
        assert_eq!(active, vec![(0, 7), (69, -1)]);
    }

    #[test]
    fn accumulate_adds_the_columns_of_the_active_neurons_in_order() {
        // Columns of every length around the 16-element prefetch chunks, more active
        // neurons than the prefetch distance, and a repeated one; two row blocks.
        let (n_out, n_in) = (40, 9);
        let w: Vec<i32> = (0..n_out * n_in)
            .map(|k| {
                if (k * 7 + k / n_in) % 3 == 0 {
                    0
                } else {
                    k as i32 % 11 - 5
                }
            })
            .collect();
        let active: Vec<(u32, i32)> = [8, 0, 3, 3, 5, 1, 7].iter().map(|&j| (j, 2)).collect();
        for graded in [false, true] {
            for parts in [1, 2] {
                let blocks = Blocks::split(Columns::build(&w, n_out), n_out, parts);
                let mut a = vec![99; n_out];
                accumulate(
                    Pool::new(None, false),
                    &blocks,
                    &active,
                    &mut a,
                    graded,
                    &|_| {},
                )
                .unwrap();
                let want: Vec<i32> = (0..n_out)
                    .map(|i| {
                        let m = if graded { 2 } else { 1 };
                        active
                            .iter()
                            .map(|&(j, _)| w[i * n_in + j as usize] * m)
                            .sum()
                    })
                    .collect();
                assert_eq!(a, want, "graded {graded}, {parts} parts");
            }
        }
    }

    #[test]
    fn columns_skip_zeros() {
        let c = Columns::build(&[1, 0, 2, 3, 0, 0], 2);
        assert_eq!(c.column(0), (&[0u32, 1][..], &[1, 3][..]));
        assert_eq!(c.column(1), (&[][..], &[][..]));
        assert_eq!(c.column(2), (&[0u32][..], &[2][..]));
    }
}
