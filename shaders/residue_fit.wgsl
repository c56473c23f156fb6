// Model-based deconvolution with leakage in the residue domain, per voxel, f32.
// CPU twin: src/models/residue_fit/mod.rs (f64), which derives the model: C(t) = F·(Ca ⊗ e^(−t/MTT))
// (t − δ) − K2·G(t), G = ∫Ca (Mouridsen et al. 2006; Bjørnerud et al. 2011). The dictionary is
// built once on the CPU: per atom (MTT a, delay b) the unit-flow curve with its G component
// removed and scaled to unit length (basis), its norm before scaling (qnorm) and h·G (hg).
// Same search, same order, same refinement as the twin.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v] and cumulative_in[t] (a correction applied before:
// the tissue is curves + k2·cumulative_in, zero before frame `first`); atoms: three blocks of
// K·n_t (K = n_mtt·n_delay atoms): basis q̂, q̂ minus the next MTT's, q̂ minus the next
// delay's; table: qnorm[K], hg[K], mtt[n_mtt], g[n_t], the prior's cost per MTT penalty[n_mtt]. (Packed so that the kernel binds six
// storage buffers, within every adapter's limit of eight.)
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
    // Noise frames [noise0, noise1) when `weighted` (the MAP fit with the prior on MTT).
    noise0: u32,
    noise1: u32,
    weighted: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> curves: array<f32>;
@group(0) @binding(2) var<storage, read> k2_in: array<f32>;
@group(0) @binding(3) var<storage, read> cumulative_in: array<f32>;
@group(0) @binding(4) var<storage, read> atoms: array<f32>;
@group(0) @binding(5) var<storage, read> table: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn atom_count() -> u32 {
    return p.n_mtt * p.n_delay;
}

fn qnorm(k: u32) -> f32 {
    return table[k];
}

fn hg(k: u32) -> f32 {
    return table[atom_count() + k];
}

fn mtt(a: u32) -> f32 {
    return table[2u * atom_count() + a];
}

fn g(t: u32) -> f32 {
    return table[2u * atom_count() + p.n_mtt + t];
}

fn penalty(a: u32) -> f32 {
    return table[2u * atom_count() + p.n_mtt + p.n_t + a];
}

// The weighted score of projection q on MTT index a, less the prior's cost (as the twin's
// `score`).
fn score(w: f32, a: u32, q: f32) -> f32 {
    return w * q * abs(q) - penalty(a);
}

// MAX_T, the frames a thread holds (the host runs longer series on the CPU twin), is
// `gpu::dsc::MAX_RESIDUE_FIT_T`, written in front of this file by src/gpu/wgsl.rs.

// This thread's tissue curve, read once: every projection reads it again.
var<private> curve: array<f32, MAX_T>;

// The tissue concentration of voxel v at frame t.
fn tissue(v: u32, t: u32, k: f32) -> f32 {
    if (t < p.first) {
        return 0.0;
    }
    return curves[t * p.n + v] + k * cumulative_in[t];
}

// c · row `atom` of block `block` (0: q̂, 1: q̂ − next MTT's, 2: q̂ − next delay's).
fn projection_in(v: u32, k: f32, block: u32, atom: u32) -> f32 {
    var s: f32 = 0.0;
    let base = (block * atom_count() + atom) * p.n_t;
    for (var t = 0u; t < p.n_t; t++) {
        s += atoms[base + t] * curve[t];
    }
    return s;
}

// q̂_k · c.
fn projection(v: u32, k: f32, atom: u32) -> f32 {
    return projection_in(v, k, 0u, atom);
}

// q̂ · c of four atoms in one pass over the curve, each summed in order as `projection` sums
// it (the same values): four independent sums instead of one chain.
fn projection4(atom: vec4<u32>) -> vec4<f32> {
    var s = vec4<f32>(0.0);
    let base = atom * p.n_t;
    for (var t = 0u; t < p.n_t; t++) {
        let q = vec4<f32>(atoms[base.x + t], atoms[base.y + t], atoms[base.z + t], atoms[base.w + t]);
        s += q * curve[t];
    }
    return s;
}

struct Best {
    a: u32,
    b: u32,
    score: f32,
    q: f32,
}

// Row `a` of the grid at delays b0, b0 + step, … below `end`, four at a time; ties keep the
// first.
fn scan_row(w: f32, a: u32, b0: u32, end: u32, step: u32, best_in: Best) -> Best {
    var best = best_in;
    for (var b = b0; b < end; b += 4u * step) {
        var idx = vec4<u32>(b, b + step, b + 2u * step, b + 3u * step);
        let valid = idx < vec4<u32>(end);
        // An index past the row is computed on the row's first atom and not compared.
        idx = select(vec4<u32>(b), idx, valid);
        let s = projection4(a * p.n_delay + idx);
        for (var j = 0u; j < 4u; j++) {
            let sc = score(w, a, s[j]);
            if (valid[j] && sc > best.score) {
                best = Best(a, idx[j], sc, s[j]);
            }
        }
    }
    return best;
}

// (F, K) of atom k for projection q: F = q/|q_k|, K = (G·c − F·hg_k)/G·G.
fn coefficients(atom: u32, q: f32, gc: f32) -> vec2<f32> {
    let f = q / qnorm(atom);
    return vec2<f32>(f, (gc - f * hg(atom)) / p.gg);
}

struct Along {
    offset: f32,
    df: f32,
    dk: f32,
}

// The parabola through the centre's and its neighbours' reductions, the neighbours' given as
// d = c·(q̂₀ − q̂ₙ) (a reduction d·(2q₀ − d) below the centre's): the optimum's offset and the
// quadratic change of F and K there.
fn along(w: f32, gc: f32, q0: f32, c0: vec2<f32>, lo: u32, dl: f32, pl: f32, hi: u32, dh: f32, ph: f32) -> Along {
    if (!(q0 > 0.0 && q0 - dl > 0.0 && q0 - dh > 0.0)) {
        return Along(0.0, 0.0, 0.0);
    }
    let drop_l = w * dl * (2.0 * q0 - dl) + pl;
    let drop_h = w * dh * (2.0 * q0 - dh) + ph;
    let curv = -drop_l - drop_h;
    var off: f32 = 0.0;
    if (curv < 0.0) {
        off = clamp(0.5 * (drop_h - drop_l) / curv, -0.5, 0.5);
    }
    let cl = coefficients(lo, q0 - dl, gc);
    let ch = coefficients(hi, q0 - dh, gc);
    let d = off * 0.5 * (ch - cl) + off * off * 0.5 * (ch - 2.0 * c0 + cl);
    return Along(off, d.x, d.y);
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn residue_fit(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    let nan = nan();
    var k = k2_in[v];
    if (!finite(k)) {
        k = 0.0;
    }
    var gc: f32 = 0.0;
    var peak: f32 = 0.0;
    var ok = true;
    for (var t = 0u; t < p.n_t; t++) {
        let c = tissue(v, t, k);
        curve[t] = c;
        ok = ok && finite(c);
        gc += g(t) * c;
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
    // The weight 1/σ² from the noise frames' spread (floored at 1e-12 of the squared peak), as
    // the twin's `weight`.
    var w: f32 = 1.0;
    if (p.weighted != 0u) {
        var mean: f32 = 0.0;
        for (var t = p.noise0; t < p.noise1; t++) {
            mean += curve[t];
        }
        mean /= f32(p.noise1 - p.noise0);
        var var_: f32 = 0.0;
        for (var t = p.noise0; t < p.noise1; t++) {
            var_ += (curve[t] - mean) * (curve[t] - mean);
        }
        var_ /= f32(p.noise1 - p.noise0);
        w = 1.0 / max(max(var_, 1e-12 * peak * peak), 1e-30);
    }
    // Coarse grid, then the full grid around its best; ties keep the first.
    var found = Best(0u, 0u, -3.4028235e38, 0.0);
    for (var a = 0u; a < p.n_mtt; a += p.coarse) {
        found = scan_row(w, a, 0u, p.n_delay, p.coarse, found);
    }
    let ca = found.a;
    let cb = found.b;
    let a0 = select(0u, ca - (p.coarse - 1u), ca >= p.coarse - 1u);
    let b0 = select(0u, cb - (p.coarse - 1u), cb >= p.coarse - 1u);
    for (var a = a0; a < min(ca + p.coarse, p.n_mtt); a++) {
        found = scan_row(w, a, b0, min(cb + p.coarse, p.n_delay), 1u, found);
    }
    let ba = found.a;
    let bb = found.b;
    let best = found.q;
    let k0 = ba * p.n_delay + bb;
    let c0 = coefficients(k0, best, gc);
    var ra = Along(0.0, 0.0, 0.0);
    if (ba > 0u && ba + 1u < p.n_mtt) {
        let lo = k0 - p.n_delay;
        let hi = k0 + p.n_delay;
        ra = along(w, gc, best, c0, lo, -projection_in(v, k, 1u, lo), penalty(ba - 1u) - penalty(ba), hi, projection_in(v, k, 1u, k0), penalty(ba + 1u) - penalty(ba));
    }
    var rb = Along(0.0, 0.0, 0.0);
    if (bb > 0u && bb + 1u < p.n_delay) {
        let lo = k0 - 1u;
        let hi = k0 + 1u;
        rb = along(w, gc, best, c0, lo, -projection_in(v, k, 2u, lo), 0.0, hi, projection_in(v, k, 2u, k0), 0.0);
    }
    // The residual of the grid optimum: c − q·q̂ − (G·c/G·G)·G.
    var sse: f32 = 0.0;
    for (var t = 0u; t < p.n_t; t++) {
        let r = curve[t] - best * atoms[k0 * p.n_t + t] - gc / p.gg * g(t);
        sse += r * r;
    }
    out[v] = c0.x + ra.df + rb.df;
    out[n + v] = mtt(ba) * exp(ra.offset * p.log_step);
    out[2u * n + v] = p.delay0 + (f32(bb) + rb.offset) * p.delay_step;
    out[3u * n + v] = -(c0.y + ra.dk + rb.dk);
    out[4u * n + v] = sqrt(sse / f32(p.n_t)) / peak;
}
