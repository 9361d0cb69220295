//! A 2-D heat stencil: a square grid cut into strips of rows, each strip a task with a CPU
//! body and a WGSL body, halos as overlapping slices, and a convergence check (the largest
//! change of a step) every 10 steps, verified bit for bit against a plain loop.
//!
//! ```text
//!   grid A (step k)    rows 0 ..................................... n
//!   strip s reads      [r0 - 1,                     r1 + 1)  (its rows and one halo row
//!                                                               above and below)
//!   strip s writes     grid B (step k + 1)  [r0, r1)
//! ```
//! The two grids swap roles every step. The strips' reads overlap (halos); their writes do
//! not, so the strips of one step run in parallel, on whichever device the placement policy
//! picks; the runtime moves each halo where its reader runs.
//!
//! Run: `cargo run --release --example heat -- [SIZE] [STEPS] [TOLERANCE]` (defaults 2048,
//! 100, 0: no early stop). It prints the checks, where the strips ran and the verification.

use std::collections::BTreeMap;
use std::error::Error;
use std::ops::Range;

use hetflow::{Array, DeviceId, Placement, ReduceOp, Runtime, Uniform};

#[path = "support/quiet.rs"]
mod quiet;

/// Steps between two convergence checks.
pub const CHECK_EVERY: usize = 10;
/// Strips of rows (tasks per step).
pub const STRIPS: usize = 16;

// ANCHOR: params
/// The kernel's parameters, `struct Params` in `shaders/heat.wgsl`: `Pod` derived through
/// hetflow's re-export, so no `bytemuck` dependency of our own.
#[derive(Clone, Copy, hetflow::Pod, hetflow::Zeroable)]
#[bytemuck(crate = "hetflow::bytemuck")]
#[repr(C)]
struct Params {
    width: u32,
    height: u32,
    first_row: u32,
    halo_top: u32,
}
// ANCHOR_END: params

/// The initial grid: the top edge at 100, every other cell in [1, 2) (no cell near zero, so
/// no step produces a subnormal number that a GPU might flush).
pub fn initial(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| {
            let (y, x) = (i / n, i % n);
            if y == 0 {
                100.0
            } else {
                1.0 + ((7 * x + 13 * y) % 17) as f32 / 17.0
            }
        })
        .collect()
}

// ANCHOR: cpu_step
/// One step of one strip: `src` holds the strip's rows with their halo rows, `dst` the
/// strip's rows. Returns the largest |change|. The same arithmetic as `relax` in the WGSL.
fn relax_strip(src: &[f32], dst: &mut [f32], p: Params) -> f32 {
    let (w, h) = (p.width as usize, p.height as usize);
    let mut biggest = 0.0f32;
    for (y, out) in dst.chunks_mut(w).enumerate() {
        let row = p.first_row as usize + y;
        let base = (y + p.halo_top as usize) * w;
        for (x, o) in out.iter_mut().enumerate() {
            let i = base + x;
            let c = src[i];
            let mut next = c;
            if row > 0 && row + 1 < h && x > 0 && x + 1 < w {
                let sum = src[i - w] + src[i + w] + src[i + 1] + src[i - 1];
                next = c + 0.25 * (sum - 4.0 * c);
            }
            *o = next;
            biggest = biggest.max((next - c).abs());
        }
    }
    biggest
}
// ANCHOR_END: cpu_step

/// The plain loop: `steps` steps over the whole grid, and the largest change of every
/// `CHECK_EVERY`-th step.
pub fn reference(n: usize, steps: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (initial(n), vec![0.0f32; n * n]);
    let mut checks = Vec::new();
    for step in 1..=steps {
        let mut biggest = 0.0f32;
        for y in 0..n {
            for x in 0..n {
                let i = y * n + x;
                let c = a[i];
                let mut next = c;
                if y > 0 && y + 1 < n && x > 0 && x + 1 < n {
                    next = c + 0.25 * (a[i - n] + a[i + n] + a[i + 1] + a[i - 1] - 4.0 * c);
                }
                b[i] = next;
                biggest = biggest.max((next - c).abs());
            }
        }
        std::mem::swap(&mut a, &mut b);
        if step % CHECK_EVERY == 0 {
            checks.push(biggest);
        }
    }
    (a, checks)
}

/// Where the strip tasks may run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pinning {
    /// Wherever the runtime's placement policy puts them.
    Policy,
    /// Even strips on GPU 0, odd strips on the CPU (halos then cross devices every step).
    Alternate,
}

/// What a run computed and where its strips ran.
pub struct Heat {
    /// The grid after the last step.
    pub grid: Vec<f32>,
    /// The largest change of each checked step.
    pub checks: Vec<f32>,
    /// Steps run (fewer than asked when the tolerance was reached).
    pub steps: usize,
    /// Strip tasks per device ("cpu", "gpu0").
    pub ran_on: BTreeMap<String, usize>,
}

// ANCHOR: strips
/// Strip `s` of `count`: the rows it writes, and the rows it reads (plus a halo row above
/// and below, where the grid has them).
fn strip(n: usize, count: usize, s: usize) -> (Range<usize>, Range<usize>) {
    let rows = n * s / count..n * (s + 1) / count;
    let halo = rows.start.saturating_sub(1)..(rows.end + 1).min(n);
    (rows, halo)
}

/// A strip's rows, and the same rows with their halos.
type Strip = (Array<f32>, Array<f32>);

/// One grid's strips as slices, made once and reused every step: (its rows, with halos).
fn slices(grid: &Array<f32>, n: usize) -> Result<Vec<Strip>, Box<dyn Error>> {
    (0..STRIPS.min(n))
        .map(|s| {
            let (rows, halo) = strip(n, STRIPS.min(n), s);
            let own = grid.slice(rows.start * n..rows.end * n)?;
            let with_halo = grid.slice(halo.start * n..halo.end * n)?;
            Ok((own, with_halo))
        })
        .collect()
}
// ANCHOR_END: strips

/// Runs `steps` steps of the stencil on an `n` × `n` grid (stopping early once a check's
/// largest change is at most `tolerance`).
pub fn solve(
    rt: &Runtime,
    n: usize,
    steps: usize,
    tolerance: f32,
    pinning: Pinning,
) -> Result<Heat, Box<dyn Error>> {
    if n < 3 {
        return Err(format!("the grid needs at least 3 x 3 cells, got {n} x {n}").into());
    }
    let source = include_str!("../shaders/heat.wgsl");
    let (step_k, check_k) = (
        rt.kernel(source, "step")?,
        rt.kernel(source, "step_and_check")?,
    );
    let grids = [
        rt.array_named("A", initial(n)),
        rt.array_named("B", vec![0.0f32; n * n]),
    ];
    let strips = [slices(&grids[0], n)?, slices(&grids[1], n)?];
    let count = strips[0].len();
    let mut handles = Vec::new();
    let mut checks = Vec::new();
    let mut done = 0;
    // ANCHOR: step
    for step in 1..=steps {
        let (src, dst) = (&strips[(step - 1) % 2], &strips[step % 2]);
        // Every CHECK_EVERY-th step reduces into a fresh one-element array; the others
        // declare no reduction at all (an optional argument).
        let change = (step % CHECK_EVERY == 0).then(|| rt.array_from(vec![0u32]));
        for s in 0..count {
            let (rows, halo) = strip(n, count, s);
            let p = Params {
                width: n as u32,
                height: n as u32,
                first_row: rows.start as u32,
                halo_top: (rows.start - halo.start) as u32,
            };
            let (step_k, check_k) = (step_k.clone(), check_k.clone());
            let place = match pinning {
                Pinning::Alternate if s % 2 == 0 => Placement::Gpu(0),
                Pinning::Alternate => Placement::Cpu,
                Pinning::Policy => Placement::Any,
            };
            let task = rt
                .task("heat-strip")
                .args((
                    src[s].1.read(),
                    dst[s].0.write(),
                    change.as_ref().map(|c| c.reduce(ReduceOp::Max)),
                ))
                .on(place)
                .cpu(move |(src, dst, change)| {
                    let biggest = relax_strip(src, dst, p);
                    if let Some(c) = change {
                        // |change| >= 0: its bits order like the floats.
                        c[0] = c[0].max(biggest.to_bits());
                    }
                })
                .gpu(move |cx, (src, dst, change)| {
                    let groups = step_k.groups_for_2d(n, rows.len());
                    match change {
                        Some(c) => cx.dispatch(&check_k, (Uniform(p), src, dst, c), groups),
                        None => cx.dispatch(&step_k, (Uniform(p), src, dst), groups),
                    }
                })
                .spawn();
            handles.push(task);
        }
        done = step;
        if let Some(c) = change {
            let biggest = f32::from_bits(c.to_vec()?[0]);
            checks.push(biggest);
            if biggest <= tolerance {
                break;
            }
        }
    }
    // ANCHOR_END: step
    let mut ran_on = BTreeMap::new();
    for h in handles {
        let task = h.task_ref();
        h.wait()?;
        let device = match task.device() {
            Some(DeviceId::Gpu(i)) => format!("gpu{i}"),
            Some(DeviceId::Cpu) => "cpu".to_string(),
            None => "nowhere".to_string(),
        };
        *ran_on.entry(device).or_insert(0) += 1;
    }
    Ok(Heat {
        grid: grids[done % 2].to_vec()?,
        checks,
        steps: done,
        ran_on,
    })
}

fn arg<T: std::str::FromStr>(i: usize, default: T) -> Result<T, Box<dyn Error>> {
    match std::env::args().nth(i) {
        None => Ok(default),
        Some(a) => a
            .parse()
            .map_err(|_| format!("argument {i} ({a:?}) is not a number").into()),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let _runtime_dir = quiet::PrivateRuntimeDir::install();
    let (n, steps, tolerance) = (arg(1, 2048usize)?, arg(2, 100usize)?, arg(3, 0.0f32)?);
    let rt = Runtime::builder().build()?;
    println!(
        "heat: {n} x {n} grid, {STRIPS} strips, up to {steps} steps, check every {CHECK_EVERY}"
    );
    if rt.gpu_count() == 0 {
        println!("No GPU found: every strip runs on the CPU.");
    }
    let start = std::time::Instant::now();
    let heat = solve(&rt, n, steps, tolerance, Pinning::Policy)?;
    let elapsed = start.elapsed();
    for (i, c) in heat.checks.iter().enumerate() {
        println!("step {:>5}: largest change {c:e}", (i + 1) * CHECK_EVERY);
    }
    println!("{} steps in {:.3} s", heat.steps, elapsed.as_secs_f64());
    for (device, tasks) in &heat.ran_on {
        let name = match device
            .strip_prefix("gpu")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => format!("{device} ({})", rt.topology().gpus[i].name),
            None => device.clone(),
        };
        println!("strips on {name}: {tasks}");
    }
    let (want, want_checks) = reference(n, heat.steps);
    let mismatches = heat
        .grid
        .iter()
        .zip(&want)
        .filter(|(a, b)| a.to_bits() != b.to_bits());
    let mismatches = mismatches.count();
    if mismatches > 0 || heat.checks != want_checks {
        println!("verified: FAILED ({mismatches} cells differ from the plain loop)");
        return Err("result mismatch".into());
    }
    println!("verified: grid and checks bit for bit equal to a plain loop");
    Ok(())
}
