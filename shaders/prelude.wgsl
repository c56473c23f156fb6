// The prelude every kernel is compiled with (src/gpu/wgsl.rs puts it, after the constants the
// Rust side owns, in front of each kernel's own file): what every kernel needs, written once.
// CPU twin: src/models/prelude.rs.

// A quiet NaN: what a voxel that cannot be fitted gets (bit pattern 0x7fc00000, IEEE 754).
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// f32 has no isFinite in WGSL: an exponent of all ones is an infinity or a NaN.
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Threads per workgroup: set when the pipeline is compiled (the context's size, 64 by default
// or what `paramap bench --tune` measured fastest on the adapter).
override WORKGROUP_SIZE: u32 = 64u;
