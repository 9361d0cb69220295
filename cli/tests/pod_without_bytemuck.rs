//! A user crate with no `bytemuck` dependency of its own (this one has none) derives `Pod`
//! for its uniform and element types through hetflow's re-export.

use hetflow::{Runtime, Uniform};

/// A kernel's parameters, as a WGSL `struct Params { alpha: f32, width: u32 }` padded to 16
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, hetflow::Pod, hetflow::Zeroable)]
#[bytemuck(crate = "hetflow::bytemuck")]
#[repr(C)]
struct Params {
    alpha: f32,
    width: u32,
    _pad: [u32; 2],
}

#[test]
fn a_derived_pod_struct_is_a_uniform_and_an_array_element() {
    let p = Params {
        alpha: 0.25,
        width: 512,
        _pad: [0; 2],
    };
    let u = Uniform(p);
    let bytes = hetflow::bytemuck::bytes_of(&u.0);
    assert_eq!(bytes.len(), 16);
    assert_eq!(bytes[..4], 0.25f32.to_ne_bytes());
    assert_eq!(bytes[4..8], 512u32.to_ne_bytes());

    let rt = Runtime::builder().cpu_workers(1).no_gpu().build().unwrap();
    let a = rt.array_from(vec![p; 3]);
    rt.task("scale")
        .args(a.read_write())
        .cpu(|a| a.iter_mut().for_each(|p| p.alpha *= 2.0))
        .spawn();
    let got = a.to_vec().unwrap();
    assert!(got.iter().all(|q| q.alpha == 0.5 && q.width == 512));
}
