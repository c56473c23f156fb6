//! `paramap listen`: the scanner-side receiver. Accepts studies by C-STORE, processes each one
//! as `run` does once it has gone quiet, and optionally forwards the results.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::net::listen::{serve, CompletedStudy, ListenConfig};
use crate::net::Delivery;
use crate::pipeline::study::{run_and_deliver, DeliveryOptions, RunOptions, RunSummary, Status};

#[derive(Args)]
#[command(
    after_help = "Working folder (-o): incoming/<StudyUID>/ holds objects as they arrive (each written to disk before it is acknowledged); a study with no new object for --quiet-period seconds moves to processing/, is processed into results/<StudyUID>/, and ends in done/ (or failed/, with the reason in its paramap-listen.json). Objects that cannot be parsed are refused with a failure status, so the sender keeps them, and logged. Results are reported as sent only when every file was acknowledged; otherwise they stay in results/ and the log says so.\n\nExamples:\n  paramap listen --port 11112 --aet PARAMAP -o /srv/paramap\n  paramap listen --port 11112 --aet PARAMAP -o /srv/paramap --send PACS@10.0.0.5:104\n  paramap listen --port 11112 --aet PARAMAP -o /srv/paramap --stowrs http://pacs:8042/dicom-web\n  paramap listen --port 11112 -o /srv/paramap --quiet-period 30\n\nTest it with dcmtk:  storescu -aec PARAMAP 127.0.0.1 11112 +sd scans/"
)]
pub struct ListenArgs {
    /// TCP port to listen on (11112 is the registered DICOM port; below 1024 needs privileges)
    #[arg(long)]
    pub port: u16,
    /// This node's AE title: senders must call it
    #[arg(long, default_value = "PARAMAP")]
    pub aet: String,
    /// Working folder (incoming/, processing/, results/, done/, failed/)
    #[arg(short, long, value_name = "WORKDIR")]
    pub output: PathBuf,
    /// Seconds without a new object after which a study is complete
    #[arg(long, default_value_t = 10.0, value_name = "S")]
    pub quiet_period: f64,
    #[command(flatten)]
    pub processing: super::run::ProcessingArgs,
    #[command(flatten)]
    pub delivery: super::run::DeliveryArgs,
    /// Address to listen on
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
    /// Largest object accepted, in MiB of data set bytes: an object that grows past it is
    /// refused, its association aborted and nothing of it stored (the sender keeps it)
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub max_object_mib: usize,
    /// Seconds an association may stay silent, also in the middle of an object, before it is
    /// dropped (the unfinished object is not stored and not acknowledged)
    #[arg(long, default_value_t = 300.0, value_name = "S")]
    pub idle_timeout: f64,
}

/// What happened to one study: written next to its objects as `paramap-listen.json`.
#[derive(Serialize)]
struct Receipt<'a> {
    study_uid: &'a str,
    n_objects: usize,
    /// Objects refused on arrival: SOP Instance UID and why.
    rejected: Vec<Rejected<'a>>,
    results: &'a Path,
    outputs: Vec<PathBuf>,
    dicom_outputs: Vec<PathBuf>,
    deliveries: Vec<Delivery>,
    /// Why the study is in failed/ (absent when it is in done/).
    error: Option<String>,
}

#[derive(Serialize)]
struct Rejected<'a> {
    sop_instance_uid: &'a str,
    reason: &'a str,
}

pub fn run(args: ListenArgs) -> Result<()> {
    if !(args.quiet_period > 0.0 && args.quiet_period.is_finite()) {
        return Err(Error::Invalid(
            "--quiet-period must be a positive number of seconds".into(),
        ));
    }
    if !(args.idle_timeout > 0.0 && args.idle_timeout.is_finite()) {
        return Err(Error::Invalid(
            "--idle-timeout must be a positive number of seconds".into(),
        ));
    }
    if !(1..=(1 << 20)).contains(&args.max_object_mib) {
        return Err(Error::Invalid(
            "--max-object-mib must be between 1 and 1048576 (MiB)".into(),
        ));
    }
    args.delivery.check()?;
    let options = args.processing.options()?;
    let mut cfg = ListenConfig::new(args.port, &args.aet, &args.output);
    cfg.quiet_period = Duration::from_secs_f64(args.quiet_period);
    cfg.bind = args.bind;
    cfg.max_object_bytes = args.max_object_mib << 20;
    cfg.idle_timeout = Duration::from_secs_f64(args.idle_timeout);
    let delivery = args.delivery.options();
    let results_root = args.output.join("results");
    let on_study = move |study: CompletedStudy| process(&study, &results_root, &options, &delivery);
    // Ctrl-C or SIGTERM: stop accepting, finish the study in hand (a second signal stops at
    // once, removing staging).
    serve(cfg, on_study, crate::interrupt::shared_flag())
}

/// Processes one completed study, forwards its DICOM results, and leaves a receipt.
fn process(
    study: &CompletedStudy,
    results_root: &Path,
    options: &RunOptions,
    delivery: &DeliveryOptions,
) -> Result<()> {
    let name = study
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| study.study_uid.clone());
    let out = results_root.join(&name);
    // A study sent again replaces its earlier results as a whole (no stale maps beside the new
    // record); they come back if this run fails outright.
    let claim = crate::io::output::claim(&out, true)?;
    let mut receipt = Receipt {
        study_uid: &study.study_uid,
        n_objects: study.n_objects,
        rejected: study
            .rejected
            .iter()
            .map(|(uid, reason)| Rejected {
                sop_instance_uid: uid,
                reason,
            })
            .collect(),
        results: &out,
        outputs: vec![],
        dicom_outputs: vec![],
        deliveries: vec![],
        error: None,
    };
    // A panic in processing is an error like any other: the receipt still says why.
    let outcome = crate::io::dicom::guard::no_panic(|| {
        run_and_deliver(&study.dir, &out, options, delivery, &|line: &str| {
            crate::log::info(&format!("study {}: {line}", study.study_uid))
        })
    })
    .map_err(|why| {
        Error::Invalid(format!(
            "processing stopped on an internal error: {why} (a bug: please report it)"
        ))
    })
    .and_then(|r| r)
    .and_then(|(summary, delivery_error)| {
        receipt.outputs = summary.outputs.clone();
        receipt.dicom_outputs = summary.dicom_outputs.clone();
        receipt.deliveries = summary.deliveries.clone();
        crate::log::info(&format!(
            "study {}: {} outputs written to {}",
            study.study_uid,
            receipt.outputs.len(),
            out.display()
        ));
        crate::log::info(&summary.line());
        // What was made is forwarded even when another series failed; the study is then
        // filed under failed/ for a person to look at.
        delivery_error.map_or(Ok(()), Err)?;
        failed_series(&summary)
    });
    if let Err(e) = &outcome {
        receipt.error = Some(e.to_string());
    }
    if outcome.is_ok() || !receipt.outputs.is_empty() {
        claim.finish();
    }
    write_receipt(&study.dir, &receipt)?;
    outcome
}

/// An error naming the series that failed, if any did.
fn failed_series(summary: &RunSummary) -> Result<()> {
    let failed: Vec<String> = summary
        .series
        .iter()
        .filter(|s| s.status == Status::Failed)
        .map(|s| format!("{}: {}", s.label, s.reason))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{} series failed: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}

fn write_receipt(dir: &Path, receipt: &Receipt) -> Result<()> {
    let path = dir.join("paramap-listen.json");
    let text = serde_json::to_string_pretty(receipt)
        .map_err(|e| Error::Invalid(format!("cannot encode the receipt: {e}")))?;
    crate::io::output::write_file_atomic(&path, &text)
}
