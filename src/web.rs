//! hetflow in the browser (wasm32, WebGPU).
//!
//! The same engine as on native targets — task graph, scheduler, coherence tracker, counters,
//! failure rules, typed errors — with the two things a page cannot do replaced:
//!
//! - **No threads.** CPU task bodies run on the page's one thread, queued to a pump on its
//!   event loop (`sched/cpu_web.rs`); the GPU driver's loop is the same async function as on
//!   native targets, spawned on the event loop instead of a thread (`sched/gpu.rs`).
//! - **No blocking.** Nothing waits synchronously: [`crate::TaskHandle`] is a `Future`,
//!   [`crate::Array::to_vec_async`], [`crate::RuntimeHandle::idle`] and
//!   [`crate::RuntimeBuilder::build_async`] are awaited, and the blocking `wait`, `to_vec`,
//!   `wait_idle` do not exist on wasm32 (a compile-time error, not a hang). WebGPU resolves
//!   error scopes and buffer mappings through the event loop, so the driver awaits them and
//!   the CPU pump fetches a task's GPU inputs before running it.
//!
//! Neural networks (`neuro`) run with `Process::run_async` and are read with
//! `Monitor::data_async` / `Var::get_async`: the run loop is the same async code as natively,
//! its GPU waits awaited here; CPU processes run one after another on the page's thread.
//!
//! Absent on wasm32: memory slots and MPI (`comm`), the distributed runtime (`dist`), remote
//! buffers (`remote`), non-blocking neural runs, tiled linear algebra (`linalg`, faer's
//! kernels) and performance-model files. A task body that panics aborts the page's module
//! (wasm32 has no unwinding).
//!
//! ```ignore
//! // In a wasm-bindgen entry point:
//! let rt = hetflow::Runtime::builder().build_async().await?;
//! let x = rt.array_from(vec![1.0f32; 1024]);
//! rt.task("double").args(x.read_write()).cpu(|x| x.iter_mut().for_each(|v| *v *= 2.0)).spawn().await?;
//! assert_eq!(x.to_vec_async().await?[0], 2.0);
//! ```

use wasm_bindgen::JsCast;

/// Finds the browser's WebGPU adapter and opens it (once per page); returns how many GPUs
/// runtimes built afterwards can use (0 when the page has no WebGPU: tasks then run on the
/// CPU). [`crate::RuntimeBuilder::build_async`] calls it.
pub async fn init() -> usize {
    crate::device::gpu::discover_once().await.len()
}

/// Lets the page's event loop run (a zero-delay timer), so WebGPU callbacks and the page stay
/// live while a long graph runs on its one thread.
pub(crate) async fn yield_to_event_loop() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let timer = js_sys::Reflect::get(&global, &"setTimeout".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        let scheduled = timer.is_some_and(|f| f.call2(&global, &resolve, &0.into()).is_ok());
        if !scheduled {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
