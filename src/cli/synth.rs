//! `paramap synth`: digital reference objects with known maps.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::Result;
use crate::pipeline::synth::SynthDwiOptions;
use crate::synth::dwi::DwiPhantomSpec;

#[derive(Args)]
pub struct SynthArgs {
    #[command(subcommand)]
    pub kind: SynthKind,
}

#[derive(Subcommand)]
pub enum SynthKind {
    /// A multi-region DWI phantom with known ADC per region (DICOM and NIfTI)
    #[command(
        after_help = "Writes OUTDIR/dicom/ (the series), OUTDIR/nifti/dwi.nii.gz + .bval/.bvec/.json, OUTDIR/truth/adc_truth.nii.gz and labels.nii.gz, and OUTDIR/phantom.json (regions, true ADC, parameters).\n\nExamples:\n  paramap synth dwi -o phantom\n  paramap synth dwi -o phantom --snr 50 --vendor philips\n  paramap synth dwi -o phantom --enhanced --size 64x64x10"
    )]
    Dwi(DwiArgs),
    /// A DSC phantom with known CBV/CBF/MTT per region, leakage and delay (DICOM and NIfTI)
    #[command(
        after_help = "Regions, convolved with the AIF in continuous time: white matter (CBV 2, MTT 4.8 s: the reference), grey matter (CBV 4, MTT 4 s), a low-rCBV lesion (1.2× WM, MTT 3 s) with T2* leakage (K2 < 0), a high-rCBV lesion (3× WM, MTT 6 s) with T1 leakage (K2 > 0), a non-leaky lesion with MTT 6 s, grey matter delayed 2 s, grey matter delayed 1 s and dispersed, an artery at 20% partial volume and a vein of whole blood (for the venous output function). Writes OUTDIR/dicom/, OUTDIR/nifti/dsc.nii.gz + dsc.json, OUTDIR/truth/ (labels.nii.gz and the true maps rcbv, cbv, cbf, mtt, tmax, k2 as <map>_truth.nii.gz; CBV and CBF per 100 ml, as paramap's with --kh 1 --rho 1) and OUTDIR/phantom.json (true CBV, CBF, MTT, K2, rCBV per region).\n\nExamples:\n  paramap synth dsc -o dsc_phantom --snr 50\n  paramap synth dsc -o dsc_phantom --te2 60ms --shuffle\n  paramap synth dsc -o study/dsc --study-uid 2.25.1234   # a DSC and a DWI phantom\n  paramap synth dwi -o study/dwi --study-uid 2.25.1234   # in one study"
    )]
    Dsc(DscArgs),
}

#[derive(Args)]
pub struct DscArgs {
    /// Output folder (one that holds anything is refused unless --force)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Replace the output folder's whole content when it holds anything
    #[arg(long)]
    pub force: bool,
    /// Grid size XxYxZ
    #[arg(long, default_value = "48x48x4", value_parser = parse_size)]
    pub size: [usize; 3],
    /// Time points
    #[arg(long, default_value_t = 60)]
    pub frames: usize,
    /// Sampling interval with its unit, 1.5s or 1500ms (a bare number is s, 0.05–10)
    #[arg(long, default_value = "1.5s", value_name = "TIME", value_parser = super::units::interval_s)]
    pub dt: f64,
    /// Echo time with its unit, 30ms or 0.03s (a bare number is ms, 1–200)
    #[arg(long, default_value = "30ms", value_name = "TIME", value_parser = super::units::echo_time_ms)]
    pub te: f64,
    /// Second echo time with its unit (a bare number is ms, 1–200): a dual-echo series
    #[arg(long, value_name = "TIME", value_parser = super::units::echo_time_ms)]
    pub te2: Option<f64>,
    /// Rician noise: baseline SNR of white matter, a positive ratio (omit for noise-free)
    #[arg(long, value_name = "RATIO", value_parser = positive_snr)]
    pub snr: Option<f64>,
    /// Random seed for the noise
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write one Enhanced MR multi-frame file instead of classic single-frame files
    #[arg(long)]
    pub enhanced: bool,
    /// Scramble instance numbers
    #[arg(long)]
    pub shuffle: bool,
    /// Write into this study: the same patient, StudyInstanceUID and Frame of Reference (UID.1)
    /// for every phantom given it, so `paramap run` reads them as one study (e.g. a DWI and a
    /// DSC phantom); digits and dots, at most 62 characters
    #[arg(long, value_name = "UID", value_parser = study_uid)]
    pub study_uid: Option<String>,
}

#[derive(Args)]
pub struct DwiArgs {
    /// Output folder (one that holds anything is refused unless --force)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Replace the output folder's whole content when it holds anything
    #[arg(long)]
    pub force: bool,
    /// Grid size XxYxZ
    #[arg(long, default_value = "48x48x6", value_parser = parse_size)]
    pub size: [usize; 3],
    /// b > 0 shells (s/mm²), comma-separated; each sampled along 3 orthogonal directions
    #[arg(long, default_value = "500,1000", value_delimiter = ',')]
    pub bvalues: Vec<f64>,
    /// Rician noise: baseline SNR of white matter at b = 0, a positive ratio (omit for
    /// noise-free)
    #[arg(long, value_name = "RATIO", value_parser = positive_snr)]
    pub snr: Option<f64>,
    /// Random seed for the noise
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the DICOM carries the b-values: standard, siemens, ge, philips
    #[arg(long, default_value = "standard")]
    pub vendor: crate::io::dicom::write::Flavour,
    /// Write one Enhanced MR multi-frame file instead of classic single-frame files
    #[arg(long)]
    pub enhanced: bool,
    /// Scramble instance numbers (as some scanners do)
    #[arg(long)]
    pub shuffle: bool,
    /// Write each volume as one Siemens mosaic image (CSA header conventions)
    #[arg(long, conflicts_with = "enhanced")]
    pub mosaic: bool,
    /// Write into this study: the same patient, StudyInstanceUID and Frame of Reference (UID.1)
    /// for every phantom given it, so `paramap run` reads them as one study (e.g. a DWI and a
    /// DSC phantom); digits and dots, at most 62 characters
    #[arg(long, value_name = "UID", value_parser = study_uid)]
    pub study_uid: Option<String>,
}

/// A DICOM UID (PS3.5 §9.1): digits and dots, no empty component, at most 64 characters (62
/// here, room for the Frame of Reference's ".1").
fn study_uid(s: &str) -> std::result::Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 62
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a DICOM UID (digits and dots, at most 62 characters), e.g. 2.25.329800735698586629295641978511506172918"))
    }
}

fn study_ids(uid: &Option<String>) -> Option<crate::io::dicom::write::StudyIds> {
    uid.as_ref().map(|u| crate::io::dicom::write::StudyIds {
        study_uid: u.clone(),
        frame_of_reference_uid: format!("{u}.1"),
    })
}

fn parse_size(s: &str) -> std::result::Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(['x', 'X', ','])
        .map(|t| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not XxYxZ"))
        })
        .collect::<std::result::Result<_, _>>()?;
    match v.as_slice() {
        [x, y, z] if *x >= 8 && *y >= 8 && *z >= 1 => Ok([*x, *y, *z]),
        _ => Err(format!("'{s}': give XxYxZ with X, Y ≥ 8 and Z ≥ 1")),
    }
}

pub fn run(args: SynthArgs) -> Result<()> {
    let (out, force) = match &args.kind {
        SynthKind::Dwi(a) => (a.output.clone(), a.force),
        SynthKind::Dsc(a) => (a.output.clone(), a.force),
    };
    let claim = crate::io::output::claim(&out, force)?;
    write(args)?;
    claim.finish();
    Ok(())
}

fn write(args: SynthArgs) -> Result<()> {
    match args.kind {
        SynthKind::Dwi(a) => {
            let spec = DwiPhantomSpec {
                dims: a.size,
                bvalues: a.bvalues.clone(),
                snr: a.snr,
                seed: a.seed,
                append_isotropic: a.vendor == crate::io::dicom::write::Flavour::Philips,
                ..Default::default()
            };
            let files = crate::pipeline::synth::write_dwi_phantom_in(
                &spec,
                &SynthDwiOptions {
                    flavour: a.vendor,
                    enhanced: a.enhanced,
                    shuffle: a.shuffle,
                    mosaic: a.mosaic,
                },
                &a.output,
                study_ids(&a.study_uid).as_ref(),
            )?;
            println!(
                "wrote a DWI phantom to {}: {}",
                a.output.display(),
                entries(&files)
            );
            Ok(())
        }
        SynthKind::Dsc(a) => {
            if a.frames < 20 || a.dt <= 0.0 || a.te <= 0.0 {
                return Err(crate::Error::Invalid(
                    "give at least 20 frames, a positive --dt and --te".into(),
                ));
            }
            if a.te2 == Some(a.te) {
                return Err(crate::Error::Invalid(format!(
                    "--te2 equals --te ({} ms): a dual-echo series needs a second, longer echo time, e.g. --te2 60ms",
                    a.te
                )));
            }
            let spec = crate::synth::dsc::DscPhantomSpec {
                dims: a.size,
                n_t: a.frames,
                dt_s: a.dt,
                te_s: a.te / 1000.0,
                te2_s: a.te2.map(|t| t / 1000.0),
                snr: a.snr,
                seed: a.seed,
                ..Default::default()
            };
            let files = crate::pipeline::synth::write_dsc_phantom_in(
                &spec,
                &crate::pipeline::synth::SynthDscOptions {
                    flavour: crate::io::dicom::write::Flavour::Standard,
                    enhanced: a.enhanced,
                    shuffle: a.shuffle,
                },
                &a.output,
                study_ids(&a.study_uid).as_ref(),
            )?;
            println!(
                "wrote a DSC phantom to {}: {}",
                a.output.display(),
                entries(&files)
            );
            Ok(())
        }
    }
}

/// The phantom's top-level entries as a user lists them: `dicom/, nifti/, phantom.json, truth/`.
fn entries(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if p.is_dir() {
                format!("{name}/")
            } else {
                name.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--snr`: a positive, finite signal-to-noise ratio (0 would be noise without signal).
fn positive_snr(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(snr) if snr.is_finite() && snr > 0.0 => Ok(snr),
        _ => Err(format!(
            "'{text}': the SNR is a positive ratio (e.g. 50); omit --snr for a noise-free phantom"
        )),
    }
}
