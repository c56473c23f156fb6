//! A bounded in-process mutation test of every reader (issue 14, "In CI"): a fixed seed,
//! a few thousand mutated inputs per reader (bit flips, bytes overwritten with huge or random
//! length values, truncation, inserted and repeated chunks), each read as a user's input
//! would be. It fails on any panic that escapes a reader, on any error message that does not
//! name the file (series-level verdicts name the series instead: "series …"), and on Rust
//! debug text in a message. A stack overflow (unbounded recursion) aborts the test process,
//! which fails it too. Every allocation is counted by this test binary's global allocator: any
//! single request above [`ALLOCATION_CAP`] while a reader runs on these inputs of a few kB
//! (whose largest legitimate buffer is well under 1 MiB) fails the test, so a length field
//! trusted before it is checked is caught even where the allocation would have succeeded.
//!
//! Inputs that crashed the coverage-guided fuzz targets of `fuzz/` are replayed from
//! `tests/data/fuzz_regressions/`.
//!
//! Readers: DICOM file (scan + assembly + decoding, through `load_dwi`), NIfTI header and
//! data, FSL .bval/.bvec, BIDS JSON, and the C-STORE data set path (pre-scan + parse).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use paramap::io::dicom::write::Flavour;
use paramap::pipeline::input::{load_dwi, InputOptions};
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::synth::dwi::DwiPhantomSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 14;

/// Largest single allocation a reader may make on the small mutated inputs (64 MiB).
const ALLOCATION_CAP: usize = 64 << 20;

/// The system allocator, remembering the largest single request.
struct Counting;

static LARGEST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The campaigns run one at a time (the allocation count is process-wide).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The largest allocation since the last call, if above [`ALLOCATION_CAP`].
fn allocation_above_cap() -> Option<usize> {
    let largest = LARGEST.swap(0, std::sync::atomic::Ordering::Relaxed);
    (largest > ALLOCATION_CAP).then_some(largest)
}

/// One mutation of `seed_bytes`; `hot` is the range most worth hitting (the header).
fn mutate(rng: &mut StdRng, seed_bytes: &[u8], hot: std::ops::Range<usize>) -> Vec<u8> {
    let mut b = seed_bytes.to_vec();
    let pos = |rng: &mut StdRng, len: usize| {
        if rng.random_bool(0.8) && hot.end > hot.start && hot.end <= len {
            rng.random_range(hot.clone())
        } else {
            rng.random_range(0..len.max(1))
        }
    };
    for _ in 0..rng.random_range(1..=3) {
        if b.is_empty() {
            break;
        }
        match rng.random_range(0..6) {
            0 => {
                let p = pos(rng, b.len());
                b[p] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                // A length-like field: huge, "undefined", or random.
                let p = pos(rng, b.len()).min(b.len().saturating_sub(4));
                let v: u32 = match rng.random_range(0..4) {
                    0 => 0xFFFF_FFFF,
                    1 => 0x7FFF_FFFF,
                    2 => 0xFFFF_FFF0,
                    _ => rng.random(),
                };
                let end = (p + 4).min(b.len());
                b[p..end].copy_from_slice(&v.to_le_bytes()[..end - p]);
            }
            2 => {
                let cut = pos(rng, b.len());
                b.truncate(cut);
            }
            3 => {
                let p = pos(rng, b.len());
                let n = rng.random_range(1..64).min(b.len() - p);
                let chunk = b[p..p + n].to_vec();
                let at = pos(rng, b.len());
                for _ in 0..rng.random_range(1..20) {
                    b.splice(at..at, chunk.iter().copied());
                }
            }
            4 => {
                let p = pos(rng, b.len());
                b[p] = rng.random();
            }
            _ => {
                let p = pos(rng, b.len());
                let n = rng.random_range(0..16).min(b.len() - p);
                b.drain(p..p + n);
            }
        }
    }
    b
}

/// No Rust debug formatting in a message.
fn debug_text(message: &str) -> Option<&'static str> {
    [
        "Custom {",
        "{ kind",
        "Some(",
        "None where",
        "Os {",
        "panicked",
    ]
    .into_iter()
    .find(|bad| message.contains(bad))
}

/// Runs `read` on each of `n` mutations written to `file`; collects what is wrong.
fn campaign(
    name: &str,
    n: usize,
    seed_bytes: &[u8],
    hot: std::ops::Range<usize>,
    file: &Path,
    read: impl Fn(&Path) -> Result<(), String>,
) {
    campaign_naming(name, n, seed_bytes, hot, file, None, read)
}

/// [`campaign`], where a message may also name `folder` (a verdict on the folder as a whole,
/// e.g. that it holds several series) instead of the file.
fn campaign_naming(
    name: &str,
    n: usize,
    seed_bytes: &[u8],
    hot: std::ops::Range<usize>,
    file: &Path,
    folder: Option<&Path>,
    read: impl Fn(&Path) -> Result<(), String>,
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = StdRng::seed_from_u64(SEED);
    let file_name = file.file_name().unwrap().to_string_lossy().to_string();
    let folder = folder.map(|f| f.display().to_string());
    let mut problems = Vec::new();
    for i in 0..n {
        let bytes = mutate(&mut rng, seed_bytes, hot.clone());
        std::fs::write(file, &bytes).unwrap();
        allocation_above_cap();
        let outcome = catch_unwind(AssertUnwindSafe(|| read(file)));
        if let Some(big) = allocation_above_cap() {
            // Kept, so that the input can be read again outside the campaign.
            let kept = std::env::temp_dir().join(format!("paramap-fuzz-{i}-{file_name}"));
            std::fs::write(&kept, &bytes).unwrap();
            problems.push(format!(
                "input {i}: an allocation of {big} bytes (cap {ALLOCATION_CAP}); kept as {}",
                kept.display()
            ));
        }
        match outcome {
            Err(_) => problems.push(format!("input {i}: a panic escaped the reader")),
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                let names_folder = folder.as_ref().is_some_and(|f| message.contains(f));
                if !message.contains(&file_name) && !message.starts_with("series ") && !names_folder
                {
                    problems.push(format!("input {i}: no file name in {message:?}"));
                }
                if let Some(bad) = debug_text(&message) {
                    problems.push(format!("input {i}: debug text {bad:?} in {message:?}"));
                }
            }
        }
        if problems.len() > 5 {
            break;
        }
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
}

/// The 8×8×2 single-shell DWI phantom, classic or Enhanced.
fn small_phantom_as(dir: &Path, enhanced: bool) {
    write_dwi_phantom(
        &DwiPhantomSpec {
            dims: [8, 8, 2],
            bvalues: vec![1000.0],
            ..Default::default()
        },
        &SynthDwiOptions {
            flavour: Flavour::Standard,
            enhanced,
            shuffle: false,
            mosaic: false,
        },
        dir,
    )
    .unwrap();
}

fn small_phantom(dir: &Path) {
    small_phantom_as(dir, false);
}

/// Mutates the header of a seed DICOM file (`tests/data/fuzz_seeds/`, the bytes after the
/// preamble and before its `pixel_bytes` of pixel data) `inputs` times and reads each as a DWI
/// series. The seeds are fixed files, not phantoms written afresh (whose UIDs are random), so
/// that every run mutates the same bytes: a failure is reproducible.
fn dicom_campaign(name: &str, seed: &str, inputs: usize, pixel_bytes: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let seed_bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fuzz_seeds")
            .join(seed),
    )
    .unwrap();
    let header_end = seed_bytes.len() - pixel_bytes;
    let dir = tmp.path().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    campaign(
        name,
        inputs,
        &seed_bytes,
        128..header_end,
        &dir.join("IM_FUZZ.dcm"),
        |p| {
            load_dwi(p, &InputOptions::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn mutated_dicom_files_give_errors_naming_the_file_and_never_panic() {
    // One 8×8 slice of 16-bit pixels.
    dicom_campaign("DICOM file", "dwi_classic.dcm", 3000, 8 * 8 * 2);
}

#[test]
fn mutated_enhanced_dicom_objects_give_errors_naming_the_file_and_never_panic() {
    // 8 frames of 8×8 16-bit pixels.
    dicom_campaign(
        "Enhanced DICOM object",
        "dwi_enhanced.dcm",
        2000,
        8 * 8 * 2 * 8,
    );
}

#[test]
fn a_folder_with_one_mutated_file_gives_errors_naming_the_file_folder_or_series_and_never_panics() {
    // The 4 files of an 8×8×1 series (b = 0 and three directions at b = 1000), joined by the
    // fuzz target's marker (`fuzz/src/lib.rs`); each input mutates the header of one of them
    // and reads the whole folder: scan, grouping, ordering, assembly and decoding.
    let joined = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fuzz_seeds/folder/dwi_series_8x8x1.bin"),
    )
    .unwrap();
    let marker = b"--next-file--";
    let mut files = vec![];
    let mut rest = &joined[..];
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        files.push(rest[..at].to_vec());
        rest = &rest[at + marker.len()..];
    }
    files.push(rest.to_vec());
    assert_eq!(files.len(), 4);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("series_fuzz");
    std::fs::create_dir_all(&dir).unwrap();
    for (k, bytes) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("IM_{k:05}.dcm")), bytes).unwrap();
    }
    for (k, seed_bytes) in files.iter().enumerate() {
        let file = dir.join(format!("IM_{k:05}.dcm"));
        campaign_naming(
            &format!("DICOM folder, file {k} mutated"),
            400,
            seed_bytes,
            128..seed_bytes.len() - 8 * 8 * 2,
            &file,
            Some(&dir),
            |_| {
                load_dwi(&dir, &InputOptions::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        );
        std::fs::write(&file, seed_bytes).unwrap();
    }
}

#[test]
fn mutated_nifti_files_give_errors_naming_the_file_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    small_phantom(&tmp.path().join("ph"));
    let gz = std::fs::read(tmp.path().join("ph/nifti/dwi.nii.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    campaign(
        "NIfTI",
        3000,
        &raw,
        0..352,
        &tmp.path().join("fuzz.nii"),
        |p| {
            paramap::io::nifti::read(p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn mutated_sidecars_give_errors_naming_the_file_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    small_phantom(&tmp.path().join("ph"));
    let nifti = tmp.path().join("ph/nifti");
    let bval = std::fs::read(nifti.join("dwi.bval")).unwrap();
    let bvec = std::fs::read(nifti.join("dwi.bvec")).unwrap();
    let json = br#"{"RepetitionTime": 1.5, "EchoTime": 0.03, "SliceTiming": [0, 0.75]}"#;
    campaign(
        "bval",
        1500,
        &bval,
        0..bval.len(),
        &tmp.path().join("f.bval"),
        |p| {
            paramap::io::fsl::read_bval(p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    campaign(
        "bvec",
        1500,
        &bvec,
        0..bvec.len(),
        &tmp.path().join("f.bvec"),
        |p| {
            paramap::io::fsl::read_bvec(p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    campaign(
        "BIDS JSON",
        1500,
        json,
        0..json.len(),
        &tmp.path().join("f.json"),
        |p| {
            paramap::io::bids::read(p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn mutated_c_store_data_sets_are_refused_or_parsed_and_never_panic_or_overflow() {
    use dicom_encoding::TransferSyntaxIndex;
    let tmp = tempfile::tempdir().unwrap();
    small_phantom(&tmp.path().join("ph"));
    let file = common::files_below(&tmp.path().join("ph/dicom")).remove(0);
    let obj = dicom_object::open_file(&file).unwrap();
    for ts_uid in ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"] {
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
            .get(ts_uid)
            .unwrap();
        let mut data = Vec::new();
        obj.write_dataset_with_ts(&mut data, ts).unwrap();
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = StdRng::seed_from_u64(SEED);
        let header_end = data.len() - 8 * 8 * 2;
        allocation_above_cap();
        for i in 0..2000 {
            let bytes = mutate(&mut rng, &data, 0..header_end);
            // What the listener does with a received data set: pre-scan, then parse.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let _ = paramap::net::listen::parse_data_set(&bytes, ts_uid);
            }));
            assert!(outcome.is_ok(), "{ts_uid}: input {i} panicked the pre-scan");
            if let Some(big) = allocation_above_cap() {
                panic!("{ts_uid}: input {i}: an allocation of {big} bytes");
            }
        }
    }
}

/// The classic campaign on phantoms written afresh (new UIDs, so other bytes to mutate) 20
/// times: a wider search than the fixed seed's, for a developer hunting a failure
/// (`cargo test --release --test fuzz_readers -- --ignored`).
#[test]
#[ignore]
fn mutated_fresh_dicom_phantoms_hunt() {
    for _ in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        small_phantom(&tmp.path().join("ph"));
        let seed_file = common::files_below(&tmp.path().join("ph/dicom")).remove(0);
        let seed_bytes = std::fs::read(&seed_file).unwrap();
        let header_end = seed_bytes.len() - 8 * 8 * 2;
        campaign(
            "fresh DICOM file",
            3000,
            &seed_bytes,
            128..header_end,
            &tmp.path().join("IM_FUZZ.dcm"),
            |p| {
                load_dwi(p, &InputOptions::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        );
    }
}

/// Reads one input of a fuzz target (`fuzz/fuzz_targets/TARGET.rs`) as that target does, in
/// `dir`; the error message and the name it must carry.
fn as_fuzz_target(target: &str, bytes: &[u8], dir: &Path) -> Result<(), (String, String)> {
    let named =
        |name: &str, r: paramap::Result<()>| r.map_err(|e| (e.to_string(), name.to_string()));
    match target {
        "c_store" => {
            const SYNTAXES: [&str; 4] = [
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.1.99",
                "1.2.840.10008.1.2.2",
            ];
            if let Some((&which, data_set)) = bytes.split_first() {
                // A refusal is the right answer; only a crash or an allocation is wrong.
                let _ = paramap::net::listen::parse_data_set(
                    data_set,
                    SYNTAXES[usize::from(which) % SYNTAXES.len()],
                );
            }
            Ok(())
        }
        "dicom_file" => {
            let file = dir.join("IM_FUZZ.dcm");
            std::fs::write(&file, bytes).unwrap();
            named(
                "IM_FUZZ.dcm",
                load_dwi(&file, &InputOptions::default()).map(|_| ()),
            )
        }
        "dicom_folder" => {
            let folder = dir.join("series_fuzz");
            std::fs::create_dir_all(&folder).unwrap();
            let marker = b"--next-file--";
            let (mut rest, mut k) = (bytes, 0);
            loop {
                let at = (k < 15)
                    .then(|| rest.windows(marker.len()).position(|w| w == marker))
                    .flatten();
                let file = folder.join(format!("IM_{k:05}.dcm"));
                match at {
                    Some(at) => {
                        std::fs::write(file, &rest[..at]).unwrap();
                        rest = &rest[at + marker.len()..];
                        k += 1;
                    }
                    None => {
                        std::fs::write(file, rest).unwrap();
                        break;
                    }
                }
            }
            named(
                "series_fuzz",
                load_dwi(&folder, &InputOptions::default()).map(|_| ()),
            )
        }
        "nifti" => {
            let file = dir.join("fuzz.nii");
            std::fs::write(&file, bytes).unwrap();
            named("fuzz.nii", paramap::io::nifti::read(&file).map(|_| ()))
        }
        "sidecars" => {
            let Some((&which, text)) = bytes.split_first() else {
                return Ok(());
            };
            let name = ["f.bval", "f.bvec", "f.json"][usize::from(which) % 3];
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            named(
                name,
                match which % 3 {
                    0 => paramap::io::fsl::read_bval(&file).map(|_| ()),
                    1 => paramap::io::fsl::read_bvec(&file).map(|_| ()),
                    _ => paramap::io::bids::read(&file).map(|_| ()),
                },
            )
        }
        other => panic!("no fuzz target {other}"),
    }
}

/// Every input that crashed a fuzz target (minimised, in `tests/data/fuzz_regressions/TARGET/`,
/// docs/fuzzing.md) is read again as its target reads it: no panic, no allocation above the
/// cap, and an error that names the file, whatever the reader answers.
#[test]
fn inputs_that_crashed_the_fuzz_targets_are_read_safely_now() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions");
    let mut problems = vec![];
    let mut n = 0;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for target in ["c_store", "dicom_file", "dicom_folder", "nifti", "sidecars"] {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for input in entries.map(|e| e.unwrap().path()) {
            n += 1;
            let bytes = std::fs::read(&input).unwrap();
            let tmp = tempfile::tempdir().unwrap();
            allocation_above_cap();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                as_fuzz_target(target, &bytes, tmp.path())
            }));
            let what = input.display();
            if let Some(big) = allocation_above_cap() {
                problems.push(format!("{what}: an allocation of {big} bytes"));
            }
            match outcome {
                Err(_) => problems.push(format!("{what}: a panic escaped the reader")),
                Ok(Err((message, name))) => {
                    if !message.contains(&name) && !message.starts_with("series ") {
                        problems.push(format!("{what}: no {name} in {message:?}"));
                    }
                    if let Some(bad) = debug_text(&message) {
                        problems.push(format!("{what}: debug text {bad:?} in {message:?}"));
                    }
                }
                Ok(Ok(())) => {}
            }
        }
    }
    assert!(n > 0, "no regression inputs under {}", root.display());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
