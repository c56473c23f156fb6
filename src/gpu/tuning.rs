//! Workgroup sizes chosen by measurement: `paramap bench --tune` times every kernel at each
//! workgroup size on each adapter, and [`choose`] picks the fastest per adapter; the file that
//! keeps them is [`crate::io::tuning`].

use std::collections::BTreeMap;

pub use crate::io::tuning::{path, LoadError, TunedAdapter, TuningFile, ENV};
use crate::io::tuning::{same, AdapterSummary};

/// One run of one pipeline on one adapter at one workgroup size, as `bench` measured it.
#[derive(Debug, Clone)]
pub struct Timing<'a> {
    pub adapter: &'a AdapterSummary,
    pub workgroup_size: u32,
    /// Kernel time on the host's clock, each stage waited for (s).
    pub kernels_s: f64,
    /// Kernel time on the GPU's clock, where it has one (s).
    pub gpu_clock_s: Option<f64>,
    /// What was run, e.g. "adc small".
    pub job: String,
}

/// How much faster than [`super::DEFAULT_WORKGROUP_SIZE`] another size must be to be chosen
/// instead of it: one run per size is a noisy measurement.
pub const MARGIN: f64 = 0.05;

/// The fastest workgroup size of each adapter: kernel time summed over every job, on the GPU's
/// clock where every run has it (else the host's), among the sizes measured for every job; the
/// default size stays unless another is at least [`MARGIN`] faster. Adapters measured at one
/// size only are tuned too (to that size). A run with a non-finite time is left out.
pub fn choose(timings: &[Timing], measured: &str, date: &str) -> Vec<TunedAdapter> {
    let mut out: Vec<TunedAdapter> = Vec::new();
    let mut adapters: Vec<&AdapterSummary> = Vec::new();
    let timings: Vec<&Timing> = timings
        .iter()
        .filter(|t| t.kernels_s.is_finite() && t.gpu_clock_s.is_none_or(f64::is_finite))
        .collect();
    for t in &timings {
        if !adapters.iter().any(|a| same(a, t.adapter)) {
            adapters.push(t.adapter);
        }
    }
    for adapter in adapters {
        let runs: Vec<&Timing> = timings
            .iter()
            .copied()
            .filter(|t| same(t.adapter, adapter))
            .collect();
        let gpu_clock = runs.iter().all(|t| t.gpu_clock_s.is_some());
        let mut jobs: Vec<&str> = runs.iter().map(|t| t.job.as_str()).collect();
        jobs.sort_unstable();
        jobs.dedup();
        let mut sums: BTreeMap<u32, (f64, Vec<&str>)> = BTreeMap::new();
        for t in &runs {
            let s = sums.entry(t.workgroup_size).or_default();
            s.0 += if gpu_clock {
                t.gpu_clock_s.unwrap_or_default()
            } else {
                t.kernels_s
            };
            s.1.push(t.job.as_str());
        }
        // A size that missed a job cannot be compared with the others.
        let kernels_s: BTreeMap<u32, f64> = sums
            .into_iter()
            .filter(|(_, (_, done))| jobs.iter().all(|j| done.contains(j)))
            .map(|(size, (s, _))| (size, s))
            .collect();
        let Some((&fastest, &least)) = kernels_s.iter().min_by(|a, b| a.1.total_cmp(b.1)) else {
            continue;
        };
        let best = match kernels_s.get(&super::DEFAULT_WORKGROUP_SIZE) {
            Some(&default) if least > default * (1.0 - MARGIN) => super::DEFAULT_WORKGROUP_SIZE,
            _ => fastest,
        };
        out.push(TunedAdapter {
            adapter: adapter.clone(),
            workgroup_size: best,
            kernels_s,
            clock: if gpu_clock { "gpu" } else { "host" }.into(),
            measured: measured.into(),
            paramap: env!("CARGO_PKG_VERSION").into(),
            date: date.into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, driver_info: &str) -> AdapterSummary {
        AdapterSummary {
            name: name.into(),
            backend: "Vulkan".into(),
            device_type: "DiscreteGpu".into(),
            driver: "drv".into(),
            driver_info: driver_info.into(),
        }
    }

    fn timing<'a>(
        a: &'a AdapterSummary,
        wg: u32,
        host: f64,
        gpu: Option<f64>,
        job: &str,
    ) -> Timing<'a> {
        Timing {
            adapter: a,
            workgroup_size: wg,
            kernels_s: host,
            gpu_clock_s: gpu,
            job: job.into(),
        }
    }

    #[test]
    fn chooses_least_total_kernel_time_per_adapter_on_the_gpu_clock_where_every_run_has_it() {
        let (a, b) = (adapter("A", "1.0"), adapter("B", "1.0"));
        let t = vec![
            // A: 64 wins adc, 128 wins dsc by more: 128 is fastest in total (GPU clock).
            timing(&a, 64, 9.0, Some(1.0), "adc small"),
            timing(&a, 128, 1.0, Some(1.5), "adc small"),
            timing(&a, 64, 9.0, Some(5.0), "dsc small"),
            timing(&a, 128, 1.0, Some(3.0), "dsc small"),
            // B: no GPU clock on one run, so the host clock for all of B's runs.
            timing(&b, 32, 2.0, Some(0.1), "adc small"),
            timing(&b, 256, 1.0, None, "adc small"),
        ];
        let tuned = choose(&t, "adc, dsc on small", "2026-11-21");
        assert_eq!(tuned.len(), 2);
        assert_eq!(
            (tuned[0].adapter.name.as_str(), tuned[0].workgroup_size),
            ("A", 128)
        );
        assert_eq!(tuned[0].clock, "gpu");
        assert_eq!(tuned[0].kernels_s, BTreeMap::from([(64, 6.0), (128, 4.5)]));
        assert_eq!(
            (tuned[1].adapter.name.as_str(), tuned[1].workgroup_size),
            ("B", 256)
        );
        assert_eq!(tuned[1].clock, "host");
    }

    #[test]
    fn the_default_size_stays_unless_another_is_clearly_faster() {
        let a = adapter("A", "1.0");
        let t = |other: f64| {
            vec![
                timing(&a, 64, 1.0, None, "adc small"),
                timing(&a, 256, other, None, "adc small"),
                timing(&a, 128, f64::NAN, None, "adc small"),
            ]
        };
        assert_eq!(
            choose(&t(0.97), "", "")[0].workgroup_size,
            64,
            "3% is noise"
        );
        assert_eq!(
            choose(&t(0.90), "", "")[0].workgroup_size,
            256,
            "10% is not"
        );
        let tuned = choose(&t(0.90), "", "");
        assert!(
            !tuned[0].kernels_s.contains_key(&128),
            "a non-finite time is left out"
        );
    }

    #[test]
    fn a_size_that_missed_a_job_is_not_chosen() {
        let a = adapter("A", "1.0");
        let t = vec![
            timing(&a, 64, 2.0, None, "adc small"),
            timing(&a, 64, 2.0, None, "dsc small"),
            timing(&a, 256, 0.1, None, "adc small"),
        ];
        let tuned = choose(&t, "", "");
        assert_eq!(tuned[0].workgroup_size, 64);
        assert_eq!(tuned[0].kernels_s, BTreeMap::from([(64, 4.0)]));
    }

    #[test]
    fn saved_file_reads_back_and_a_new_measurement_replaces_only_its_own_adapter_and_driver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("gpu-tuning.json");
        assert_eq!(
            TuningFile::load(&path).unwrap(),
            TuningFile::default(),
            "missing = empty"
        );
        let (a, a2, b) = (
            adapter("A", "1.0"),
            adapter("A", "2.0"),
            adapter("B", "1.0"),
        );
        let mut file = TuningFile::default();
        for (ad, wg) in [(&a, 64), (&a2, 32), (&b, 128)] {
            file.insert(choose(&[timing(ad, wg, 1.0, None, "adc small")], "adc", "d").remove(0));
        }
        file.insert(choose(&[timing(&a, 256, 1.0, None, "adc small")], "adc", "d").remove(0));
        file.save(&path).unwrap();
        let back = TuningFile::load(&path).unwrap();
        assert_eq!(back, file);
        assert_eq!(back.adapters.len(), 3);
        assert_eq!(back.lookup(&a).unwrap().workgroup_size, 256);
        assert_eq!(
            back.lookup(&a2).unwrap().workgroup_size,
            32,
            "another driver version"
        );
        assert_eq!(back.lookup(&b).unwrap().workgroup_size, 128);
        assert!(back.lookup(&adapter("C", "1.0")).is_none());
        // Nothing left beside it but the file itself (written under a temporary name first).
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, b"{\"adapters\": [ {").unwrap();
        let e = TuningFile::load(&path).unwrap_err();
        assert!(matches!(e, LoadError::Damaged(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("t.json") && e.contains("not a paramap tuning file"),
            "{e}"
        );
        // A folder where the file should be cannot be read: a different error.
        let e = TuningFile::load(dir.path()).unwrap_err();
        assert!(matches!(e, LoadError::Unreadable(_)), "{e:?}");
    }
}
