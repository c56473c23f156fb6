//! A NIfTI-1 file, header and data (`paramap::io::nifti::read`, the entry point of
//! `tests/fuzz_readers.rs`'s NIfTI campaign). Seeds: `tests/data/fuzz_seeds/nifti/`.

use paramap_fuzz::{check_message, workdir};

fn main() {
    let file = workdir().join("fuzz.nii");
    afl::fuzz_nohook!(|data: &[u8]| {
        std::fs::write(&file, data).unwrap();
        let result = paramap::io::nifti::read(&file)
            .map(|_| ())
            .map_err(|e| e.to_string());
        check_message(result, "fuzz.nii");
    });
}
