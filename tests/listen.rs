//! The scanner-side receiver. `paramap listen` takes a phantom study from dcmtk's `storescu`
//! with a corrupt object in the middle: the corrupt one is refused and reported, every good
//! one is on disk byte for byte, the study is processed once quiet, and the server survives
//! garbage on its port and serves the next study. The library's `serve` hands quiet studies to
//! its callback, whose results reach a real Orthanc, and files them in done/ or failed/.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::orthanc::{free_port, Orthanc};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use paramap::io::dicom::write::{new_uid, Flavour};
use paramap::net::cstore::{decode_command, encode_command, C_STORE_RQ};
use paramap::net::listen::{CompletedStudy, ListenConfig, Listener};
use paramap::net::{deliver, Destination, Retry};
use paramap::pipeline::synth::{write_dwi_phantom, SynthDwiOptions};
use paramap::synth::dwi::DwiPhantomSpec;

const DCMTK: &str = "sudo apt-get install -y dcmtk";
const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Generous bound for a study to arrive, go quiet and be processed on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(90);

fn phantom(dir: &Path) -> Vec<PathBuf> {
    let spec = DwiPhantomSpec {
        dims: [16, 16, 2],
        bvalues: vec![1000.0],
        ..Default::default()
    };
    let opts = SynthDwiOptions {
        flavour: Flavour::Standard,
        enhanced: false,
        shuffle: false,
        mosaic: false,
    };
    write_dwi_phantom(&spec, &opts, dir).expect("phantom written");
    let mut files = common::files_below(&dir.join("dicom"));
    files.sort();
    files
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn study_of(file: &Path) -> String {
    text(
        &dicom_object::open_file(file).unwrap(),
        tags::STUDY_INSTANCE_UID,
    )
}

fn sop_of(file: &Path) -> String {
    text(
        &dicom_object::open_file(file).unwrap(),
        tags::SOP_INSTANCE_UID,
    )
}

fn pixels_of(file: &Path) -> Vec<u8> {
    dicom_object::open_file(file)
        .unwrap()
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec()
}

/// Runs dcmtk's storescu; fails with the install line when it is missing.
fn storescu(aet: &str, port: u16, files: &[PathBuf]) -> std::process::Output {
    Command::new("storescu")
        .args(["-aec", aet, "127.0.0.1", &port.to_string()])
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs dcmtk's storescu and could not run it ({e}); install it with: {DCMTK}")
        })
}

/// What a C-STORE carries in the raw client below.
enum Object {
    /// A file's data set, as a real sender would send it.
    File(PathBuf),
    /// Bytes that claim to be a data set: a truncated or garbage object.
    Corrupt(Vec<u8>),
}

/// The SOP Instance UID and the data set bytes (explicit VR little endian) a C-STORE of
/// `object` carries.
fn data_set_of(object: &Object) -> (String, Vec<u8>) {
    match object {
        Object::File(f) => {
            let obj = dicom_object::open_file(f).unwrap();
            let mut data = vec![];
            obj.write_dataset_with_ts(
                &mut data,
                TransferSyntaxRegistry.get(EXPLICIT_VR_LE).unwrap(),
            )
            .unwrap();
            (text(&obj, tags::SOP_INSTANCE_UID), data)
        }
        Object::Corrupt(bytes) => (new_uid(), bytes.clone()),
    }
}

/// An encoded C-STORE-RQ command set (PS3.7 §9.3.1.1) for an MR image `sop`.
fn store_command(message_id: u16, sop: &str) -> Vec<u8> {
    let command = InMemDicomObject::command_from_element_iter([
        DataElement::new(
            tags::AFFECTED_SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(MR_IMAGE_STORAGE),
        ),
        DataElement::new(
            tags::COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(C_STORE_RQ),
        ),
        DataElement::new(tags::MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(tags::PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            tags::COMMAND_DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(0u16),
        ),
        DataElement::new(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(sop),
        ),
    ]);
    encode_command(&command).unwrap()
}

/// A minimal C-STORE SCU written against the standard (PS3.7 §9.1.1) rather than paramap's
/// own sender, so that it can send what no proper sender would; returns each Status.
fn raw_cstore(aet: &str, port: u16, objects: &[Object]) -> Vec<u16> {
    let mut scu = ClientAssociationOptions::new()
        .calling_ae_title("RAWSCU")
        .called_ae_title(aet)
        .with_presentation_context(MR_IMAGE_STORAGE, vec![EXPLICIT_VR_LE])
        .establish(("127.0.0.1", port))
        .expect("association with the listener");
    let pc = scu.presentation_contexts()[0].id;
    let mut statuses = vec![];
    for (i, object) in objects.iter().enumerate() {
        let (sop, data) = data_set_of(object);
        let command = store_command(i as u16 + 1, &sop);
        scu.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .expect("send");
        // The data set in fragments that fit the negotiated PDU size.
        let chunks: Vec<&[u8]> = data.chunks(16 * 1024).collect();
        for (k, chunk) in chunks.iter().enumerate() {
            scu.send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: k + 1 == chunks.len(),
                    data: chunk.to_vec(),
                }],
            })
            .expect("send");
        }
        let Pdu::PData { data } = scu.receive().expect("a C-STORE-RSP") else {
            panic!("the listener did not answer with P-DATA");
        };
        let rsp = decode_command(&data[0].data).unwrap();
        statuses.push(rsp.element(tags::STATUS).unwrap().to_int::<u16>().unwrap());
    }
    scu.release().expect("release");
    statuses
}

/// `paramap listen` as a child process, its stderr in a file; killed on drop. Studies go quiet
/// after 2 s unless `extra` gives `--quiet-period`.
struct ListenProcess {
    child: Child,
    log: PathBuf,
}

impl ListenProcess {
    fn start(port: u16, aet: &str, workdir: &Path, extra: &[&str]) -> ListenProcess {
        let log = workdir.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_paramap"))
            .args(["listen", "--port", &port.to_string(), "--aet", aet, "-o"])
            .arg(workdir)
            .args(["--bind", "127.0.0.1"])
            .args(if extra.contains(&"--quiet-period") {
                &[][..]
            } else {
                &["--quiet-period", "2"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("paramap listen starts");
        let mut p = ListenProcess { child, log };
        p.wait_for(|log| log.contains("listening on"), "to start listening");
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&mut self, done: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if done(&log) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("paramap listen exited ({status}) waiting {what}; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "paramap listen still waiting {what}; log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ListenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dcm_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = common::files_below(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    v
}

#[test]
fn listen_stores_a_storescu_study_refuses_a_corrupt_object_and_keeps_serving() {
    let orthanc = Orthanc::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let study_a = phantom(&root.path().join("a"));
    let study_b = phantom(&root.path().join("b"));
    assert_eq!(study_a.len(), 8);
    let work = root.path().join("work");
    let port = free_port();
    let aet = "PARAMAPTEST";
    let mut listen = ListenProcess::start(
        port,
        aet,
        &work,
        &["--send", &orthanc.destination(), "--attempts", "2"],
    );

    // Study A arrives over three associations; the corrupt object comes in the middle.
    let out = storescu(aet, port, &study_a[..4]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut truncated = vec![];
    dicom_object::open_file(&study_a[5])
        .unwrap()
        .write_dataset_with_ts(
            &mut truncated,
            TransferSyntaxRegistry.get(EXPLICIT_VR_LE).unwrap(),
        )
        .unwrap();
    truncated.truncate(truncated.len() / 2);
    let statuses = raw_cstore(
        aet,
        port,
        &[
            Object::File(study_a[4].clone()),
            Object::Corrupt(truncated),
            Object::File(study_a[5].clone()),
        ],
    );
    assert_eq!(statuses[0], 0x0000);
    // PS3.4 B.2.3: a failure status (Axxx or Cxxx), so the sender keeps the object.
    assert!(
        statuses[1] >= 0xA000,
        "status {:04X}H for a corrupt object",
        statuses[1]
    );
    assert_eq!(statuses[2], 0x0000);

    // Garbage on the port, and an association for another AE title: both turned away.
    let mut junk = TcpStream::connect(("127.0.0.1", port)).unwrap();
    junk.write_all(&[0x42u8; 300]).unwrap();
    drop(junk);
    let wrong = storescu("SOMEONE_ELSE", port, &study_a[..1]);
    assert!(
        !wrong.status.success(),
        "an association for another AE title was accepted"
    );

    let out = storescu(aet, port, &study_a[6..]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let uid_a = study_of(&study_a[0]);
    let receipt_a = work.join("done").join(&uid_a).join("paramap-listen.json");
    listen.wait_for(|_| receipt_a.is_file(), "for study A to be processed");
    let log = listen.log();
    assert!(
        log.contains("refused"),
        "the corrupt object is reported:\n{log}"
    );
    assert!(log.contains("cannot be parsed"), "{log}");
    assert!(
        log.contains("malformed"),
        "the garbage association is reported:\n{log}"
    );

    // Every good object is on disk as sent, under its study; the corrupt one is not.
    let stored = dcm_files(&work.join("done").join(&uid_a));
    assert_eq!(stored.len(), 8, "{stored:?}");
    for sent in &study_a {
        let sop = sop_of(sent);
        let here = stored
            .iter()
            .find(|p| p.file_stem().unwrap().to_string_lossy() == sop)
            .unwrap_or_else(|| panic!("{sop} was acknowledged but is not on disk"));
        assert_eq!(
            pixels_of(here),
            pixels_of(sent),
            "{sop}: pixel data changed"
        );
        assert_eq!(study_of(here), uid_a);
    }
    let receipt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt_a).unwrap()).unwrap();
    assert_eq!(receipt["n_objects"], 8);
    let rejected = receipt["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{receipt}");
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap()
        .contains("cannot be parsed"));
    assert!(receipt["error"].is_null(), "{receipt}");
    // The results went to Orthanc: every DICOM output the run wrote (the ADC map of the DWI
    // phantom) was acknowledged, and Orthanc files it under the source study.
    let deliveries = receipt["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{receipt}");
    assert!(deliveries[0]["destination"]
        .as_str()
        .unwrap()
        .contains("C-STORE ORTHANC@"));
    assert_eq!(deliveries[0]["failed"].as_array().unwrap().len(), 0);
    let n_outputs = receipt["dicom_outputs"].as_array().unwrap().len();
    assert!(n_outputs >= 1, "{receipt}");
    assert_eq!(deliveries[0]["sent"].as_array().unwrap().len(), n_outputs);
    let in_orthanc = orthanc.series_of_study(&uid_a);
    let sent_series: std::collections::BTreeSet<String> = receipt["dicom_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let obj = dicom_object::open_file(f.as_str().unwrap()).unwrap();
            text(&obj, dicom_dictionary_std::tags::SERIES_INSTANCE_UID)
        })
        .collect();
    for uid in &sent_series {
        assert!(
            in_orthanc.iter().any(|(s, _)| s == uid),
            "derived series {uid} is not under study {uid_a} in Orthanc"
        );
    }

    // Still serving: a second study over a fresh association.
    let out = storescu(aet, port, &study_b);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid_b = study_of(&study_b[0]);
    let receipt_b = work.join("done").join(&uid_b).join("paramap-listen.json");
    listen.wait_for(|_| receipt_b.is_file(), "for study B to be processed");
    assert_eq!(
        dcm_files(&work.join("done").join(&uid_b)).len(),
        study_b.len()
    );
    assert!(listen.child.try_wait().unwrap().is_none());
    assert!(dcm_files(&work.join("incoming")).is_empty());
}

#[test]
fn serve_hands_quiet_studies_to_the_callback_and_files_them_by_outcome() {
    let orthanc = Orthanc::start(&[]);
    let root = tempfile::tempdir().unwrap();
    let study_a = phantom(&root.path().join("a"));
    let study_b = phantom(&root.path().join("b"));
    let uid_a = study_of(&study_a[0]);
    let uid_b = study_of(&study_b[0]);
    let work = root.path().join("work");
    // A study left in incoming/ by an earlier run that stopped: picked up on start.
    let uid_c = "1.2.826.0.1.3680043.10.1.77";
    let left = work.join("incoming").join(uid_c);
    std::fs::create_dir_all(&left).unwrap();
    std::fs::copy(&study_a[0], left.join("left.dcm")).unwrap();

    let mut cfg = ListenConfig::new(0, "SCANNERSIDE", &work);
    cfg.quiet_period = Duration::from_millis(1500);
    cfg.bind = "127.0.0.1".parse().unwrap();
    let listener = Listener::bind(cfg).unwrap();
    let port = listener.port();
    let seen: Arc<Mutex<Vec<CompletedStudy>>> = Arc::default();
    let dest: Destination = orthanc.destination().parse().unwrap();
    let (seen_cb, uid_a_cb, uid_b_cb) = (Arc::clone(&seen), uid_a.clone(), uid_b.clone());
    // The callback forwards what it received (standing in for results) to Orthanc, and
    // fails study B.
    let on_study = move |study: CompletedStudy| {
        let files = dcm_files(&study.dir);
        let outcome = if study.study_uid == uid_b_cb {
            Err(paramap::Error::Invalid("no usable series".into()))
        } else if study.study_uid == uid_a_cb {
            deliver(&files, Some(&dest), None, &Retry::default()).and_then(|d| d[0].check())
        } else {
            Ok(())
        };
        seen_cb.lock().unwrap().push(study);
        outcome
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    let server = std::thread::spawn(move || listener.run(on_study, stop_server));

    let out = storescu("SCANNERSIDE", port, &study_a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = storescu("SCANNERSIDE", port, &study_b);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + PATIENCE;
    while seen.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "studies not handed over in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The folder is moved after the callback returns; stopping waits for it.
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();

    let seen = seen.lock().unwrap();
    let a = seen.iter().find(|s| s.study_uid == uid_a).unwrap();
    assert_eq!(a.n_objects, study_a.len());
    assert!(a.rejected.is_empty());
    assert!(seen
        .iter()
        .any(|s| s.study_uid == uid_c && s.n_objects == 1));
    assert_eq!(
        dcm_files(&work.join("done").join(&uid_a)).len(),
        study_a.len()
    );
    assert_eq!(
        dcm_files(&work.join("failed").join(&uid_b)).len(),
        study_b.len()
    );
    assert_eq!(dcm_files(&work.join("done").join(uid_c)).len(), 1);
    // What the callback forwarded is in Orthanc, under study A, all of it.
    let series = orthanc.series_of_study(&uid_a);
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].1.len(), study_a.len());
}

/// Bytes of an explicit VR little endian data set whose sequences (0008,1115) nest `depth`
/// levels deep (undefined lengths, terminated).
fn deeply_nested(depth: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(depth * 32);
    for _ in 0..depth {
        b.extend([0x08, 0x00, 0x15, 0x11]);
        b.extend(b"SQ\0\0");
        b.extend(u32::MAX.to_le_bytes());
        b.extend([0xFE, 0xFF, 0x00, 0xE0]);
        b.extend(u32::MAX.to_le_bytes());
    }
    for _ in 0..depth {
        b.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        b.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    }
    b
}

#[test]
fn a_10000_deep_c_store_and_an_oversized_object_are_refused_and_the_listener_keeps_serving() {
    // Held in memory (the default threshold) and spooled to disk (past 1 kB: every object).
    for spool_threshold in [64 << 20, 1024] {
        deep_and_oversized(spool_threshold);
    }
}

fn deep_and_oversized(spool_threshold: usize) {
    let root = tempfile::tempdir().unwrap();
    let files = phantom(&root.path().join("a"));
    let work = root.path().join("work");
    let mut cfg = ListenConfig::new(0, "DEEPTEST", &work);
    cfg.quiet_period = Duration::from_secs(600);
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.max_object_bytes = 1 << 20;
    cfg.spool_threshold = spool_threshold;
    let listener = Listener::bind(cfg).unwrap();
    let port = listener.port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    let server = std::thread::spawn(move || listener.run(|_| Ok(()), stop_server));

    // One association: a good object, the 10,000-deep one (refused: 0xC000), a good one.
    let statuses = raw_cstore(
        "DEEPTEST",
        port,
        &[
            Object::File(files[0].clone()),
            Object::Corrupt(deeply_nested(10_000)),
            Object::File(files[1].clone()),
        ],
    );
    assert_eq!(statuses, vec![0, 0xC000, 0]);
    // An object past the maximum: the association is dropped (no status can come back in
    // time for a sender that never stops), nothing stored.
    let dropped = std::panic::catch_unwind(|| {
        raw_cstore("DEEPTEST", port, &[Object::Corrupt(vec![0u8; 3 << 20])])
    });
    assert!(dropped.is_err(), "an oversized object was answered");
    // And the listener still serves.
    let statuses = raw_cstore("DEEPTEST", port, &[Object::File(files[2].clone())]);
    assert_eq!(statuses, vec![0]);
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
    // Every acknowledged object is on disk byte for byte (its pixel data).
    let stored = dcm_files(&work.join("incoming"));
    assert_eq!(stored.len(), 3, "{stored:?}");
    // Nothing left half-written or spooled.
    let partial = common::files_below(&work.join("incoming/.partial"));
    assert!(partial.is_empty(), "{partial:?}");
    for f in [&files[0], &files[1], &files[2]] {
        let sop = sop_of(f);
        let copy = stored
            .iter()
            .find(|s| s.file_stem().unwrap().to_string_lossy() == sop)
            .unwrap_or_else(|| panic!("{sop} not stored"));
        assert_eq!(pixels_of(copy), pixels_of(f));
    }
}

/// Runs dcmtk's echoscu (C-ECHO, PS3.7 §9.1.5) against the listener; true when it answered
/// with success. Fails with the install line when echoscu is missing.
fn echoscu(aet: &str, port: u16) -> bool {
    let out = Command::new("echoscu")
        .args(["-to", "20", "-aec", aet, "127.0.0.1", &port.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!("this test needs dcmtk's echoscu and could not run it ({e}); install it with: {DCMTK}")
        });
    out.status.success()
}

/// An association with a C-STORE request whose data set never ends: `before_stop` bytes
/// (or, with `None`, an endless stream of bytes until the listener cuts it off) sent as
/// fragments that are never the last. Returns the association (still open unless the
/// listener dropped it) and the bytes sent.
fn unfinished_store(
    aet: &str,
    port: u16,
    before_stop: Option<&[u8]>,
) -> (dicom_ul::ClientAssociation<TcpStream>, usize) {
    let mut scu = ClientAssociationOptions::new()
        .calling_ae_title("ENDLESS")
        .called_ae_title(aet)
        .with_presentation_context(MR_IMAGE_STORAGE, vec![EXPLICIT_VR_LE])
        .establish(("127.0.0.1", port))
        .expect("association with the listener");
    let pc = scu.presentation_contexts()[0].id;
    let fragment = |data: Vec<u8>, value_type: PDataValueType| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            // A command is whole; a data fragment is never the last.
            is_last: value_type == PDataValueType::Command,
            value_type,
            data,
        }],
    };
    scu.send(&fragment(
        store_command(1, &new_uid()),
        PDataValueType::Command,
    ))
    .expect("send");
    let mut sent = 0;
    match before_stop {
        Some(part) => {
            scu.send(&fragment(part.to_vec(), PDataValueType::Data))
                .expect("send");
            sent = part.len();
        }
        None => {
            // Bounded: 64 MiB, 16 times the maximum the listener is given below.
            let chunk = vec![0x55u8; 16 * 1024];
            while sent < 64 << 20 {
                if scu
                    .send(&fragment(chunk.clone(), PDataValueType::Data))
                    .is_err()
                {
                    break;
                }
                sent += chunk.len();
            }
        }
    }
    (scu, sent)
}

/// The data set bytes of a stored file (after its preamble and file meta group).
fn stored_data_set(file: &Path) -> Vec<u8> {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[128..132], b"DICM", "{}", file.display());
    // (0002,0000) UL, explicit VR little endian: its value is the rest of the group's length.
    let group = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    bytes[144 + group..].to_vec()
}

#[test]
fn paramap_listen_survives_a_10000_deep_c_store_and_endless_objects_answering_c_echo_after_each() {
    let root = tempfile::tempdir().unwrap();
    let files = phantom(&root.path().join("a"));
    let work = root.path().join("work");
    let port = free_port();
    let aet = "LIVENESS";
    // Objects past 4 MiB are refused; a silent association is dropped after 3 s.
    let mut listen = ListenProcess::start(
        port,
        aet,
        &work,
        &[
            "--quiet-period",
            "600",
            "--max-object-mib",
            "4",
            "--idle-timeout",
            "3",
        ],
    );
    assert!(echoscu(aet, port), "no C-ECHO answer at the start");
    let mut acknowledged = vec![];

    // A good object, the 10,000-deep one (refused: C000H, the association goes on), a good one.
    let objects = [
        Object::File(files[0].clone()),
        Object::Corrupt(deeply_nested(10_000)),
        Object::File(files[1].clone()),
    ];
    assert_eq!(raw_cstore(aet, port, &objects), vec![0, 0xC000, 0]);
    acknowledged.extend([data_set_of(&objects[0]), data_set_of(&objects[2])]);
    assert!(
        echoscu(aet, port),
        "no C-ECHO answer after the 10,000-deep C-STORE"
    );

    // An object that never ends: cut off once past the maximum, its association aborted.
    let (_, sent) = unfinished_store(aet, port, None);
    assert!(
        sent < 64 << 20,
        "the listener took 64 MiB of an object whose maximum is 4 MiB"
    );
    listen.wait_for(
        |log| log.contains("an object larger than the 4194304 bytes accepted"),
        "to refuse the endless object",
    );
    assert!(
        echoscu(aet, port),
        "no C-ECHO answer after the endless object"
    );

    // An object that stops half-way and stays silent: the listener serves others meanwhile,
    // and drops it after the idle timeout.
    let (_, half) = data_set_of(&Object::File(files[2].clone()));
    let (mut stalled, _) = unfinished_store(aet, port, Some(&half[..half.len() / 2]));
    assert!(
        echoscu(aet, port),
        "no C-ECHO answer beside a stalled object"
    );
    let object = Object::File(files[3].clone());
    assert_eq!(
        raw_cstore(aet, port, std::slice::from_ref(&object)),
        vec![0]
    );
    acknowledged.push(data_set_of(&object));
    listen.wait_for(
        |log| log.contains("association ended in the middle of an object"),
        "to drop the stalled object",
    );
    assert!(
        stalled.receive().is_err(),
        "the stalled association is still open"
    );
    assert!(
        echoscu(aet, port),
        "no C-ECHO answer after the stalled object"
    );

    // Still the same process, and every acknowledged object is on disk byte for byte: the
    // data set exactly as sent, behind a file meta group.
    assert!(
        listen.child.try_wait().unwrap().is_none(),
        "paramap listen exited"
    );
    let stored = dcm_files(&work.join("incoming"));
    assert_eq!(stored.len(), acknowledged.len(), "{stored:?}");
    for (sop, data) in &acknowledged {
        let copy = stored
            .iter()
            .find(|s| s.file_stem().unwrap().to_string_lossy() == *sop)
            .unwrap_or_else(|| panic!("{sop} acknowledged but not stored"));
        assert!(stored_data_set(copy) == *data, "{sop} differs on disk");
    }
    // Nothing of the refused, endless or stalled objects is left, whole or in part.
    let partial = common::files_below(&work.join("incoming/.partial"));
    assert!(partial.is_empty(), "{partial:?}");
}

#[test]
fn a_study_that_cannot_be_processed_is_filed_in_failed_with_a_receipt_saying_why() {
    let root = tempfile::tempdir().unwrap();
    let files = phantom(&root.path().join("a"));
    let work = root.path().join("work");
    let port = free_port();
    let aet = "RECEIPT";
    let listen = ListenProcess::start(port, aet, &work, &[]);
    // A DWI series without its last image: processing fails, naming the missing image.
    let out = storescu(aet, port, &files[..7]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt = work
        .join("failed")
        .join(study_of(&files[0]))
        .join("paramap-listen.json");
    let deadline = Instant::now() + PATIENCE;
    while !receipt.is_file() {
        assert!(
            Instant::now() < deadline,
            "no receipt in failed/; log:\n{}",
            listen.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let receipt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    let error = receipt["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{receipt}"));
    assert!(
        error.contains("are missing") && !error.contains("panicked"),
        "{error}"
    );
    assert_eq!(receipt["n_objects"], 7, "{receipt}");
    // The objects themselves are kept beside their receipt.
    assert_eq!(
        dcm_files(&work.join("failed").join(study_of(&files[0]))).len(),
        7
    );
}

#[test]
fn a_silent_connection_is_dropped_after_the_first_contact_timeout_and_extra_ones_at_once() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let files = phantom(&root.path().join("a"));
    let mut cfg = ListenConfig::new(0, "BUSYTEST", &root.path().join("work"));
    cfg.quiet_period = Duration::from_secs(600);
    cfg.bind = "127.0.0.1".parse().unwrap();
    cfg.first_contact_timeout = Duration::from_secs(1);
    cfg.max_associations = 1;
    let listener = Listener::bind(cfg).unwrap();
    let port = listener.port();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    let server = std::thread::spawn(move || listener.run(|_| Ok(()), stop_server));

    // A connection that says nothing takes the one place.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A second one is closed at once: its read ends (EOF or reset) well before any timeout.
    let mut extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "not closed at once"
    );
    // The silent one is dropped after the first-contact timeout (1 s), not the idle one.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5), "held too long");
    // Its place is free again: a real sender is served.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        raw_cstore("BUSYTEST", port, &[Object::File(files[0].clone())]),
        vec![0]
    );
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
}
