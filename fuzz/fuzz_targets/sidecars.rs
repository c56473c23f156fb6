//! The text sidecars: FSL `.bval` and `.bvec` (`paramap::io::fsl`) and BIDS JSON
//! (`paramap::io::bids::read`), the entry points of `tests/fuzz_readers.rs`'s sidecar
//! campaign. The input's first byte chooses the reader (0: bval, 1: bvec, else JSON); the rest
//! is the file. Seeds: `tests/data/fuzz_seeds/sidecars/`.

use paramap_fuzz::{check_message, workdir};

fn main() {
    let dir = workdir();
    let (bval, bvec, json) = (dir.join("f.bval"), dir.join("f.bvec"), dir.join("f.json"));
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&which, text)) = data.split_first() else {
            return;
        };
        let (file, name) = match which % 3 {
            0 => (&bval, "f.bval"),
            1 => (&bvec, "f.bvec"),
            _ => (&json, "f.json"),
        };
        std::fs::write(file, text).unwrap();
        let result = match which % 3 {
            0 => paramap::io::fsl::read_bval(file).map(|_| ()),
            1 => paramap::io::fsl::read_bvec(file).map(|_| ()),
            _ => paramap::io::bids::read(file).map(|_| ()),
        }
        .map_err(|e| e.to_string());
        check_message(result, name);
    });
}
