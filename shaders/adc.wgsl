// ADC: mono-exponential fit ln S(b) = ln S0 - b*ADC per voxel (docs/methods.md §2), in f32.
// CPU twin: src/models/adc.rs (f64). Same inputs, same arithmetic, same invalid-voxel rule.
//
// The points are what the host feeds: every volume with its own b (ols, wls) or one
// trace-weighted image per shell (trace-ols, trace-wls, two-point).
// Layout: signals[i * n_voxels + v] is voxel v's signal at point i, b = bvalues[i];
// maps[v] = ADC (mm²/s), maps[n_voxels + v] = S0, maps[2 * n_voxels + v] = NRMSE.

struct Params {
    n_voxels: u32,
    n_b: u32,
    method: u32,     // weighting: 0 w = S² (wls, trace-wls), 1 w = 1 (ols, trace-ols), 2 two-point
    low: u32,        // index of the lowest b
    high: u32,       // index of the highest b
    row_threads: u32, // threads per row of the 2-D dispatch grid
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> bvalues: array<f32>;
@group(0) @binding(2) var<storage, read> signals: array<f32>;
@group(0) @binding(3) var<storage, read_write> maps: array<f32>;

const NAN_BITS: u32 = 0x7fc00000u;

fn sig(i: u32, v: u32) -> f32 {
    return signals[i * params.n_voxels + v];
}

fn write_invalid(v: u32) {
    let nan = bitcast<f32>(NAN_BITS);
    maps[v] = nan;
    maps[params.n_voxels + v] = nan;
    maps[2u * params.n_voxels + v] = nan;
}

// f32 has no isFinite in WGSL: compare the exponent bits.
fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
override WORKGROUP_SIZE: u32 = 64u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn fit_adc(@builtin(global_invocation_id) gid: vec3<u32>) {
    let v = gid.x + gid.y * params.row_threads;
    if (v >= params.n_voxels) {
        return;
    }
    let n = params.n_b;
    var max_s: f32 = 0.0;
    for (var i = 0u; i < n; i++) {
        let s = sig(i, v);
        if (!(s > 0.0) || !finite(s)) {
            write_invalid(v);
            return;
        }
        max_s = max(max_s, s);
    }

    var adc: f32;
    var ln_s0: f32;
    if (params.method == 2u) {
        let bl = bvalues[params.low];
        let bh = bvalues[params.high];
        let sl = sig(params.low, v);
        let sh = sig(params.high, v);
        adc = log(sl / sh) / (bh - bl);
        ln_s0 = log(sl) + bl * adc;
    } else {
        // Centred weighted regression; weights normalised by the voxel's largest S².
        var sw: f32 = 0.0;
        var swx: f32 = 0.0;
        var swy: f32 = 0.0;
        for (var i = 0u; i < n; i++) {
            let s = sig(i, v);
            var w: f32 = 1.0;
            if (params.method == 0u) {
                let r = s / max_s;
                w = r * r;
            }
            sw += w;
            swx += w * bvalues[i];
            swy += w * log(s);
        }
        let xm = swx / sw;
        let ym = swy / sw;
        var sxx: f32 = 0.0;
        var sxy: f32 = 0.0;
        for (var i = 0u; i < n; i++) {
            let s = sig(i, v);
            var w: f32 = 1.0;
            if (params.method == 0u) {
                let r = s / max_s;
                w = r * r;
            }
            let dx = bvalues[i] - xm;
            sxx += w * dx * dx;
            sxy += w * dx * (log(s) - ym);
        }
        if (!(sxx > 0.0)) {
            write_invalid(v);
            return;
        }
        let slope = sxy / sxx;
        adc = -slope;
        ln_s0 = ym - slope * xm;
    }

    let s0 = exp(ln_s0);
    var ss: f32 = 0.0;
    for (var i = 0u; i < n; i++) {
        let r = sig(i, v) - s0 * exp(-bvalues[i] * adc);
        ss += r * r;
    }
    let nrmse = sqrt(ss / f32(n)) / s0;
    if (!finite(adc) || !finite(s0) || !finite(nrmse)) {
        write_invalid(v);
        return;
    }
    maps[v] = adc;
    maps[params.n_voxels + v] = s0;
    maps[2u * params.n_voxels + v] = nrmse;
}
