//! A folder of DICOM files, read as a diffusion series is: scan, grouping into series,
//! ordering and assembly of slices and volumes, decoding (`load_dwi` on the folder). An input
//! is up to 16 files separated by `--next-file--`. Seeds:
//! `tests/data/fuzz_seeds/folder/` (a whole 8×8×1 phantom series, its files so joined).

use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap_fuzz::{check_message, split_files, workdir};

fn main() {
    let dir = workdir().join("series_fuzz");
    afl::fuzz_nohook!(|data: &[u8]| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, bytes) in split_files(data, 16).into_iter().enumerate() {
            std::fs::write(dir.join(format!("IM_{i:05}.dcm")), bytes).unwrap();
        }
        let result = load_dwi(&dir, &InputOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        // A message names the folder or one of its files (whose paths contain the folder).
        check_message(result, "series_fuzz");
    });
}
