//! Tiled dense linear algebra on the runtime: the standard heterogeneous workload.
//!
//! Job: split an f32 matrix into square tiles (each a managed [`crate::Array`]) and express
//! tiled Cholesky (POTRF, TRSM, SYRK, GEMM tile tasks) as tasks whose dependencies come from
//! their tile accesses. POTRF and TRSM run on the CPU (faer); SYRK and GEMM have a faer CPU
//! body and a WGSL GPU body (`shaders/tile_gemm.wgsl`, tiled in workgroup memory), so the
//! placement policy chooses.
//!
//! Invariants: only the lower triangle of tiles is stored and touched; a tile is row-major.

pub(crate) mod tiled;

pub use tiled::{cholesky, cholesky_residual, gemm, spd_matrix, LinalgError, TiledMatrix};
