//! Atomic output: every file of a run is written under a hidden staging folder inside the
//! output folder and moved into place only when all of them were written. A failure at any
//! point leaves the output folder as it was (and removes it if this run created it).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes one file under a temporary name beside it, then renames it into place: a reader
/// sees the old file or the new one, never half of one.
pub fn write_file_atomic(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".paramap-partial-")
        .tempfile_in(dir)
        .map_err(err)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
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
        self.committed = true;
        Ok(moved)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
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
