// Deconvolution per voxel (METHODS §4): projection onto the AIF's singular vectors and, for
// oSVD, the per-voxel truncation search by Wu's oscillation index. f32.
// CPU twin: src/models/deconvolution.rs (f64): the same components, weights, order and search,
// with the same arithmetic in the same order:
//   β_k = w_k · (fma chain over t of c_t·u_kt, t ascending),
//   f_i after component k = fma(β_k, v_ki, f_i after component k − 1),
//   OI_k = (Σ_{i≥2} |Δf_i − Δf_{i−1}|, i ascending) / L / max f  (f32::MAX where max f ≤ 0),
// and oSVD keeps the most components whose OI_k ≤ target (component 1 always).
//
// Layout for a GPU (and for lavapipe, where every per-voxel memory access costs a loop over
// lanes): one thread per voxel; what every voxel shares (u, v, weights) is read at addresses
// the same for every thread; the residue f lives in a storage scratch buffer,
// `scratch[i * n + v]` (adjacent voxels adjacent, so the accesses coalesce); no per-thread
// arrays. The components are taken eight at a time: one read of the tissue curve per group
// gives eight projections, and one pass over f adds the eight components sample by sample
// (each sample's chain of eight fused multiply-adds yields f after each of them) while each
// component's maximum, argmax and sum of |second differences| update in registers. The
// incremental search therefore reads and writes f once per eight components, and needs no
// copy of the residue it keeps: the peak, Tmax index and OI of each candidate come out of the
// pass itself.
//
// Inputs: curves[t * n + v] (ΔR2*), k2[v], cumulative[t]: the tissue concentration is
// curves + K2·cumulative (leakage-corrected), with the curve zero before frame `first`.
// Components packed by eights (zero past k_max): u8[(g * n_t + t) * 2 + h] holds u_k(t) for
// k = 8g + 4h .. 8g + 4h + 3, v8[(g * l + i) * 2 + h] likewise v_k(i), w8[2g + h] the weights.
// Output: [peak | argmax | oi | components], planar.

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
@group(0) @binding(4) var<storage, read> u8: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> v8: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> w8: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> scratch: array<f32>;

// Per thread: the group's projections, and each of its eight candidates' running maximum,
// argmax, previous sample, first difference and sum of |second differences| (A: the first
// four components of the group, B: the last four).
var<private> ba: vec4<f32>;
var<private> bb: vec4<f32>;
var<private> ma: vec4<f32>;
var<private> mb: vec4<f32>;
var<private> aa: vec4<u32>;
var<private> ab: vec4<u32>;
var<private> pa: vec4<f32>;
var<private> pb: vec4<f32>;
var<private> da: vec4<f32>;
var<private> db: vec4<f32>;
var<private> sa: vec4<f32>;
var<private> sb: vec4<f32>;
// The best candidate so far.
var<private> best_peak: f32;
var<private> best_arg: u32;
var<private> best_oi: f32;
var<private> used: u32;

// The tissue concentration at frame t (zero before `first`).
fn tissue(v: u32, kk: f32, t: u32) -> f32 {
    return select(curves[t * p.n + v], 0.0, t < p.first) + kk * cumulative[t];
}

// Sample i of f (slot o of the scratch) after each of the group's eight components: the new f
// is stored, the eight values returned in (xa, xb) via the private state's caller.
var<private> xa: vec4<f32>;
var<private> xb: vec4<f32>;

fn add_group(o: u32, row: u32) {
    let wa = v8[row];
    let wb = v8[row + 1u];
    let x0 = fma(ba.x, wa.x, scratch[o]);
    let x1 = fma(ba.y, wa.y, x0);
    let x2 = fma(ba.z, wa.z, x1);
    let x3 = fma(ba.w, wa.w, x2);
    let x4 = fma(bb.x, wb.x, x3);
    let x5 = fma(bb.y, wb.y, x4);
    let x6 = fma(bb.z, wb.z, x5);
    let x7 = fma(bb.w, wb.w, x6);
    scratch[o] = x7;
    xa = vec4<f32>(x0, x1, x2, x3);
    xb = vec4<f32>(x4, x5, x6, x7);
}

// Candidate k (max m, argmax a, sum s): its OI, and whether oSVD keeps it (the last kept
// wins: the most components whose OI meets the target; component 1 always). The other
// methods keep every component up to k_max.
fn consider(k: u32, m: f32, a: u32, s: f32) {
    if (k >= p.k_max) {
        return;
    }
    var oi = bitcast<f32>(0x7f7fffffu); // f32::MAX: undefined where max f ≤ 0
    if (m > 0.0) {
        oi = s / f32(p.l) / m;
    }
    if (k == 0u || p.osvd == 0u || oi <= p.oi_target) {
        best_peak = m;
        best_arg = a;
        best_oi = oi;
        used = k + 1u;
    }
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
@compute @workgroup_size(WORKGROUP_SIZE)
fn deconvolution(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * p.row_threads;
    if (v >= p.n) {
        return;
    }
    var kk = k2[v];
    if (!finite(kk)) { kk = 0.0; }
    for (var t = 0u; t < p.n_t; t++) {
        if (!finite(tissue(v, kk, t))) {
            let nan = nan();
            out[v] = nan;
            out[p.n + v] = 0.0;
            out[2u * p.n + v] = nan;
            out[3u * p.n + v] = 0.0;
            return;
        }
    }
    for (var i = 0u; i < p.l; i++) {
        scratch[i * p.n + v] = 0.0;
    }
    best_peak = 0.0;
    best_arg = 0u;
    best_oi = 0.0;
    used = 0u;
    let groups = (p.k_max + 7u) / 8u;
    for (var g = 0u; g < groups; g++) {
        // β_k = w_k (u_k · c): the tissue curve is zero past its N samples.
        var acc_a = vec4<f32>(0.0);
        var acc_b = vec4<f32>(0.0);
        for (var t = 0u; t < p.n_t; t++) {
            let c = vec4<f32>(tissue(v, kk, t));
            let r = (g * p.n_t + t) * 2u;
            acc_a = fma(c, u8[r], acc_a);
            acc_b = fma(c, u8[r + 1u], acc_b);
        }
        ba = w8[2u * g] * acc_a;
        bb = w8[2u * g + 1u] * acc_b;
        let row = g * p.l * 2u;
        if (p.osvd == 0u && g + 1u < groups) {
            // A fixed truncation needs only the final residue: add the group, no statistics.
            for (var i = 0u; i < p.l; i++) {
                add_group(i * p.n + v, row + 2u * i);
            }
            continue;
        }
        // Samples 0 and 1 start each candidate's maximum and first difference.
        add_group(v, row);
        ma = xa;
        mb = xb;
        aa = vec4<u32>(0u);
        ab = vec4<u32>(0u);
        pa = xa;
        pb = xb;
        add_group(p.n + v, row + 2u);
        let ga = xa > ma;
        let gb = xb > mb;
        ma = select(ma, xa, ga);
        mb = select(mb, xb, gb);
        aa = select(aa, vec4<u32>(1u), ga);
        ab = select(ab, vec4<u32>(1u), gb);
        da = xa - pa;
        db = xb - pb;
        pa = xa;
        pb = xb;
        sa = vec4<f32>(0.0);
        sb = vec4<f32>(0.0);
        // Each second difference is the change of the first difference.
        for (var i = 2u; i < p.l; i++) {
            add_group(i * p.n + v, row + 2u * i);
            let ha = xa > ma;
            let hb = xb > mb;
            ma = select(ma, xa, ha);
            mb = select(mb, xb, hb);
            aa = select(aa, vec4<u32>(i), ha);
            ab = select(ab, vec4<u32>(i), hb);
            let step_a = xa - pa;
            let step_b = xb - pb;
            sa += abs(step_a - da);
            sb += abs(step_b - db);
            da = step_a;
            db = step_b;
            pa = xa;
            pb = xb;
        }
        let k = 8u * g;
        consider(k, ma.x, aa.x, sa.x);
        consider(k + 1u, ma.y, aa.y, sa.y);
        consider(k + 2u, ma.z, aa.z, sa.z);
        consider(k + 3u, ma.w, aa.w, sa.w);
        consider(k + 4u, mb.x, ab.x, sb.x);
        consider(k + 5u, mb.y, ab.y, sb.y);
        consider(k + 6u, mb.z, ab.z, sb.z);
        consider(k + 7u, mb.w, ab.w, sb.w);
    }
    out[v] = best_peak;
    out[p.n + v] = f32(best_arg);
    out[2u * p.n + v] = best_oi;
    out[3u * p.n + v] = f32(used);
}
