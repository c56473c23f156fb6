//! Runs the DSC kernels: `shaders/delta_r2star.wgsl` (twin `models::delta_r2star`),
//! `shaders/leakage_bsw.wgsl` (twin `models::leakage_bsw`), `shaders/leakage_leigh.wgsl` (twin
//! `models::leakage_leigh`) and `shaders/gamma_variate.wgsl`
//! (twin `models::gamma_variate`), `shaders/deconvolution.wgsl` (twin `models::deconvolution`)
//! `shaders/deconvolution_residual.wgsl` (twin `models::deconvolution_residual`) and
//! `shaders/leakage_residual.wgsl` (twin `models::leakage_residual`), in voxel
//! chunks within the adapter's limits.

use bytemuck::{Pod, Zeroable};

use super::kernel::{run_voxels, Input, Kernel};
use super::GpuContext;
use crate::error::Result;
use crate::models::deconvolution::{Deconvolution, Method, Tissue};
use crate::models::delta_r2star::{DscAcquisition, DscMaps, Echo, METRICS};
use crate::models::gamma_variate::GammaWindow;
use crate::models::leakage_bsw::BswReference;
use crate::models::leakage_leigh::LeighReference;
use crate::models::leakage_residual::LeakageRegressors;
use crate::models::residue_fit::{self, ResidueModel};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DeltaParams {
    n: u32,
    n_t: u32,
    dual: u32,
    row_threads: u32,
    base: [u32; 2],
    bolus: [u32; 2],
    integration: [u32; 2],
    late: [u32; 2],
    te1: f32,
    te2: f32,
    dt: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LeakParams {
    n: u32,
    n_t: u32,
    fit: [u32; 2],
    row_threads: u32,
    _pad: [u32; 3],
    inverse: [f32; 4],
    cumulative_integral: f32,
    _pad2: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LeighParams {
    n: u32,
    n_t: u32,
    fit: [u32; 2],
    row_threads: u32,
    n_kep: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GammaParams {
    n: u32,
    start: u32,
    end: u32,
    t0_frame: u32,
    row_threads: u32,
    _pad0: u32,
    dt: f32,
    _pad1: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct DeconvParams {
    n: u32,
    n_t: u32,
    l: u32,
    k_max: u32,
    osvd: u32,
    row_threads: u32,
    oi_target: f32,
    first: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResidualParams {
    n: u32,
    n_t: u32,
    l: u32,
    first: u32,
    row_threads: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LeakageResidualParams {
    n: u32,
    n_t: u32,
    fit: [u32; 2],
    n_integrals: u32,
    row_threads: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResidueParams {
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
    noise0: u32,
    noise1: u32,
    weighted: u32,
    _pad1: u32,
}

/// Longest series the parametric-fit shader holds per thread (`MAX_T` in the shader).
pub const MAX_RESIDUE_FIT_T: usize = 192;

/// Largest matrix (L×L, L = N for sSVD, 2N otherwise) the deconvolution kernel takes. The
/// shader holds no per-thread arrays (the residue is in a scratch buffer of L floats per voxel),
/// so the bound is the size of the packed singular vectors: 2·L² floats (32 MiB at L = 2048),
/// well within every adapter's storage-binding limit (128 MiB at least).
pub const MAX_DECONVOLUTION_L: usize = 2048;

/// The DSC kernels, each compiled when first used (and kept in the context for every later
/// series): a run compiles only what its options need, and a software Vulkan spends seconds
/// compiling a kernel.
pub struct DscKernels {
    _private: (),
}

/// (label, source, entry point, inputs) of a DSC kernel: `shaders/NAME.wgsl`, whose entry point
/// is NAME too.
macro_rules! dsc_kernel {
    ($name:literal, $inputs:expr) => {
        (
            $name,
            include_str!(concat!("../../shaders/", $name, ".wgsl")),
            $name,
            $inputs,
        )
    };
}
const DELTA: (&str, &str, &str, u32) = dsc_kernel!("delta_r2star", 2);
const LEAKAGE: (&str, &str, &str, u32) = dsc_kernel!("leakage_bsw", 4);
const LEIGH: (&str, &str, &str, u32) = dsc_kernel!("leakage_leigh", 5);
const GAMMA: (&str, &str, &str, u32) = dsc_kernel!("gamma_variate", 3);
const DECONVOLUTION: (&str, &str, &str, u32) = dsc_kernel!("deconvolution", 6);
const DECONVOLUTION_RESIDUAL: (&str, &str, &str, u32) = dsc_kernel!("deconvolution_residual", 6);
const LEAKAGE_RESIDUAL: (&str, &str, &str, u32) = dsc_kernel!("leakage_residual", 6);
const RESIDUE_FIT: (&str, &str, &str, u32) = dsc_kernel!("residue_fit", 5);

fn kernel(ctx: &GpuContext, k: (&'static str, &str, &str, u32)) -> Kernel {
    Kernel::new(ctx, k.0, &super::wgsl::source(k.1), k.2, k.3)
}

fn pair(w: (usize, usize)) -> [u32; 2] {
    [w.0 as u32, w.1 as u32]
}

// Each runner below converts its inputs to f32 and hands them to `run_voxels` (the chunking,
// upload, dispatch and read-back shared by every kernel) with a closure that fills that
// kernel's uniform block for one chunk. What differs is the block and the inputs, which must
// match the kernel's WGSL (checked by the tests at the end).
impl DscKernels {
    pub fn new(_ctx: &GpuContext) -> Self {
        DscKernels { _private: () }
    }

    /// ΔR2* curves and metrics, as `models::delta_r2star::compute_cpu` returns them.
    pub fn delta_r2star(
        &self,
        ctx: &GpuContext,
        acq: &DscAcquisition,
        s1: &[f32],
        s2: &[f32],
        n: usize,
        cap: Option<usize>,
    ) -> Result<DscMaps> {
        let nt = acq.n_t;
        let nm = METRICS.len();
        let dual = !s2.is_empty();
        let (te1, te2) = match acq.echo {
            Echo::Single { te } => (te, te),
            Echo::Dual { te1, te2 } => (te1, te2),
        };
        // A single echo binds an empty second input.
        let second = if dual {
            Input::Planar(s2, nt)
        } else {
            Input::Shared(&[])
        };
        let out = run_voxels(
            ctx,
            &kernel(ctx, DELTA),
            n,
            nt + nm,
            cap,
            &[Input::Planar(s1, nt), second],
            |len, row_threads| DeltaParams {
                n: len as u32,
                n_t: nt as u32,
                dual: dual as u32,
                row_threads,
                base: pair(acq.baseline),
                bolus: pair(acq.bolus),
                integration: pair(acq.integration),
                late: pair(acq.late),
                te1: te1 as f32,
                te2: te2 as f32,
                dt: acq.dt as f32,
                _pad: 0,
            },
            &|_| {},
        )?;
        let (curves, metrics) = out.split_at(nt * n);
        let maps = DscMaps {
            curves: curves.to_vec(),
            metrics: metrics.to_vec(),
        };
        Ok(maps)
    }

    /// `[K1 | K2 | corrected CBV]`, planar, as `models::leakage_bsw::fit_cpu`.
    pub fn leakage_bsw(
        &self,
        ctx: &GpuContext,
        r: &BswReference,
        curves: &[f32],
        cbv: &[f32],
        n: usize,
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        let nt = r.rbar.len();
        let rbar = to_f32(&r.rbar);
        let cum = to_f32(&r.cumulative);
        let inverse = [
            r.inverse[0][0] as f32,
            r.inverse[0][1] as f32,
            r.inverse[1][0] as f32,
            r.inverse[1][1] as f32,
        ];
        run_voxels(
            ctx,
            &kernel(ctx, LEAKAGE),
            n,
            3,
            cap,
            &[
                Input::Planar(curves, nt),
                Input::Voxel(cbv),
                Input::Shared(&rbar),
                Input::Shared(&cum),
            ],
            |len, row_threads| LeakParams {
                n: len as u32,
                n_t: nt as u32,
                fit: pair(r.fit),
                row_threads,
                _pad: [0; 3],
                inverse,
                cumulative_integral: r.cumulative_integral as f32,
                _pad2: [0.0; 3],
            },
            &|_| {},
        )
    }

    /// `[K1 | K2 | k_ep | corrected CBV]`, planar, as `models::leakage_leigh::fit_cpu`. The
    /// regressors of every k_ep (`r.weighted`, k_ep × frames) and their per-k_ep constants are
    /// converted once and shared by every chunk.
    pub fn leakage_leigh(
        &self,
        ctx: &GpuContext,
        r: &LeighReference,
        curves: &[f32],
        cbv: &[f32],
        n: usize,
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        let nt = r.rbar.len();
        let rbar = to_f32(&r.rbar);
        let weighted = to_f32(&r.weighted);
        let mut table = Vec::with_capacity(8 * r.kep.len());
        for k in 0..r.kep.len() {
            let i = r.inverse[k];
            table.extend(
                [
                    i[0],
                    i[1],
                    i[2],
                    i[3],
                    r.weighted_integral[k],
                    r.kep[k],
                    0.0,
                    0.0,
                ]
                .map(|x| x as f32),
            );
        }
        run_voxels(
            ctx,
            &kernel(ctx, LEIGH),
            n,
            4,
            cap,
            &[
                Input::Planar(curves, nt),
                Input::Voxel(cbv),
                Input::Shared(&rbar),
                Input::Shared(&weighted),
                Input::Shared(&table),
            ],
            |len, row_threads| LeighParams {
                n: len as u32,
                n_t: nt as u32,
                fit: pair(r.fit),
                row_threads,
                n_kep: r.kep.len() as u32,
                _pad: [0; 2],
            },
            &|_| {},
        )
    }

    /// `[A | α | β | CBV]`, planar, as `models::gamma_variate::fit_cpu`.
    pub fn gamma_variate(
        &self,
        ctx: &GpuContext,
        w: &GammaWindow,
        curves: &[f32],
        k2: &[f32],
        cumulative: &[f64],
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        let nt = cumulative.len();
        let cum = to_f32(cumulative);
        run_voxels(
            ctx,
            &kernel(ctx, GAMMA),
            k2.len(),
            4,
            cap,
            &[
                Input::Planar(curves, nt),
                Input::Voxel(k2),
                Input::Shared(&cum),
            ],
            |len, row_threads| GammaParams {
                n: len as u32,
                start: w.start as u32,
                end: w.end as u32,
                t0_frame: w.t0_frame as u32,
                row_threads,
                _pad0: 0,
                dt: w.dt as f32,
                _pad1: 0.0,
            },
            &|_| {},
        )
    }

    /// `[peak | argmax | oi | components]`, planar, as `models::deconvolution::deconvolve_cpu`
    /// (see the shader's header for the layout and the order of the arithmetic).
    pub fn deconvolution(
        &self,
        ctx: &GpuContext,
        d: &Deconvolution,
        tissue: &Tissue,
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        if d.l > MAX_DECONVOLUTION_L {
            return Err(crate::Error::Gpu(format!(
                "deconvolution of {} samples needs a {}×{} matrix; the shader holds at most {MAX_DECONVOLUTION_L}: use --backend cpu",
                d.n, d.l, d.l
            )));
        }
        let nt = d.n;
        let (u, v, w) = pack_components(d);
        let cum = to_f32(tissue.cumulative);
        let (osvd, oi_target) = match d.method {
            Method::Osvd { oi_target } => (1, oi_target as f32),
            _ => (0, 0.0),
        };
        // The residue's scratch is L floats per voxel: as large as the curves or larger.
        let (label, source, entry, inputs) = DECONVOLUTION;
        let kernel =
            Kernel::with_scratch(ctx, label, &super::wgsl::source(source), entry, inputs, d.l);
        run_voxels(
            ctx,
            &kernel,
            tissue.k2.len(),
            4,
            cap,
            &tissue_inputs(
                tissue,
                nt,
                &cum,
                &[Input::Shared(&u), Input::Shared(&v), Input::Shared(&w)],
            ),
            |len, row_threads| DeconvParams {
                n: len as u32,
                n_t: nt as u32,
                l: d.l as u32,
                k_max: d.k_max as u32,
                osvd,
                row_threads,
                oi_target,
                first: tissue.first as u32,
            },
            &|_| {},
        )
    }

    /// The normalised residual of each voxel's deconvolution, as
    /// `models::deconvolution_residual::residual_cpu` (`shaders/deconvolution_residual.wgsl`);
    /// `components[v]` the components the voxel's deconvolution used.
    pub fn deconvolution_residual(
        &self,
        ctx: &GpuContext,
        d: &Deconvolution,
        tissue: &Tissue,
        components: &[f32],
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        let (nt, l) = (d.n, d.l);
        let mut u = vec![0f32; l * nt];
        for k in 0..l {
            for t in 0..nt {
                u[k * nt + t] = d.u[k * l + t] as f32;
            }
        }
        let gain = to_f32(&crate::models::deconvolution_residual::gains(d));
        let cum = to_f32(tissue.cumulative);
        run_voxels(
            ctx,
            &kernel(ctx, DECONVOLUTION_RESIDUAL),
            tissue.k2.len(),
            1,
            cap,
            &tissue_inputs(
                tissue,
                nt,
                &cum,
                &[
                    Input::Shared(&u),
                    Input::Shared(&gain),
                    Input::Voxel(components),
                ],
            ),
            |len, row_threads| ResidualParams {
                n: len as u32,
                n_t: nt as u32,
                l: l as u32,
                first: tissue.first as u32,
                row_threads,
                _pad: [0; 3],
            },
            &|_| {},
        )
    }

    /// The normalised residual of each voxel's leakage fit, as
    /// `models::leakage_residual::residual_cpu` (`shaders/leakage_residual.wgsl`).
    #[allow(clippy::too_many_arguments)]
    pub fn leakage_residual(
        &self,
        ctx: &GpuContext,
        r: &LeakageRegressors,
        curves: &[f32],
        k1: &[f32],
        k2: &[f32],
        which: &[u32],
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        let nt = r.n_t();
        let rbar = to_f32(&r.rbar);
        let integrals = to_f32(&r.integrals);
        let which: Vec<f32> = which.iter().map(|&k| k as f32).collect();
        run_voxels(
            ctx,
            &kernel(ctx, LEAKAGE_RESIDUAL),
            k1.len(),
            1,
            cap,
            &[
                Input::Planar(curves, nt),
                Input::Voxel(k1),
                Input::Voxel(k2),
                Input::Voxel(&which),
                Input::Shared(&rbar),
                Input::Shared(&integrals),
            ],
            |len, row_threads| LeakageResidualParams {
                n: len as u32,
                n_t: nt as u32,
                fit: pair(r.fit),
                n_integrals: (r.integrals.len() / nt) as u32,
                row_threads,
                _pad: [0; 2],
            },
            &|_| {},
        )
    }

    /// `[flow | mtt | delay | k2 | nrmse]`, planar, as `models::residue_fit::fit_cpu`.
    pub fn residue_fit(
        &self,
        ctx: &GpuContext,
        m: &ResidueModel,
        tissue: &Tissue,
        cap: Option<usize>,
    ) -> Result<Vec<f32>> {
        self.residue_fit_with_progress(ctx, m, tissue, cap, &|_| {})
    }

    /// [`Self::residue_fit`], calling `done(len)` as each chunk of `len` voxels comes back
    /// (`kernel::run_voxels`).
    pub fn residue_fit_with_progress(
        &self,
        ctx: &GpuContext,
        m: &ResidueModel,
        tissue: &Tissue,
        cap: Option<usize>,
        done: &dyn Fn(usize),
    ) -> Result<Vec<f32>> {
        if m.n > MAX_RESIDUE_FIT_T {
            return Err(crate::Error::Gpu(format!(
                "the parametric fit of {} frames: the shader holds at most {MAX_RESIDUE_FIT_T}: use --backend cpu",
                m.n
            )));
        }
        let nt = m.n;
        let cum = to_f32(tissue.cumulative);
        // The shader's two packed tables (see its header).
        let atoms = to_f32(&[m.basis.as_slice(), &m.next_mtt, &m.next_delay].concat());
        let table =
            to_f32(&[m.qnorm.as_slice(), &m.hg, &m.mtt, &m.cumulative, &m.penalty].concat());
        let (noise0, noise1) = m.noise_frames.unwrap_or((0, 0));
        let na = m.mtt.len();
        let log_step = ((m.mtt[na - 1] / m.mtt[0]).ln() / (na - 1) as f64) as f32;
        run_voxels(
            ctx,
            &kernel(ctx, RESIDUE_FIT),
            tissue.k2.len(),
            residue_fit::OUTPUTS,
            cap,
            &tissue_inputs(
                tissue,
                nt,
                &cum,
                &[Input::Shared(&atoms), Input::Shared(&table)],
            ),
            |len, row_threads| ResidueParams {
                n: len as u32,
                n_t: nt as u32,
                n_mtt: na as u32,
                n_delay: m.delays() as u32,
                coarse: residue_fit::COARSE as u32,
                first: tissue.first as u32,
                row_threads,
                _pad0: 0,
                gg: m.gg as f32,
                delay0: m.delay[0] as f32,
                delay_step: residue_fit::DELAY_STEP_S as f32,
                log_step,
                noise0: noise0 as u32,
                noise1: noise1 as u32,
                weighted: m.noise_frames.is_some() as u32,
                _pad1: 0,
            },
            done,
        )
    }
}

/// The inputs of a kernel of the tissue curves (`models::deconvolution::Tissue`): the curves
/// (planar, `nt` frames), K2 per voxel and the cumulative reference curve (`cum`, f32), then
/// the kernel's own `more`.
fn tissue_inputs<'a>(
    tissue: &Tissue<'a>,
    nt: usize,
    cum: &'a [f32],
    more: &[Input<'a>],
) -> Vec<Input<'a>> {
    let mut inputs = vec![
        Input::Planar(tissue.curves, nt),
        Input::Voxel(tissue.k2),
        Input::Shared(cum),
    ];
    inputs.extend_from_slice(more);
    inputs
}

/// `x` in f32, as the kernels take it.
fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// The deconvolution's components packed by eights for `shaders/deconvolution.wgsl`, f32:
/// `u8[((g·N + t)·2 + h)·4 + j]` = u_k(t) and `v8[((g·L + i)·2 + h)·4 + j]` = v_k(i) for
/// component k = 8g + 4h + j, `w8[8g + 4h + j]` = w_k; zero past `k_max` (a weight of zero adds
/// exactly nothing to the residue).
fn pack_components(d: &Deconvolution) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (l, nt) = (d.l, d.n);
    let groups = d.k_max.div_ceil(8);
    let mut u8 = vec![0f32; groups * nt * 8];
    let mut v8 = vec![0f32; groups * l * 8];
    let mut w8 = vec![0f32; groups * 8];
    for k in 0..d.k_max {
        let (g, slot) = (k / 8, k % 8);
        w8[k] = d.weights[k] as f32;
        for t in 0..nt {
            u8[(g * nt + t) * 8 + slot] = d.u[k * l + t] as f32;
        }
        for i in 0..l {
            v8[(g * l + i) * 8 + slot] = d.v[k * l + i] as f32;
        }
    }
    (u8, v8, w8)
}

/// Each kernel's uniform block against its Rust twin here (see [`super::wgsl::layout`]).
#[cfg(test)]
mod uniform_blocks {
    use super::super::wgsl::layout::{assert_same, rust_params};
    use super::*;

    #[test]
    fn every_dsc_kernels_params_match_the_wgsl() {
        assert_same(
            DELTA.0,
            DELTA.1,
            rust_params!(DeltaParams {
                n,
                n_t,
                dual,
                row_threads,
                base,
                bolus,
                integration,
                late,
                te1,
                te2,
                dt,
                _pad
            }),
        );
        assert_same(
            LEAKAGE.0,
            LEAKAGE.1,
            rust_params!(LeakParams {
                n,
                n_t,
                fit,
                row_threads,
                _pad,
                inverse,
                cumulative_integral,
                _pad2
            }),
        );
        assert_same(
            LEIGH.0,
            LEIGH.1,
            rust_params!(LeighParams {
                n,
                n_t,
                fit,
                row_threads,
                n_kep,
                _pad
            }),
        );
        assert_same(
            GAMMA.0,
            GAMMA.1,
            rust_params!(GammaParams {
                n,
                start,
                end,
                t0_frame,
                row_threads,
                _pad0,
                dt,
                _pad1
            }),
        );
        assert_same(
            DECONVOLUTION.0,
            DECONVOLUTION.1,
            rust_params!(DeconvParams {
                n,
                n_t,
                l,
                k_max,
                osvd,
                row_threads,
                oi_target,
                first
            }),
        );
        assert_same(
            DECONVOLUTION_RESIDUAL.0,
            DECONVOLUTION_RESIDUAL.1,
            rust_params!(ResidualParams {
                n,
                n_t,
                l,
                first,
                row_threads,
                _pad
            }),
        );
        assert_same(
            LEAKAGE_RESIDUAL.0,
            LEAKAGE_RESIDUAL.1,
            rust_params!(LeakageResidualParams {
                n,
                n_t,
                fit,
                n_integrals,
                row_threads,
                _pad
            }),
        );
        assert_same(
            RESIDUE_FIT.0,
            RESIDUE_FIT.1,
            rust_params!(ResidueParams {
                n,
                n_t,
                n_mtt,
                n_delay,
                coarse,
                first,
                row_threads,
                _pad0,
                gg,
                delay0,
                delay_step,
                log_step,
                noise0,
                noise1,
                weighted,
                _pad1
            }),
        );
    }
}
