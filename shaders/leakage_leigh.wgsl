// Bidirectional leakage correction per voxel (Leu, Boxerman et al., AJNR 2016; METHODS §3), f32.
// CPU twin: src/models/leakage_leigh.rs (f64). For each k_ep of the grid the regressor
// E_k(t) = ∫₀ᵗR̄(τ)e^(−k_ep(t−τ))dτ, the inverse of its 2×2 normal matrix and ∫E_k over the CBV
// window are computed once on the CPU; each voxel keeps the k_ep whose least-squares fit
// explains most of its curve (the smallest residual; on a tie the smaller k_ep).
//
// Inputs: curves[t * n + v] (ΔR2*), cbv[v], rbar[t], weighted[k * n_t + t] (E_k),
// table[k * 8 + i]: inv00, inv01, inv10, inv11, ∫E_k, k_ep, 0, 0.
// Output: out[v] = K1, out[n + v] = K2, out[2n + v] = k_ep, out[3n + v] = corrected CBV.

struct Params {
    n: u32,
    n_t: u32,
    fit0: u32,
    fit1: u32,
    row_threads: u32,
    n_kep: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> cbv: array<f32>;
@group(0) @binding(3) var<storage, read> rbar: array<f32>;
@group(0) @binding(4) var<storage, read> weighted: array<f32>;
@group(0) @binding(5) var<storage, read> table: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
fn write_nan(v: u32) {
    let nan = nan();
    out[v] = nan;
    out[p.n + v] = nan;
    out[2u * p.n + v] = nan;
    out[3u * p.n + v] = nan;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn leakage_leigh(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    var b1: f32 = 0.0;
    for (var t = p.fit0; t < p.fit1; t++) {
        b1 += rbar[t] * curves[t * p.n + v];
    }
    var best_explained: f32 = 0.0;
    var best_k: u32 = 0u;
    var best_k1: f32 = 0.0;
    var best_k2: f32 = 0.0;
    for (var k = 0u; k < p.n_kep; k++) {
        let e0 = k * p.n_t;
        var b2: f32 = 0.0;
        for (var t = p.fit0; t < p.fit1; t++) {
            b2 -= weighted[e0 + t] * curves[t * p.n + v];
        }
        let k1 = table[k * 8u] * b1 + table[k * 8u + 1u] * b2;
        let k2 = table[k * 8u + 2u] * b1 + table[k * 8u + 3u] * b2;
        let explained = b1 * k1 + b2 * k2;
        if (!finite(k1) || !finite(k2) || !finite(explained)) {
            write_nan(v);
            return;
        }
        if (k == 0u || explained > best_explained) {
            best_explained = explained;
            best_k = k;
            best_k1 = k1;
            best_k2 = k2;
        }
    }
    let c = cbv[v];
    if (p.n_kep == 0u || !finite(c)) {
        write_nan(v);
        return;
    }
    out[v] = best_k1;
    out[p.n + v] = best_k2;
    out[2u * p.n + v] = table[best_k * 8u + 5u];
    out[3u * p.n + v] = c + best_k2 * table[best_k * 8u + 4u];
}
