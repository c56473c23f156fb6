// Linearised gamma-variate fit of the first pass per voxel (METHODS §3 option), f32.
// CPU twin: src/models/gamma_variate.rs (f64): same window, weights, ln Γ series.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v], cumulative[t] (∫R̄): the fitted curve is the
// leakage-corrected ΔR2* + K2·cumulative. Output: [A | alpha | beta | CBV], planar.

struct Params {
    n: u32,
    start: u32,
    end: u32,
    t0_frame: u32,
    row_threads: u32,
    _pad0: u32,
    dt: f32,
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k2: array<f32>;
@group(0) @binding(3) var<storage, read> cumulative: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn ln_gamma(x_in: f32) -> f32 {
    var x = x_in;
    var shift: f32 = 0.0;
    while (x < 8.0) {
        shift -= log(x);
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    return shift + (x - 0.5) * log(x) - x + 0.9189385332 + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
}

fn conc(t: u32, v: u32, k: f32) -> f32 {
    return curves[t * p.n + v] + k * cumulative[t];
}

fn write(v: u32, a: f32, alpha: f32, beta: f32, cbv: f32) {
    out[v] = a;
    out[p.n + v] = alpha;
    out[2u * p.n + v] = beta;
    out[3u * p.n + v] = cbv;
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn gamma_variate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = nan();
    var k = k2[v];
    if (!finite(k)) { k = 0.0; }
    var cmax: f32 = 0.0;
    for (var t = p.start; t < p.end; t++) {
        cmax = max(cmax, conc(t, v, k));
    }
    if (!(cmax > 0.0) || !finite(cmax)) {
        write(v, nan, nan, nan, nan);
        return;
    }
    // Centred weighted regression of ln C on (ln tau, tau): two passes, then a 2x2 solve.
    var sw: f32 = 0.0;
    var s1: f32 = 0.0;
    var s2: f32 = 0.0;
    var sy: f32 = 0.0;
    var used = 0u;
    for (var t = p.start; t < p.end; t++) {
        let c = conc(t, v, k);
        if (!(c > 0.0)) { continue; }
        let tau = (f32(t) - f32(p.t0_frame)) * p.dt;
        let q = c / cmax;
        let w = q * q;
        sw += w;
        s1 += w * log(tau);
        s2 += w * tau;
        sy += w * log(c);
        used += 1u;
    }
    if (used < 3u) {
        write(v, nan, nan, nan, nan);
        return;
    }
    let m1 = s1 / sw;
    let m2 = s2 / sw;
    let my = sy / sw;
    var a11: f32 = 0.0;
    var a12: f32 = 0.0;
    var a22: f32 = 0.0;
    var b1: f32 = 0.0;
    var b2: f32 = 0.0;
    for (var t = p.start; t < p.end; t++) {
        let c = conc(t, v, k);
        if (!(c > 0.0)) { continue; }
        let tau = (f32(t) - f32(p.t0_frame)) * p.dt;
        let q = c / cmax;
        let w = q * q;
        let d1 = log(tau) - m1;
        let d2 = tau - m2;
        let dy = log(c) - my;
        a11 += w * d1 * d1;
        a12 += w * d1 * d2;
        a22 += w * d2 * d2;
        b1 += w * d1 * dy;
        b2 += w * d2 * dy;
    }
    let det = a11 * a22 - a12 * a12;
    if (!(det > 0.0)) {
        write(v, nan, nan, nan, nan);
        return;
    }
    let alpha = (a22 * b1 - a12 * b2) / det;
    let slope = (a11 * b2 - a12 * b1) / det;
    let ln_a = my - alpha * m1 - slope * m2;
    if (!(slope < 0.0) || !(alpha > -1.0)) {
        write(v, nan, nan, nan, nan);
        return;
    }
    let beta = -1.0 / slope;
    let cbv = exp(ln_a + (alpha + 1.0) * log(beta) + ln_gamma(alpha + 1.0));
    if (!finite(cbv)) {
        write(v, nan, nan, nan, nan);
        return;
    }
    write(v, exp(ln_a), alpha, beta, cbv);
}
