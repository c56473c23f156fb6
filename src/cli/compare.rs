//! `paramap compare`: follow-up visits on the first visit's grid: registration, change maps,
//! parametric response maps and the ±20% rule per ROI (docs/methods.md §7).

use std::path::PathBuf;

use clap::Args;

use crate::cli::{claimed, RecordArgs};
use crate::error::Result;
use crate::io::nifti::NiftiFormat;
use crate::pipeline::compare::{compare, CompareOptions, RegistrationMode};
use crate::report::ReadingThresholds;

#[derive(Args)]
#[command(
    after_help = "Each VISIT is a `paramap run` output folder (or one series' folder of `paramap dsc` / `paramap adc`), in time order. Every later visit is placed on visit 1's DSC grid: series in visit 1's Frame of Reference by scanner coordinates, others by rigid registration (6 DOF, Mattes mutual information, 3 levels) of their baseline signal (DSC S0; DWI b = 0 onto visit 1's b = 0). A pair that cannot be registered (no overlap, another body part) is refused with the reason and nothing is written.\n\nOutputs (in OUTDIR): vN_<map>.nii.gz (rcbv, cbf, adc of every visit on visit 1's grid), vN_delta_<map>_pct.nii.gz (change from visit 1, %), vN_prm_<map>.nii.gz (1 decreased, 2 unchanged, 3 increased by more than --change %; 0 outside either brain mask or invalid in either visit), vN_<dsc|dwi>_s0 / _mask, vN_<dsc|dwi>_itk.txt (ITK/ANTs transform, LPS) and vN_<dsc|dwi>_ras.txt (4×4 RAS mm; MRtrix3 -linear) for each registered series, roi_table.csv (with --roi: each visit's ROI on its own maps), report.html, compare.json (every placement, its quality, the PRM shares, the ROI rule per pair of consecutive visits).\n\nThe ROI rule: an ROI median rCBV rising, or ADC falling, by more than --change % between visits supports true progression (docs/methods.md §1); support for a reader, not a diagnosis.\n\nExamples:\n  paramap run sample_data -o visit1\n  paramap compare visit1 visit2 -o change\n  paramap compare visit1 visit2 visit3 -o change --roi v1_lesion.nii.gz --roi v2_lesion.nii.gz --roi v3_lesion.nii.gz\n  paramap compare visit1 visit2 -o change --change 25 --json"
)]
pub struct CompareArgs {
    /// Visit folders in time order (at least two): `paramap run` outputs
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
    #[command(flatten)]
    pub record: RecordArgs,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let opts = CompareOptions {
        change_pct: a.change,
        rois: a.rois.clone(),
        mode: if a.registration == "always" {
            RegistrationMode::Always
        } else {
            RegistrationMode::Auto
        },
        thresholds: ReadingThresholds {
            rcbv_low: a.rcbv_low,
            rcbv_high: a.rcbv_low.max(ReadingThresholds::default().rcbv_high),
            ..ReadingThresholds::default()
        },
        format: NiftiFormat::uncompressed(a.uncompressed),
        ..CompareOptions::default()
    };
    let json = a.record.json;
    claimed(&a.output.clone(), &a.record, "compare.json", || {
        let r = compare(&a.visits, &a.output, &opts)?;
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
    })
}
