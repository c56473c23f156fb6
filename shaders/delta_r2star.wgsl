// ΔR2*(t) and first-pass metrics per voxel (METHODS §3), f32.
// CPU twin: src/models/delta_r2star.rs (f64). Same inputs, windows and invalid-voxel rule.
//
// Inputs: s1[t * n + v] (echo 1), s2[t * n + v] (echo 2; unused for a single echo).
// Output: out[t * n + v] = ΔR2*(t) for t < n_t, then out[(n_t + k) * n + v] = metric k:
// s0, cbv, ttp_s, peak, psr, baseline_sd, late_mean.

struct Params {
    n: u32,
    n_t: u32,
    dual: u32,
    row_threads: u32,
    base0: u32,
    base1: u32,
    bolus0: u32,
    bolus1: u32,
    int0: u32,
    int1: u32,
    late0: u32,
    late1: u32,
    te1: f32,
    te2: f32,
    dt: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s1: array<f32>;
@group(0) @binding(2) var<storage, read> s2: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn sig1(t: u32, v: u32) -> f32 { return s1[t * p.n + v]; }
fn sig2(t: u32, v: u32) -> f32 { return s2[t * p.n + v]; }
fn curve(t: u32, v: u32) -> f32 { return out[t * p.n + v]; }
fn metric(k: u32, v: u32, x: f32) { out[(p.n_t + k) * p.n + v] = x; }

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn delta_r2star(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = nan();
    var valid = true;
    for (var t = 0u; t < p.n_t; t++) {
        let a = sig1(t, v);
        if (!(a > 0.0) || !finite(a)) { valid = false; }
        if (p.dual == 1u) {
            let b = sig2(t, v);
            if (!(b > 0.0) || !finite(b)) { valid = false; }
        }
    }
    if (!valid) {
        for (var t = 0u; t < p.n_t + 7u; t++) {
            out[t * p.n + v] = nan;
        }
        return;
    }
    let nb = f32(p.base1 - p.base0);
    var s0: f32 = 0.0;
    var s0b: f32 = 0.0;
    for (var t = p.base0; t < p.base1; t++) {
        s0 += sig1(t, v);
        if (p.dual == 1u) { s0b += sig2(t, v); }
    }
    s0 = s0 / nb;
    s0b = s0b / nb;
    for (var t = 0u; t < p.n_t; t++) {
        var r: f32;
        if (p.dual == 1u) {
            r = log((sig1(t, v) / s0) / (sig2(t, v) / s0b)) / (p.te2 - p.te1);
        } else {
            r = -log(sig1(t, v) / s0) / p.te1;
        }
        out[t * p.n + v] = r;
    }
    var mean_b: f32 = 0.0;
    for (var t = p.base0; t < p.base1; t++) { mean_b += curve(t, v); }
    mean_b = mean_b / nb;
    var var_b: f32 = 0.0;
    for (var t = p.base0; t < p.base1; t++) {
        let d = curve(t, v) - mean_b;
        var_b += d * d;
    }
    let baseline_sd = sqrt(var_b / nb);
    var cbv: f32 = 0.0;
    for (var t = p.int0; t + 1u < p.int1; t++) {
        cbv += 0.5 * (curve(t, v) + curve(t + 1u, v));
    }
    cbv = cbv * p.dt;
    var peak_t = p.bolus0;
    var s_min: f32 = 3.4e38;
    for (var t = p.bolus0; t < p.bolus1; t++) {
        if (curve(t, v) > curve(peak_t, v)) { peak_t = t; }
        s_min = min(s_min, sig1(t, v));
    }
    let nl = f32(p.late1 - p.late0);
    var s_post: f32 = 0.0;
    var late_mean: f32 = 0.0;
    for (var t = p.late0; t < p.late1; t++) {
        s_post += sig1(t, v);
        late_mean += curve(t, v);
    }
    s_post = s_post / nl;
    late_mean = late_mean / nl;
    metric(0u, v, s0);
    metric(1u, v, cbv);
    metric(2u, v, f32(peak_t) * p.dt);
    metric(3u, v, curve(peak_t, v));
    var psr = nan;
    if (s0 - s_min > 0.0) { psr = 100.0 * (s_post - s_min) / (s0 - s_min); }
    metric(4u, v, psr);
    metric(5u, v, baseline_sd);
    metric(6u, v, late_mean);
}
