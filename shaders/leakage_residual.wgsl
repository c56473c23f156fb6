// The normalised residual of a leakage fit per voxel (quality map `leakage_nrmse`):
//   nrmse = sqrt(Σ_{t∈fit} (y(t) − K1·R̄(t) + K2·I_k(t))² / n_fit) / max_{t∈fit} |y(t)|,
// I_k the voxel's integral regressor (BSW: ∫R̄, k = 0; the bidirectional model: its k_ep's
// weighted integral). Definition and sources in the CPU twin's header:
// src/models/leakage_residual.rs (f64). Here f32, the sums over t ascending as there.
//
// Inputs: curves[t * n + v] (ΔR2*), k1[v], k2[v], which[v] (regressor index, as f32),
// rbar[t], integrals[k * n_t + t]. Output: nrmse[v].

struct Params {
    n: u32,
    n_t: u32,
    fit0: u32,
    fit1: u32,
    n_integrals: u32,
    row_threads: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k1: array<f32>;
@group(0) @binding(3) var<storage, read> k2: array<f32>;
@group(0) @binding(4) var<storage, read> which: array<f32>;
@group(0) @binding(5) var<storage, read> rbar: array<f32>;
@group(0) @binding(6) var<storage, read> integrals: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn leakage_residual(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = nan();
    let a = k1[v];
    let b = k2[v];
    let k = u32(max(which[v], 0.0));
    if (!finite(a) || !finite(b) || k >= p.n_integrals) {
        out[v] = nan;
        return;
    }
    var sse = 0.0;
    var peak = 0.0;
    for (var t = p.fit0; t < p.fit1; t++) {
        let y = curves[t * p.n + v];
        let e = y - a * rbar[t] + b * integrals[k * p.n_t + t];
        sse += e * e;
        peak = max(peak, abs(y));
    }
    if (!finite(sse) || !(peak > 0.0)) {
        out[v] = nan;
        return;
    }
    out[v] = sqrt(sse / f32(p.fit1 - p.fit0)) / peak;
}
