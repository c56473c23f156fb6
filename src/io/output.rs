//! Atomic output: every file of a run is written under a hidden staging folder inside the
//! output folder and moved into place only when all of them were written. A failure at any
//! point leaves the output folder as it was (and removes it if this run created it).
//!
//! An output folder that already holds anything is refused unless `--force` ([`claim`]), as
//! MRtrix3 does: a rerun never mixes its files with an earlier run's. With `--force` the old
//! folder is moved aside first and removed only when the new results are complete, so the
//! folder then holds the new run's files and nothing else.
//!
//! Every staging folder in use is registered here, so that an interruption (Ctrl-C, SIGTERM;
//! [`crate::interrupt`]) can remove them before the process exits ([`abandon_all`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Staging folders in use, and old folders moved aside by [`claim`] (aside, original place).
static STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static ASIDE: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

/// Registers a staging folder: [`abandon_all`] removes it unless [`unregister_staging`] was
/// called first.
pub fn register_staging(path: &Path) {
    if let Ok(mut v) = STAGING.lock() {
        v.push(path.to_path_buf());
    }
}

pub fn unregister_staging(path: &Path) {
    if let Ok(mut v) = STAGING.lock() {
        v.retain(|p| p != path);
    }
}

/// Removes every registered staging folder and puts back every old folder that [`claim`]
/// moved aside (the new run did not finish): what an interrupted process does before it exits.
pub fn abandon_all() {
    if let Ok(v) = STAGING.lock() {
        for p in v.iter() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    if let Ok(v) = ASIDE.lock() {
        for (aside, dir) in v.iter() {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::rename(aside, dir);
        }
    }
}

/// An output folder claimed for one run: empty or absent when claimed, or (with `force`) its
/// earlier content moved aside. [`OutputClaim::finish`] removes the earlier content for good;
/// dropping the claim unfinished (the run failed) puts it back.
#[must_use = "finish the claim once the results are written, or the old content comes back"]
pub struct OutputClaim {
    dir: PathBuf,
    aside: Option<PathBuf>,
}

/// Claims `dir` for a run's output. A folder holding anything (even hidden files) is refused
/// with [`Error::OutputNotEmpty`] unless `force`; with `force` its content is moved aside (a
/// hidden `.paramap-old-*` folder beside it) until the run finishes. A path that is not a
/// folder is left for the writer to report.
pub fn claim(dir: &Path, force: bool) -> Result<OutputClaim> {
    let mut claim = OutputClaim {
        dir: dir.to_path_buf(),
        aside: None,
    };
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return Ok(claim);
    };
    if entries.next().is_none() {
        return Ok(claim);
    }
    if !force {
        return Err(Error::OutputNotEmpty {
            path: dir.to_path_buf(),
        });
    }
    let err = |e: std::io::Error| Error::Output {
        path: dir.to_path_buf(),
        reason: format!(
            "cannot move its earlier content aside for --force ({e}); empty it yourself"
        ),
    };
    let name = dir
        .canonicalize()
        .map_err(err)?
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let aside = parent.join(format!(".paramap-old-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(dir, &aside).map_err(err)?;
    if let Ok(mut v) = ASIDE.lock() {
        v.push((aside.clone(), dir.to_path_buf()));
    }
    claim.aside = Some(aside);
    Ok(claim)
}

impl OutputClaim {
    /// The run finished: the earlier content moved aside (with `--force`) is removed.
    pub fn finish(mut self) {
        if let Some(aside) = self.aside.take() {
            if let Ok(mut v) = ASIDE.lock() {
                v.retain(|(a, _)| *a != aside);
            }
            let _ = std::fs::remove_dir_all(&aside);
        }
    }
}

impl Drop for OutputClaim {
    fn drop(&mut self) {
        if let Some(aside) = self.aside.take() {
            if let Ok(mut v) = ASIDE.lock() {
                v.retain(|(a, _)| *a != aside);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::rename(&aside, &self.dir);
        }
    }
}

/// Writes one file under a temporary name beside it, then renames it into place: a reader
/// sees the old file or the new one, never half of one. The file gets the permissions any
/// new file of the user gets (0666 less the umask, as `std::fs::write` gives), not the 0600
/// that temporary files are created with.
pub fn write_file_atomic(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".paramap-partial-");
    #[cfg(unix)]
    {
        // open(2) masks the mode with the umask, as for any file the user creates.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// Moves a completed staging folder to `target`, replacing an earlier result of the same name
/// only once the new one is complete.
pub fn move_into_place(staged: &Path, target: &Path) -> Result<()> {
    let err = |e: std::io::Error| Error::Output {
        path: target.to_path_buf(),
        reason: format!("moving the finished results into place: {e}"),
    };
    if target.exists() {
        let old = target.with_file_name(format!(
            ".paramap-old-{}",
            target.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(target, &old).map_err(err)?;
        std::fs::rename(staged, target).map_err(err)?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(staged, target).map_err(err)?;
    }
    Ok(())
}

/// Every file under `dir`, in name order.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

pub struct OutputDir {
    dir: PathBuf,
    staging: PathBuf,
    created_dir: bool,
    names: Vec<String>,
    committed: bool,
}

impl OutputDir {
    pub fn create(dir: &Path) -> Result<Self> {
        let out_err = |reason: String| Error::Output {
            path: dir.to_path_buf(),
            reason,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(out_err("it exists and is not a folder".into()));
        }
        // A regular file where a folder must go is the usual cause: name it.
        if let Some(file) = dir.ancestors().skip(1).find(|a| a.is_file()) {
            return Err(out_err(format!(
                "{} is a file, not a folder",
                file.display()
            )));
        }
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| out_err(e.to_string()))?;
        let staging = tempfile::Builder::new()
            .prefix(".paramap-partial-")
            .tempdir_in(dir)
            .map_err(|e| {
                if created_dir {
                    let _ = std::fs::remove_dir(dir);
                }
                out_err(e.to_string())
            })?
            .keep();
        register_staging(&staging);
        Ok(OutputDir {
            dir: dir.to_path_buf(),
            staging,
            created_dir,
            names: Vec::new(),
            committed: false,
        })
    }

    /// Where to write the file `name` now; it appears in the output folder at commit.
    pub fn path(&mut self, name: &str) -> PathBuf {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        self.staging.join(name)
    }

    pub fn write_text(&mut self, name: &str, text: &str) -> Result<()> {
        let p = self.path(name);
        std::fs::write(&p, text).map_err(|e| Error::Output {
            path: self.dir.clone(),
            reason: format!("writing {name}: {e}"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves every staged file into the output folder; on a failure, the files already moved
    /// are taken back out.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let mut moved = Vec::new();
        for name in &self.names {
            let target = self.dir.join(name);
            if let Err(e) = std::fs::rename(self.staging.join(name), &target) {
                for (done, name) in moved.iter().zip(&self.names) {
                    let _ = std::fs::rename(done, self.staging.join(name));
                }
                return Err(Error::Output {
                    path: self.dir.clone(),
                    reason: format!("moving {name} into place: {e}"),
                });
            }
            moved.push(target);
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        unregister_staging(&self.staging);
        self.committed = true;
        Ok(moved)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
            unregister_staging(&self.staging);
            if self.created_dir {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit_and_an_abandoned_run_leaves_no_trace() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        {
            let mut out = OutputDir::create(&dir).unwrap();
            out.write_text("a.json", "{}").unwrap();
            assert!(!dir.join("a.json").exists());
        }
        assert!(
            !dir.exists(),
            "an abandoned run removes the folder it created"
        );
        let mut out = OutputDir::create(&dir).unwrap();
        out.write_text("a.json", "{}").unwrap();
        let files = out.commit().unwrap();
        assert_eq!(files, vec![dir.join("a.json")]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn a_folder_holding_anything_is_refused_and_force_replaces_it_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        // Absent or empty: claimed as it is.
        claim(&dir, false).unwrap().finish();
        std::fs::create_dir(&dir).unwrap();
        claim(&dir, false).unwrap().finish();
        std::fs::write(dir.join(".hidden"), "old").unwrap();
        let err = claim(&dir, false).err().unwrap();
        assert!(matches!(err, Error::OutputNotEmpty { .. }));
        assert!(err.to_string().contains("--force"), "{err}");
        // --force, then the run fails: the old content comes back as it was.
        {
            let _c = claim(&dir, true).unwrap();
            assert!(!dir.exists(), "the old content is moved aside");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("half.nii"), "new").unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.join(".hidden")).unwrap(), "old");
        assert!(!dir.join("half.nii").exists());
        // --force, and the run finishes: only the new files remain, nothing aside.
        let c = claim(&dir, true).unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("new.nii"), "new").unwrap();
        c.finish();
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
        let inside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(inside, vec![std::ffi::OsString::from("new.nii")]);
    }

    #[cfg(unix)]
    #[test]
    fn an_atomic_write_gets_the_users_permissions_not_a_temporary_files() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        // What any file the user creates gets: 0666 less the umask (0644 under the usual 022).
        let plain = root.path().join("plain.txt");
        std::fs::write(&plain, "x").unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let atomic = root.path().join("report.html");
        write_file_atomic(&atomic, "<html></html>").unwrap();
        let got = std::fs::metadata(&atomic).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, want, "{got:o} vs {want:o}");
        if want != 0o600 {
            assert_ne!(got, 0o600, "not a temporary file's mode");
        }
        assert_eq!(std::fs::read_to_string(&atomic).unwrap(), "<html></html>");
        // Rewriting replaces the file and keeps the mode.
        write_file_atomic(&atomic, "again").unwrap();
        let again = std::fs::metadata(&atomic).unwrap().permissions().mode() & 0o777;
        assert_eq!(again, want);
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let err = OutputDir::create(&file.join("out"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cannot write output"), "{err}");
    }
}
