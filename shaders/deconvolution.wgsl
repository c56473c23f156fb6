// Deconvolution per voxel (METHODS §4): projection onto the AIF's singular vectors and, for
// oSVD, the per-voxel truncation search by Wu's oscillation index. f32.
// CPU twin: src/models/deconvolution.rs (f64): same components, weights, order and search.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v], cumulative[t]: the tissue concentration is
// curves + K2·cumulative (leakage-corrected), with the curve zero before frame `first`; u[k * l + i], vv[k * l + i] (singular vectors,
// largest σ first), weights[k]. Output: [peak | argmax | oi | components], planar.

const MAX_L: u32 = 512u;

struct Params {
    n: u32,
    n_t: u32,
    l: u32,
    k_max: u32,
    osvd: u32,
    row_threads: u32,
    oi_target: f32,
    first: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k2: array<f32>;
@group(0) @binding(3) var<storage, read> cumulative: array<f32>;
@group(0) @binding(4) var<storage, read> u: array<f32>;
@group(0) @binding(5) var<storage, read> vv: array<f32>;
@group(0) @binding(6) var<storage, read> weights: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

alias Curve = array<f32, MAX_L>;

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// β_k = w_k (u_k · c); the tissue curve is zero past its N samples.
fn beta(k: u32, c: ptr<function, Curve>) -> f32 {
    var s: f32 = 0.0;
    for (var i = 0u; i < p.n_t; i++) {
        s += u[k * p.l + i] * (*c)[i];
    }
    return weights[k] * s;
}

// f += β_k v_k
fn add_component(k: u32, c: ptr<function, Curve>, f: ptr<function, Curve>) {
    let b = beta(k, c);
    for (var i = 0u; i < p.l; i++) {
        (*f)[i] += b * vv[k * p.l + i];
    }
}

// f += β_k v_k in one pass that also returns the oscillation index of the new f (as
// oscillation_index computes it), like the CPU twin's search.
fn add_component_oi(k: u32, c: ptr<function, Curve>, f: ptr<function, Curve>) -> f32 {
    let b = beta(k, c);
    let f0 = (*f)[0] + b * vv[k * p.l];
    var prev = (*f)[1] + b * vv[k * p.l + 1u];
    (*f)[0] = f0;
    (*f)[1] = prev;
    var fmax = max(f0, prev);
    // Each second difference is the change of the first difference.
    var d1 = prev - f0;
    var s: f32 = 0.0;
    for (var i = 2u; i < p.l; i++) {
        let x = (*f)[i] + b * vv[k * p.l + i];
        (*f)[i] = x;
        fmax = max(fmax, x);
        let step = x - prev;
        s += abs(step - d1);
        d1 = step;
        prev = x;
    }
    if (!(fmax > 0.0)) { return bitcast<f32>(0x7f7fffffu); }
    return s / f32(p.l) / fmax;
}

fn oscillation_index(f: ptr<function, Curve>) -> f32 {
    var fmax: f32 = -3.4e38;
    for (var i = 0u; i < p.l; i++) { fmax = max(fmax, (*f)[i]); }
    if (!(fmax > 0.0)) { return bitcast<f32>(0x7f7fffffu); }
    var s: f32 = 0.0;
    for (var i = 2u; i < p.l; i++) {
        s += abs((*f)[i] - 2.0 * (*f)[i - 1u] + (*f)[i - 2u]);
    }
    return s / f32(p.l) / fmax;
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn deconvolution(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    var c: Curve;
    var f: Curve;
    var kk = k2[v];
    if (!finite(kk)) { kk = 0.0; }
    for (var i = 0u; i < p.l; i++) {
        c[i] = 0.0;
        f[i] = 0.0;
    }
    for (var t = 0u; t < p.n_t; t++) {
        let x = select(curves[t * p.n + v], 0.0, t < p.first) + kk * cumulative[t];
        if (!finite(x)) {
            let nan = bitcast<f32>(0x7fc00000u);
            out[v] = nan;
            out[p.n + v] = 0.0;
            out[2u * p.n + v] = nan;
            out[3u * p.n + v] = 0.0;
            return;
        }
        c[t] = x;
    }
    var used = p.k_max;
    if (p.osvd == 1u) {
        // Keep a copy of the residue with the most components whose OI meets the target.
        var best = 1u;
        var kept: Curve;
        for (var k = 0u; k < p.k_max; k++) {
            let oi = add_component_oi(k, &c, &f);
            if (k == 0u || oi <= p.oi_target) {
                if (k > 0u) { best = k + 1u; }
                for (var i = 0u; i < p.l; i++) { kept[i] = f[i]; }
            }
        }
        for (var i = 0u; i < p.l; i++) { f[i] = kept[i]; }
        used = best;
    } else {
        for (var k = 0u; k < p.k_max; k++) { add_component(k, &c, &f); }
    }
    var peak: f32 = -3.4e38;
    var arg = 0u;
    for (var i = 0u; i < p.l; i++) {
        if (f[i] > peak) {
            peak = f[i];
            arg = i;
        }
    }
    out[v] = peak;
    out[p.n + v] = f32(arg);
    out[2u * p.n + v] = oscillation_index(&f);
    out[3u * p.n + v] = f32(used);
}
