// BSW leakage correction per voxel (Boxerman et al., AJNR 2006; METHODS §3), f32.
// CPU twin: src/models/leakage_bsw.rs (f64). The 2×2 normal matrix's inverse, R̄ and its
// integral are shared by all voxels and computed once on the CPU.
//
// Inputs: curves[t * n + v] (ΔR2*), cbv[v], rbar[t], cumulative[t].
// Output: out[v] = K1, out[n + v] = K2, out[2n + v] = corrected CBV.

struct Params {
    n: u32,
    n_t: u32,
    fit0: u32,
    fit1: u32,
    row_threads: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    inv00: f32,
    inv01: f32,
    inv10: f32,
    inv11: f32,
    cumulative_integral: f32,
    _pad3: f32,
    _pad4: f32,
    _pad5: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> cbv: array<f32>;
@group(0) @binding(3) var<storage, read> rbar: array<f32>;
@group(0) @binding(4) var<storage, read> cumulative: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn leakage_bsw(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    var b1: f32 = 0.0;
    var b2: f32 = 0.0;
    for (var t = p.fit0; t < p.fit1; t++) {
        let y = curves[t * p.n + v];
        b1 += rbar[t] * y;
        b2 -= cumulative[t] * y;
    }
    let k1 = p.inv00 * b1 + p.inv01 * b2;
    let k2 = p.inv10 * b1 + p.inv11 * b2;
    let c = cbv[v];
    if (!finite(k1) || !finite(k2) || !finite(c)) {
        let nan = nan();
        out[v] = nan;
        out[p.n + v] = nan;
        out[2u * p.n + v] = nan;
        return;
    }
    out[v] = k1;
    out[p.n + v] = k2;
    out[2u * p.n + v] = c + k2 * p.cumulative_integral;
}
