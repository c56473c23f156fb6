// Model-based deconvolution with leakage in the residue domain, per voxel, f32.
// CPU twin: src/models/residue_fit.rs (f64), which derives the model: C(t) = F·(Ca ⊗ e^(−t/MTT))
// (t − δ) − K2·G(t), G = ∫Ca (Mouridsen et al. 2006; Bjørnerud et al. 2011). The dictionary is
// built once on the CPU: per atom (MTT a, delay b) the unit-flow curve with its G component
// removed and scaled to unit length (basis), its norm before scaling (qnorm) and h·G (hg).
// Same search, same order, same refinement as the twin.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v] and cumulative_in[t] (a correction applied before:
// the tissue is curves + k2·cumulative_in, zero before frame `first`), basis[k * n_t + t],
// qnorm[k], hg[k], g[t], mtt[a].
// Output: [flow | mtt | delay | k2 | nrmse], planar.

struct Params {
    n: u32,
    n_t: u32,
    n_mtt: u32,
    n_delay: u32,
    coarse: u32,
    first: u32,
    row_threads: u32,
    _pad0: u32,
    gg: f32,
    delay0: f32,
    delay_step: f32,
    log_step: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k2_in: array<f32>;
@group(0) @binding(3) var<storage, read> cumulative_in: array<f32>;
@group(0) @binding(4) var<storage, read> basis: array<f32>;
@group(0) @binding(5) var<storage, read> qnorm: array<f32>;
@group(0) @binding(6) var<storage, read> hg: array<f32>;
@group(0) @binding(7) var<storage, read> g: array<f32>;
@group(0) @binding(8) var<storage, read> mtt: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// The tissue concentration of voxel v at frame t.
fn tissue(v: u32, t: u32, k: f32) -> f32 {
    if (t < p.first) {
        return 0.0;
    }
    return curves[t * p.n + v] + k * cumulative_in[t];
}

// q̂_k · c.
fn projection(v: u32, k: f32, atom: u32) -> f32 {
    var s: f32 = 0.0;
    let base = atom * p.n_t;
    for (var t = 0u; t < p.n_t; t++) {
        s += basis[base + t] * tissue(v, t, k);
    }
    return s;
}

fn reduction(x: f32) -> f32 {
    return x * abs(x);
}

// (F, K) of atom k for projection q: F = q/|q_k|, K = (G·c − F·hg_k)/G·G.
fn coefficients(atom: u32, q: f32, gc: f32) -> vec2<f32> {
    let f = q / qnorm[atom];
    return vec2<f32>(f, (gc - f * hg[atom]) / p.gg);
}

struct Along {
    offset: f32,
    df: f32,
    dk: f32,
}

// The parabola through the neighbours' reductions: offset of the optimum and the quadratic
// change of F and K there.
fn along(v: u32, k: f32, gc: f32, centre: u32, q0: f32, c0: vec2<f32>, lo: u32, hi: u32) -> Along {
    let ql = projection(v, k, lo);
    let qh = projection(v, k, hi);
    let sl = reduction(ql);
    let s0 = reduction(q0);
    let sh = reduction(qh);
    let curv = sl - 2.0 * s0 + sh;
    var off: f32 = 0.0;
    if (curv < 0.0) {
        off = clamp(0.5 * (sl - sh) / curv, -0.5, 0.5);
    }
    let cl = coefficients(lo, ql, gc);
    let ch = coefficients(hi, qh, gc);
    let d = off * 0.5 * (ch - cl) + off * off * 0.5 * (ch - 2.0 * c0 + cl);
    return Along(off, d.x, d.y);
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn residue_fit(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = bitcast<f32>(0x7fc00000u);
    var k = k2_in[v];
    if (!finite(k)) {
        k = 0.0;
    }
    var gc: f32 = 0.0;
    var peak: f32 = 0.0;
    var ok = true;
    for (var t = 0u; t < p.n_t; t++) {
        let c = tissue(v, t, k);
        ok = ok && finite(c);
        gc += g[t] * c;
        peak = max(peak, abs(c));
    }
    let n = p.n;
    if (!ok) {
        for (var r = 0u; r < 5u; r++) {
            out[r * n + v] = nan;
        }
        return;
    }
    if (!(peak > 0.0)) {
        out[v] = 0.0;
        out[n + v] = nan;
        out[2u * n + v] = nan;
        out[3u * n + v] = 0.0;
        out[4u * n + v] = 0.0;
        return;
    }
    // Coarse grid, then the full grid around its best; ties keep the first.
    var ba = 0u;
    var bb = 0u;
    var best = -3.4028235e38;
    for (var a = 0u; a < p.n_mtt; a += p.coarse) {
        for (var b = 0u; b < p.n_delay; b += p.coarse) {
            let s = projection(v, k, a * p.n_delay + b);
            if (s > best) {
                best = s;
                ba = a;
                bb = b;
            }
        }
    }
    let ca = ba;
    let cb = bb;
    let a0 = select(0u, ca - (p.coarse - 1u), ca >= p.coarse - 1u);
    let b0 = select(0u, cb - (p.coarse - 1u), cb >= p.coarse - 1u);
    for (var a = a0; a < min(ca + p.coarse, p.n_mtt); a++) {
        for (var b = b0; b < min(cb + p.coarse, p.n_delay); b++) {
            let s = projection(v, k, a * p.n_delay + b);
            if (s > best) {
                best = s;
                ba = a;
                bb = b;
            }
        }
    }
    let k0 = ba * p.n_delay + bb;
    let c0 = coefficients(k0, best, gc);
    var ra = Along(0.0, 0.0, 0.0);
    if (ba > 0u && ba + 1u < p.n_mtt) {
        ra = along(v, k, gc, k0, best, c0, k0 - p.n_delay, k0 + p.n_delay);
    }
    var rb = Along(0.0, 0.0, 0.0);
    if (bb > 0u && bb + 1u < p.n_delay) {
        rb = along(v, k, gc, k0, best, c0, k0 - 1u, k0 + 1u);
    }
    // The residual of the grid optimum: c − q·q̂ − (G·c/G·G)·G.
    var sse: f32 = 0.0;
    for (var t = 0u; t < p.n_t; t++) {
        let r = tissue(v, t, k) - best * basis[k0 * p.n_t + t] - gc / p.gg * g[t];
        sse += r * r;
    }
    out[v] = c0.x + ra.df + rb.df;
    out[n + v] = mtt[ba] * exp(ra.offset * p.log_step);
    out[2u * n + v] = p.delay0 + (f32(bb) + rb.offset) * p.delay_step;
    out[3u * n + v] = -(c0.y + ra.dk + rb.dk);
    out[4u * n + v] = sqrt(sse / f32(p.n_t)) / peak;
}
