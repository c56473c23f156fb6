//! The acquisition, read once: the brain mask, the brain voxels' signals, the whole-brain
//! curve, the bolus timing found on it (`models::bolus`), and the frame windows every
//! per-voxel step uses (`DscAcquisition`: baseline, bolus, CBV integration, late frames).

use ndarray::{Array3, ArrayView4, Axis};

use super::{DscInput, DscOptions, Integration};
use crate::error::{Error, Result};
use crate::models::bolus::{detect, BolusTiming};
use crate::models::delta_r2star::DscAcquisition;
use crate::pipeline::mask::MaskRecord;

/// The brain and its signals, planar (`[t * n + k]` for the voxel at flat index
/// `voxels[k]`), with the whole-brain mean curves and the bolus timing found on them.
pub(super) struct BrainSignals {
    pub brain: Array3<bool>,
    pub brain_record: MaskRecord,
    /// Flat (z, y, x) indices of the brain voxels.
    pub voxels: Vec<usize>,
    /// The first echo's signals.
    pub s1: Vec<f32>,
    /// The second echo's (empty for a single-echo series).
    pub s2: Vec<f32>,
    pub whole_brain_signal: Vec<f64>,
    pub whole_brain_signal2: Option<Vec<f64>>,
    pub timing: BolusTiming,
}

/// Brain mask (Otsu on the mean image after the steady-state frames, or the user's), the
/// brain voxels' signals, the whole-brain curve and the bolus timing on it.
pub(super) fn read_brain(
    input: &DscInput,
    opts: &DscOptions,
    err: &impl Fn(String) -> Error,
) -> Result<BrainSignals> {
    let voxels = input.voxels(false).expect("the first echo");
    let nt = voxels.dim().0;
    let skip = opts.baseline_rules.skip.min(nt.saturating_sub(1));
    let mean_img =
        mean_after(voxels.view(), skip).ok_or_else(|| err("holds no time points".into()))?;
    let (brain, brain_record) = crate::pipeline::mask::resolve(
        &opts.brain_mask,
        mean_img.view(),
        "the mean image after the steady-state frames",
        "brain mask",
    )?;
    let flat_mask = crate::pipeline::mask::indices(&brain);
    let n = flat_mask.len();
    if n == 0 {
        return Err(err("the brain mask is empty: no voxel to analyse".into()));
    }
    let (s1, sums1) = planar(voxels, &flat_mask);
    let (s2, sums2) = input
        .voxels(true)
        .map(|e| planar(e, &flat_mask))
        .unwrap_or_default();
    let mean = |sums: Vec<f64>| -> Vec<f64> { sums.into_iter().map(|s| s / n as f64).collect() };
    let whole_brain_signal = mean(sums1);
    let whole_brain_signal2 = (!s2.is_empty()).then(|| mean(sums2));
    let timing = detect(&whole_brain_signal, &opts.baseline_rules, opts.baseline).map_err(err)?;
    Ok(BrainSignals {
        brain,
        brain_record,
        voxels: flat_mask,
        s1,
        s2,
        whole_brain_signal,
        whole_brain_signal2,
        timing,
    })
}

/// The frame windows of the per-voxel steps: baseline and bolus from `timing`, the CBV
/// integral from the first frame after the baseline (ΔR2* is zero before the bolus, and early
/// voxels — arteries, short delays — rise before the whole-brain curve does) to the end or
/// the first pass's end, and the last tenth (at least 3 frames) as the late window.
pub(super) fn windows(
    input: &DscInput,
    timing: &BolusTiming,
    integration: Integration,
) -> DscAcquisition {
    let nt = input.echo1.n_volumes();
    let late_len = (nt / 10).max(3);
    let start = timing.baseline_end;
    let integration = match integration {
        Integration::Whole => (start, nt),
        Integration::FirstPass => (start, (timing.first_pass_end + 1).min(nt)),
    };
    DscAcquisition {
        n_t: nt,
        dt: input.dt_s,
        echo: input.echo,
        baseline: (timing.baseline_start, timing.baseline_end),
        bolus: (timing.baseline_end, nt),
        integration,
        late: (nt - late_len, nt),
    }
}

/// The values of `values` (one per brain voxel) on the grid `shape`, 0 outside the brain.
pub(super) fn scatter(
    values: &[f32],
    voxels: &[usize],
    shape: (usize, usize, usize),
) -> Array3<f32> {
    let mut out = Array3::<f32>::zeros(shape);
    let flat = out.as_slice_mut().expect("contiguous");
    for (k, &i) in voxels.iter().enumerate() {
        flat[i] = values[k];
    }
    out
}

/// A mask on the grid `shape` of the brain voxels `chosen` (indices into `voxels`).
pub(super) fn mask_of(
    chosen: &[usize],
    voxels: &[usize],
    shape: (usize, usize, usize),
) -> Array3<bool> {
    let mut m = Array3::<bool>::from_elem(shape, false);
    let flat = m.as_slice_mut().expect("contiguous");
    for &k in chosen {
        flat[voxels[k]] = true;
    }
    m
}

/// The brain voxels' signals, planar (`[t * n + k]`), and each frame's sum of them (f64, in
/// voxel order, as `Iterator::sum`: the whole-brain curve times n), one frame per task: the sum
/// is taken as each sample is gathered, not in a second pass over the signals.
fn planar(voxels: ArrayView4<f32>, flat_mask: &[usize]) -> (Vec<f32>, Vec<f64>) {
    use rayon::prelude::*;
    let nt = voxels.dim().0;
    let n = flat_mask.len();
    let mut out = vec![0f32; nt * n];
    let mut sums = vec![0f64; nt];
    if n == 0 {
        return (out, sums);
    }
    // What `Iterator::sum` starts from (−0 or +0 as the standard library has it): the same sum.
    let zero = std::iter::empty::<f64>().sum::<f64>();
    out.par_chunks_mut(n)
        .zip(sums.par_iter_mut())
        .zip(voxels.axis_iter(Axis(0)).into_par_iter())
        .for_each(|((row, sum), vol)| {
            let flat = vol.as_standard_layout();
            let flat = flat.as_slice().expect("standard layout");
            let mut s = zero;
            for (o, &i) in row.iter_mut().zip(flat_mask) {
                let x = flat[i];
                *o = x;
                s += x as f64;
            }
            *sum = s;
        });
    (out, sums)
}

/// The mean over frames `skip..` of each voxel (`[z, y, x]`), summed frame after frame in f32
/// as ndarray's `mean_axis` does (the same values), on all cores.
fn mean_after(data: ArrayView4<f32>, skip: usize) -> Option<Array3<f32>> {
    use rayon::prelude::*;
    let (nt, nz, ny, nx) = data.dim();
    if skip >= nt {
        return None;
    }
    let data = data.as_standard_layout();
    let all = data.as_slice().expect("standard layout");
    let volume = nz * ny * nx;
    let mut mean = Array3::<f32>::zeros((nz, ny, nx));
    let out = mean.as_slice_mut().expect("fresh arrays are contiguous");
    let count = (nt - skip) as f32;
    out.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
        let start = c * 4096;
        for t in skip..nt {
            let frame = &all[t * volume + start..][..out.len()];
            for (o, &x) in out.iter_mut().zip(frame) {
                *o += x;
            }
        }
        for o in out.iter_mut() {
            *o /= count;
        }
    });
    Some(mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planar_signals_are_the_brain_voxels_and_their_sums_the_rows_sums_bit_for_bit() {
        let data = ndarray::Array4::from_shape_fn((4, 2, 9, 11), |(t, z, y, x)| {
            ((t * 7919 + z * 104_729 + y * 31 + x * 17) % 1000) as f32 * 0.731 - 200.0
        });
        let voxels: Vec<usize> = (0..2 * 9 * 11).filter(|i| i % 5 != 2).collect();
        let (s, sums) = planar(data.view(), &voxels);
        let n = voxels.len();
        for t in 0..4 {
            let frame = data.index_axis(Axis(0), t);
            let flat = frame.as_slice().unwrap();
            let row: Vec<f32> = voxels.iter().map(|&i| flat[i]).collect();
            assert_eq!(s[t * n..(t + 1) * n], row[..]);
            let sum: f64 = row.iter().map(|&x| x as f64).sum();
            assert_eq!(sums[t].to_bits(), sum.to_bits(), "frame {t}");
        }
    }

    #[test]
    fn the_parallel_mean_equals_ndarrays_mean_axis_bit_for_bit() {
        // 5 frames of a grid larger than one 4096-voxel task, irregular values.
        let data = ndarray::Array4::from_shape_fn((5, 3, 41, 47), |(t, z, y, x)| {
            ((t * 7919 + z * 104_729 + y * 31 + x * 17) % 1000) as f32 * 0.731 + 0.1
        });
        for skip in [0, 2, 4] {
            let ours = mean_after(data.view(), skip).unwrap();
            let theirs = data
                .slice(ndarray::s![skip.., .., .., ..])
                .mean_axis(ndarray::Axis(0))
                .unwrap();
            assert!(
                ours.iter()
                    .zip(&theirs)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "skip {skip}"
            );
        }
        assert!(mean_after(data.view(), 5).is_none());
    }
}
