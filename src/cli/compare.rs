//! `paramap compare`: follow-up visits on the first visit's grid: registration, change maps,
//! parametric response maps and the ±20% rule per ROI (docs/methods.md §7).

use std::path::PathBuf;

use clap::Args;

use std::process::ExitCode;

use crate::cli::run::DeliveryArgs;
use crate::cli::RecordArgs;
use crate::error::Error;
use crate::io::dicom::derived::{self, Encoding};
use crate::io::nifti::NiftiFormat;
use crate::net::deliver;
use crate::pipeline::compare::{compare, CompareOptions, RegistrationMode};
use crate::pipeline::study::RunOptions;
use crate::pipeline::BackendChoice;
use crate::report::ReadingThresholds;

#[derive(Args)]
#[command(
    after_help = "Each VISIT is a `paramap run` output folder (or one series' folder of `paramap dsc` / `paramap adc`), or a study folder (DICOM or NIfTI), which is first processed as `paramap run` would, into OUTDIR/visits/<position>/. Visits are taken in date order (StudyDate/StudyTime of their DICOM records); a given order that disagrees is warned about. Every later visit is placed on visit 1's DSC grid: series in visit 1's Frame of Reference by scanner coordinates, others by rigid registration (6 DOF, Mattes mutual information, 3 levels) of their baseline signal (DSC S0; DWI b = 0 onto visit 1's b = 0). A pair that cannot be registered (no overlap, another body part) is refused with the reason and nothing is written.\n\nOutputs (in OUTDIR): vN_<map>.nii.gz (rcbv, cbf, adc of every visit on visit 1's grid), vN_delta_<map>_pct.nii.gz (change from visit 1, %), vN_prm_<map>.nii.gz (1 decreased, 2 unchanged, 3 increased by more than --change %; 0 outside either brain mask or invalid in either visit), vN_<dsc|dwi>_s0 / _mask, vN_<dsc|dwi>_itk.txt (ITK/ANTs transform, LPS) and vN_<dsc|dwi>_ras.txt (4×4 RAS mm; MRtrix3 -linear) for each registered series, roi_table.csv (with --roi: each visit's ROI on its own maps), dicom/vN_delta_<map>_pct/ and dicom/vN_prm_<map>/ (derived series in visit N's study on its DSC grid, referencing both visits' source series; sent with --send/--stowrs), report.html (visits side by side at the same slices, change maps, PRMs, ROI table and plot over time, registration quality, dates), compare.json (every placement, its quality, the PRM shares, the ROI rule per pair of consecutive visits).\n\nThe ROI rule: an ROI median rCBV rising, or ADC falling, by more than --change % between visits supports true progression (docs/methods.md §1); support for a reader, not a diagnosis.\n\nExamples:\n  paramap run sample_data -o visit1\n  paramap compare visit1 visit2 -o change\n  paramap compare visit1 visit2 visit3 -o change --roi v1_lesion.nii.gz --roi v2_lesion.nii.gz --roi v3_lesion.nii.gz\n  paramap compare visit1 visit2 -o change --change 25 --json"
)]
pub struct CompareArgs {
    /// Visit folders (at least two): `paramap run` outputs or study folders
    #[arg(required = true, num_args = 2.., value_name = "VISIT")]
    pub visits: Vec<PathBuf>,
    /// Output folder (created if needed; one that holds anything is refused unless --force)
    #[arg(short, long, value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Lesion ROI, one per visit in visit order, each drawn on that visit's own series: a NIfTI
    /// mask (non-zero = inside) or a DICOM Segmentation of one segment
    #[arg(long = "roi", value_name = "FILE")]
    pub rois: Vec<PathBuf>,
    /// Change threshold (%) of the parametric response map and the ROI rule
    #[arg(long, default_value_t = 20.0, value_name = "PERCENT")]
    pub change: f64,
    /// auto: register series outside visit 1's Frame of Reference, place the others by
    /// scanner coordinates; always: register every later series
    #[arg(long, default_value = "auto", value_parser = ["auto", "always"])]
    pub registration: String,
    /// Reading threshold: ROI median rCBV below this counts as low (growth with low rCBV)
    #[arg(long, default_value_t = 1.5)]
    pub rcbv_low: f64,
    /// Write the NIfTI maps as .nii instead of .nii.gz
    #[arg(long)]
    pub uncompressed: bool,
    /// DICOM change maps and PRMs, derived series in each later visit's study on its DSC grid:
    /// classic (MR images, 16-bit + rescale), parametric-map (float), or none
    #[arg(long, default_value = "classic", value_name = "ENCODING")]
    pub dicom: String,
    /// Root of the derived series' new UIDs: 2.25 (UUID-derived) or your registered root
    #[arg(long, default_value = derived::UUID_UID_ROOT, value_name = "ROOT")]
    pub uid_root: String,
    /// Where a visit given as a study folder is processed: auto, gpu or cpu (as `paramap run`)
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<BackendChoice>())]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub record: RecordArgs,
}

pub fn run(a: CompareArgs) -> ExitCode {
    let fail = |e: Error| super::exit_for(&e);
    let dicom = match a.dicom.as_str() {
        "none" => None,
        e => match e.parse::<Encoding>() {
            Ok(e) => Some(e),
            Err(e) => return fail(Error::Invalid(e)),
        },
    };
    if let Err(e) = derived::check_uid_root(&a.uid_root).and_then(|_| a.delivery.check()) {
        return fail(e);
    }
    let thresholds = ReadingThresholds {
        rcbv_low: a.rcbv_low,
        rcbv_high: a.rcbv_low.max(ReadingThresholds::default().rcbv_high),
        ..ReadingThresholds::default()
    };
    let opts = CompareOptions {
        dicom,
        uid_root: a.uid_root.clone(),
        run: RunOptions {
            backend: a.backend,
            dicom: dicom.or(Some(Encoding::Classic)),
            uid_root: a.uid_root.clone(),
            thresholds,
            format: NiftiFormat::uncompressed(a.uncompressed),
            ..RunOptions::default()
        },
        change_pct: a.change,
        rois: a.rois.clone(),
        mode: if a.registration == "always" {
            RegistrationMode::Always
        } else {
            RegistrationMode::Auto
        },
        thresholds,
        format: NiftiFormat::uncompressed(a.uncompressed),
        ..CompareOptions::default()
    };
    let json = a.record.json;
    let progress = |line: &str| {
        if !json {
            eprintln!("{line}");
        }
    };
    let mut delivery_error = None;
    let result = super::claimed(&a.output.clone(), &a.record, "compare.json", || {
        let mut r = compare(&a.visits, &a.output, &opts, &progress)?;
        let d = &a.delivery;
        if d.send.is_some() || d.stowrs.is_some() {
            progress(&format!("sending {} DICOM files", r.dicom_outputs.len()));
            let deliveries = deliver(
                &r.dicom_outputs,
                d.send.as_ref(),
                d.stowrs.as_deref(),
                &d.retry(),
            )?;
            for x in &deliveries {
                progress(&x.summary());
            }
            delivery_error = deliveries.iter().find_map(|x| x.check().err());
            r.deliveries = deliveries;
            crate::io::output::write_file_atomic(
                &a.output.join("compare.json"),
                &serde_json::to_string_pretty(&r)
                    .map_err(|e| Error::Invalid(format!("record: {e}")))?,
            )?;
        }
        if !json {
            for v in &r.visits {
                for p in &v.placements {
                    let q = p
                        .registered
                        .as_ref()
                        .map(|x| {
                            format!(
                                " (Dice {:.3}, Mattes MI {:.3}, {:.1} s)",
                                x.result.quality.dice,
                                x.result.quality.mattes_mi_final,
                                x.result.quality.seconds
                            )
                        })
                        .unwrap_or_default();
                    println!("visit {} {}: {}{q}", v.visit, p.series, p.how);
                }
                for c in &v.changes {
                    if let Some(s) = c.shares.first() {
                        println!(
                            "visit {} {}: {:.1}% of the brain increased, {:.1}% decreased by more than {}%",
                            v.visit,
                            c.map,
                            s.increased * 100.0,
                            s.decreased * 100.0,
                            a.change
                        );
                    }
                }
            }
            for rule in &r.roi_rules {
                println!("{}", rule.statement);
            }
            println!(
                "paramap compare: {} visits → {}",
                r.visits.len(),
                a.output.display()
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        return fail(e);
    }
    if let Some(e) = delivery_error {
        eprintln!("error: {e}");
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
