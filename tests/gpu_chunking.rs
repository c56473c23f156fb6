//! The GPU runner's chunking and transfer overlap move the same arithmetic around and change
//! no output: whole pipelines, one chunk against many, overlapped against stage by stage,
//! compared bit for bit.

mod common;

use paramap::pipeline::adc::{self, AdcOptions};
use paramap::pipeline::dsc::{self, DscInput, DscOptions};
use paramap::pipeline::Engine;
use paramap::synth::dsc::{dsc_phantom, DscPhantomSpec};
use paramap::synth::dwi::{dwi_phantom, DwiPhantomSpec};

fn engine(overlap: bool) -> Engine {
    let mut ctx = common::gpu();
    ctx.overlap = overlap;
    Engine::Gpu(Box::new(ctx))
}

fn same_bits(a: &ndarray::Array3<f32>, b: &ndarray::Array3<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim());
    let differ = a
        .iter()
        .zip(b.iter())
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "{what}: {differ} voxels differ");
}

#[test]
fn adc_maps_are_identical_in_one_chunk_many_chunks_overlapped_or_serial() {
    let p = dwi_phantom(&DwiPhantomSpec {
        snr: Some(30.0),
        ..Default::default()
    });
    let run = |chunk: Option<usize>, overlap: bool| {
        adc::compute(
            &p.series,
            &AdcOptions {
                chunk_voxels: chunk,
                ..Default::default()
            },
            &engine(overlap),
        )
        .unwrap()
    };
    let whole = run(None, false);
    for (chunk, overlap) in [(Some(997), false), (Some(997), true), (None, true)] {
        let other = run(chunk, overlap);
        let what = format!("chunk {chunk:?}, overlap {overlap}");
        same_bits(&whole.adc, &other.adc, &format!("ADC, {what}"));
        same_bits(&whole.s0, &other.s0, &format!("S0, {what}"));
        same_bits(&whole.nrmse, &other.nrmse, &format!("NRMSE, {what}"));
    }
}

#[test]
fn dsc_maps_are_identical_in_one_chunk_many_chunks_overlapped_or_serial() {
    let p = dsc_phantom(&DscPhantomSpec {
        snr: Some(40.0),
        ..Default::default()
    });
    let input = DscInput::from_phantom(&p);
    let run = |chunk: Option<usize>, overlap: bool| {
        dsc::compute(
            &input,
            &DscOptions {
                chunk_voxels: chunk,
                ..Default::default()
            },
            &engine(overlap),
        )
        .unwrap()
    };
    let whole = run(None, false);
    // 1,013 does not divide the brain's voxel count: the last chunk is a short one.
    for (chunk, overlap) in [(Some(1013), false), (Some(1013), true), (None, true)] {
        let other = run(chunk, overlap);
        let what = format!("chunk {chunk:?}, overlap {overlap}");
        same_bits(
            &whole.rcbv_corrected,
            &other.rcbv_corrected,
            &format!("rCBV, {what}"),
        );
        same_bits(&whole.k2, &other.k2, &format!("K2, {what}"));
        same_bits(&whole.ttp, &other.ttp, &format!("TTP, {what}"));
        let (pw, po) = (
            whole.perfusion.as_ref().unwrap(),
            other.perfusion.as_ref().unwrap(),
        );
        same_bits(&pw.cbf, &po.cbf, &format!("CBF, {what}"));
        same_bits(&pw.mtt, &po.mtt, &format!("MTT, {what}"));
        same_bits(&pw.tmax, &po.tmax, &format!("Tmax, {what}"));
    }
}
