//! Idle workers park: an idle runtime uses (almost) no CPU. Alone in its own test binary so
//! no other test's work is counted.

mod common;

use std::time::Duration;

/// utime + stime of this process, in seconds (from /proc/self/stat).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is parenthesised and may contain spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

#[test]
fn idle_runtime_uses_under_five_percent_of_a_core() {
    let rt = hetflow::Runtime::builder().cpu_workers(2).build().unwrap();
    if rt.gpu_count() == 0 {
        let _ = common::gpu_runtime(); // fails under HETFLOW_REQUIRE_GPU=1
    }
    // Do some work on every device first, so every thread has run and gone idle.
    let hs: Vec<_> = (0..1000)
        .map(|i| rt.task("w").cpu(move |_| i).spawn())
        .collect();
    for h in hs {
        h.wait().unwrap();
    }
    if rt.gpu_count() > 0 {
        rt.task("g").gpu(|_| ()).spawn().wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = process_cpu_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let used = process_cpu_seconds() - before;
    assert!(
        used < 0.05,
        "idle runtime used {:.1}% of a core over one second",
        used * 100.0
    );
    // Still responsive after idling.
    assert_eq!(rt.task("wake").cpu(|_| 7).spawn().wait().unwrap(), 7);
}
