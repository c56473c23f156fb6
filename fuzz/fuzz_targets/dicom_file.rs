//! One DICOM file (classic or Enhanced MR), read as a diffusion series is: pre-scan, parse,
//! series assembly and pixel decoding (`paramap::pipeline::input::load_dwi`, the entry point of
//! `tests/fuzz_readers.rs`'s DICOM campaigns). Seeds: `tests/data/fuzz_seeds/*.dcm`.

use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap_fuzz::{check_message, workdir};

fn main() {
    let dir = workdir().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("IM_FUZZ.dcm");
    afl::fuzz_nohook!(|data: &[u8]| {
        std::fs::write(&file, data).unwrap();
        let result = load_dwi(&file, &InputOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_string());
        check_message(result, "IM_FUZZ.dcm");
    });
}
