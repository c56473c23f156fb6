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
    method: u32,     // METHOD_* (written from models::adc::FitMethod::code by src/gpu/wgsl.rs)
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

fn sig(i: u32, v: u32) -> f32 {
    return signals[i * params.n_voxels + v];
}

fn write_invalid(v: u32) {
    let nan = nan();
    maps[v] = nan;
    maps[params.n_voxels + v] = nan;
    maps[2u * params.n_voxels + v] = nan;
}

// Weight of point i: METHOD_MEASURED_S2, the measured S² normalised by the largest (trace-wls);
// METHOD_PREDICTED_S2, the squared signal an OLS pass predicts, exp(-2·adc_ols·b_i - e_max)
// (wls, as DIPY); else none (METHOD_UNWEIGHTED: ols, trace-ols).
fn weight(mode: u32, s: f32, max_s: f32, b: f32, adc_ols: f32, e_max: f32) -> f32 {
    if (mode == METHOD_MEASURED_S2) {
        let r = s / max_s;
        return r * r;
    }
    if (mode == METHOD_PREDICTED_S2) {
        return exp(-2.0 * adc_ols * b - e_max);
    }
    return 1.0;
}

// Centred weighted regression of ln S on b: (slope, intercept, sxx); sxx <= 0 means no fit.
fn regress(v: u32, mode: u32, max_s: f32, adc_ols: f32, e_max: f32) -> vec3<f32> {
    let n = params.n_b;
    var sw: f32 = 0.0;
    var swx: f32 = 0.0;
    var swy: f32 = 0.0;
    for (var i = 0u; i < n; i++) {
        let s = sig(i, v);
        let w = weight(mode, s, max_s, bvalues[i], adc_ols, e_max);
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
        let w = weight(mode, s, max_s, bvalues[i], adc_ols, e_max);
        let dx = bvalues[i] - xm;
        sxx += w * dx * dx;
        sxy += w * dx * (log(s) - ym);
    }
    if (!(sxx > 0.0)) {
        return vec3<f32>(0.0, 0.0, 0.0);
    }
    let slope = sxy / sxx;
    return vec3<f32>(slope, ym - slope * xm, sxx);
}

// Threads per workgroup: set per pipeline from the host (`GpuContext::workgroup_size`,
// `--workgroup-size`); 64 unless measured otherwise.
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
    if (params.method == METHOD_TWO_POINT) {
        let bl = bvalues[params.low];
        let bh = bvalues[params.high];
        let sl = sig(params.low, v);
        let sh = sig(params.high, v);
        adc = log(sl / sh) / (bh - bl);
        ln_s0 = log(sl) + bl * adc;
    } else {
        let mode = params.method;
        var adc_ols: f32 = 0.0;
        var e_max: f32 = 0.0;
        if (mode == METHOD_PREDICTED_S2) {
            // DIPY's WLS: an OLS pass, then weights from the signal it predicts.
            let first = regress(v, METHOD_UNWEIGHTED, max_s, 0.0, 0.0);
            if (!(first.z > 0.0)) {
                write_invalid(v);
                return;
            }
            adc_ols = -first.x;
            e_max = -3.4e38;
            for (var i = 0u; i < n; i++) {
                e_max = max(e_max, -2.0 * adc_ols * bvalues[i]);
            }
        }
        let fit = regress(v, mode, max_s, adc_ols, e_max);
        if (!(fit.z > 0.0)) {
            write_invalid(v);
            return;
        }
        adc = -fit.x;
        ln_s0 = fit.y;
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
