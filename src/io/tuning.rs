//! The GPU tuning file: the workgroup size `paramap bench --tune` measured fastest on each
//! adapter ([`crate::gpu::tuning`] chooses it; `adc`, `dsc`, `run` and `listen` use it on that
//! adapter unless `--workgroup-size` says otherwise).
//!
//! The file is JSON (one entry per adapter, matched by name, backend, driver and driver
//! version, so a driver update asks for a new measurement) at `$PARAMAP_GPU_TUNING`, else
//! `$XDG_CACHE_HOME/paramap/gpu-tuning.json`, else `~/.cache/paramap/gpu-tuning.json`. It is a
//! cache: a missing file means the default size, and a damaged one is ignored with a notice,
//! never an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What the adapter is, as recorded in outputs, benchmark tables and the tuning file (its
/// `wgpu::AdapterInfo` in words; `crate::gpu::summary_of` makes one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    /// "name (backend)", how tables and benchmark names show an adapter.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.backend)
    }
}

/// The environment variable that names the tuning file.
pub const ENV: &str = "PARAMAP_GPU_TUNING";

/// One adapter's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedAdapter {
    pub adapter: AdapterSummary,
    /// The fastest threads per workgroup: least kernel time summed over every pipeline and
    /// phantom size measured.
    pub workgroup_size: u32,
    /// Kernel time (s) summed over the same runs, per size measured.
    pub kernels_s: BTreeMap<u32, f64>,
    /// "gpu" where the adapter timed its kernels on its own clock, "host" otherwise.
    pub clock: String,
    /// The pipelines and sizes measured, e.g. "adc, dsc on small, clinical".
    pub measured: String,
    /// paramap version and date (UTC) of the measurement.
    pub paramap: String,
    pub date: String,
}

/// Why the tuning file could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// It exists but cannot be read (permissions, a folder…).
    Unreadable(String),
    /// It is not a tuning file (damaged, or something else).
    Damaged(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreadable(e) | LoadError::Damaged(e) => f.write_str(e),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TuningFile {
    pub adapters: Vec<TunedAdapter>,
}

/// Where the tuning file is (`$PARAMAP_GPU_TUNING`, the XDG cache, `~/.cache`), or None where
/// there is no home.
pub fn path() -> Option<PathBuf> {
    let from = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = from(ENV) {
        return Some(p);
    }
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|c| c.join("paramap").join("gpu-tuning.json"))
}

/// The tuning file at [`path`] with that path, read; None where there is no home to keep
/// one in.
pub fn load() -> Option<(PathBuf, std::result::Result<TuningFile, LoadError>)> {
    let path = path()?;
    let file = TuningFile::load(&path);
    Some((path, file))
}

/// Same adapter, driver and driver version.
pub fn same(a: &AdapterSummary, b: &AdapterSummary) -> bool {
    a.name == b.name
        && a.backend == b.backend
        && a.driver == b.driver
        && a.driver_info == b.driver_info
}

impl TuningFile {
    /// Reads `path`; a missing file is an empty one. Damaged JSON is an error that names the
    /// file (callers turn it into a notice).
    pub fn load(path: &Path) -> std::result::Result<Self, LoadError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LoadError::Damaged(format!(
                    "{} is not a paramap tuning file ({e})",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(LoadError::Unreadable(format!(
                "cannot read {} ({e})",
                path.display()
            ))),
        }
    }

    /// The measurement for `adapter`, if there is one.
    pub fn lookup(&self, adapter: &AdapterSummary) -> Option<&TunedAdapter> {
        self.adapters.iter().find(|t| same(&t.adapter, adapter))
    }

    /// Adds `tuned`, replacing an earlier measurement of the same adapter and driver.
    pub fn insert(&mut self, tuned: TunedAdapter) {
        self.adapters.retain(|t| !same(&t.adapter, &tuned.adapter));
        self.adapters.push(tuned);
    }

    /// Writes the file whole ([`super::output::write_file_atomic`]), creating its folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let json = serde_json::to_string_pretty(self).map_err(|e| crate::error::Error::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        super::output::write_file_atomic(path, &json)
    }
}
