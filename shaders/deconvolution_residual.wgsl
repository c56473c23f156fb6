// The normalised residual of an SVD deconvolution per voxel (quality map `deconvolution_nrmse`):
//   nrmse = sqrt(Σ_{k<L} (1 − g_k)² p_k² / N) / max_t |c(t)|,
// p_k = u_k · c (the projection of the tissue curve on the AIF matrix's k-th left singular
// vector), g_k = σ_k w_k for the components the voxel's deconvolution used (k < components[v]),
// 0 past them. The definition and its source are in the CPU twin's header:
// src/models/deconvolution_residual.rs (f64). Here f32, with the same sums in the same order
// (p_k over t ascending, the squares over k ascending); the sum has no cancellation, so the two
// agree to f32 rounding.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v], cumulative[t]: the tissue concentration is
// curves + K2·cumulative, zero before frame `first` (as `shaders/deconvolution.wgsl` reads it);
// u[k * n_t + t] the left singular vectors' first N samples (k < L); gain[k] = σ_k w_k;
// components[v] from the deconvolution's fourth output plane. Output: nrmse[v].

struct Params {
    n: u32,
    n_t: u32,
    l: u32,
    first: u32,
    row_threads: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k2: array<f32>;
@group(0) @binding(3) var<storage, read> cumulative: array<f32>;
@group(0) @binding(4) var<storage, read> u: array<f32>;
@group(0) @binding(5) var<storage, read> gain: array<f32>;
@group(0) @binding(6) var<storage, read> components: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

fn tissue(v: u32, kk: f32, t: u32) -> f32 {
    return select(curves[t * p.n + v], 0.0, t < p.first) + kk * cumulative[t];
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn deconvolution_residual(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = nan();
    var kk = k2[v];
    if (!finite(kk)) { kk = 0.0; }
    var peak = 0.0;
    for (var t = 0u; t < p.n_t; t++) {
        let c = tissue(v, kk, t);
        if (!finite(c)) {
            out[v] = nan;
            return;
        }
        peak = max(peak, abs(c));
    }
    if (!(peak > 0.0)) {
        out[v] = nan;
        return;
    }
    let used = u32(max(components[v], 0.0));
    var sse = 0.0;
    for (var k = 0u; k < p.l; k++) {
        var proj = 0.0;
        for (var t = 0u; t < p.n_t; t++) {
            proj = fma(u[k * p.n_t + t], tissue(v, kk, t), proj);
        }
        let e = 1.0 - select(0.0, gain[k], k < used);
        sse += e * e * proj * proj;
    }
    out[v] = sqrt(sse / f32(p.n_t)) / peak;
}
