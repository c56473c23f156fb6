//! The file boundary of the DICOM readers: every file (and every data set received by the
//! listener) passes a pre-scan of its raw bytes before `dicom-object` parses it, and every call
//! into the DICOM libraries is guarded against panics.
//!
//! Why a pre-scan: `dicom-object` parses nested sequences recursively, so a file with sequences
//! nested a few thousand levels deep overflows the stack and aborts the process (no panic to
//! catch); and it reserves an element's declared length before reading it, so a 6 kB file that
//! declares a 4 GB element takes 4 GB. The pre-scan walks the element headers without
//! recursion (an explicit stack), in explicit and implicit VR, little and big endian, defined
//! and undefined lengths (items, delimiters, encapsulated pixel data), and refuses a file where
//!
//! - sequences nest deeper than [`MAX_SEQUENCE_DEPTH`] levels, or
//! - an element, item or sequence declares more bytes than remain in the file (or in the
//!   item or sequence that holds it), or
//! - a binary value (US, SS, UL, SL, FL, FD, AT, OW, OL, OF, OD, SV, UV, OV; in implicit VR
//!   the dictionary's VR) declares a length that is not a whole number of its values
//!   (PS3.5 §6.2): the parser reads whole values only and would take the next element's
//!   header from the wrong byte, where the walk's checks do not hold (found by the C-STORE
//!   fuzz target, docs/fuzzing.md).
//!
//! So no value that the parser then allocates can exceed the file's own size (for a deflated
//! data set: [`DEFLATE_MAX_RATIO`] times the compressed bytes). Values read only when needed
//! (pixel data) are checked against [`MAX_DECODED_PIXEL_BYTES`] before decoding (see
//! [`check_decoded_size`]). The walk follows PS3.5 §7.1 (element encoding) and §7.5 (nesting
//! of data sets), and takes a data element of undefined length as a sequence, as DCMTK and
//! pydicom do (PS3.5 §6.2.2 for UN of undefined length).
//!
//! The bound of 64 levels is far above what real objects use (structured reports, the
//! deepest, stay below 20; PS3.3 functional groups use 3) and far below what the recursive
//! parser can take on a 2 MiB thread stack (the size of Rust's and rayon's worker threads).

use std::io::{BufReader, Read, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

use super::elements::{DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE};
use crate::error::{Error, Result};

/// Deepest nesting of sequences accepted (a sequence inside an item of a sequence counts 2).
pub const MAX_SEQUENCE_DEPTH: usize = 64;

/// A deflated data set (transfer syntax 1.2.840.10008.1.2.1.99) inflates to at most this many
/// times its compressed size (the limit of the deflate format).
pub const DEFLATE_MAX_RATIO: u64 = 1032;

/// Most bytes of decoded pixel data one file may produce (4 GiB): an Enhanced MR series of
/// 100 volumes × 70 slices of 256² 16-bit pixels needs 0.9 GiB.
pub const MAX_DECODED_PIXEL_BYTES: u64 = 4 << 30;

const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITER: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITER: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// A byte source that the pre-scan can skip through.
trait Source: Read {
    fn skip(&mut self, n: u64) -> std::io::Result<()>
    where
        Self: Sized,
    {
        let copied = std::io::copy(&mut self.by_ref().take(n), &mut std::io::sink())?;
        if copied < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl Source for BufReader<std::fs::File> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.seek_relative(n as i64)
    }
}

impl Source for std::io::Cursor<&[u8]> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.seek(std::io::SeekFrom::Current(n as i64)).map(|_| ())
    }
}

impl<R: Read> Source for flate2::read::DeflateDecoder<R> {}

#[derive(Clone, Copy)]
enum Encoding {
    Explicit { big_endian: bool },
    Implicit,
}

/// One open sequence or item during the walk.
struct Open {
    sequence: bool,
    /// Where it ends (defined length), or `None` until its delimiter.
    end: Option<u64>,
    tag: Tag,
}

struct Walk<'a, S: Source> {
    src: &'a mut S,
    pos: u64,
    /// Bytes that exist: the file's size (or the cap for a deflated stream).
    end: u64,
    enc: Encoding,
}

fn tag_text(t: Tag) -> String {
    format!("({:04X},{:04X})", t.0, t.1)
}

impl<S: Source> Walk<'_, S> {
    fn read<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.src.read_exact(&mut b).map_err(|_| {
            format!(
                "the file ends at byte {} inside {what}; it is truncated",
                self.pos
            )
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn read_u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        let b = self.read::<2>(what)?;
        Ok(self.u16(b))
    }

    fn read_u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.read::<4>(what)?;
        Ok(self.u32(b))
    }

    fn u16(&self, b: [u8; 2]) -> u16 {
        match self.enc {
            Encoding::Explicit { big_endian: true } => u16::from_be_bytes(b),
            _ => u16::from_le_bytes(b),
        }
    }

    fn u32(&self, b: [u8; 4]) -> u32 {
        match self.enc {
            Encoding::Explicit { big_endian: true } => u32::from_be_bytes(b),
            _ => u32::from_le_bytes(b),
        }
    }

    fn skip(&mut self, n: u64, tag: Tag) -> std::result::Result<(), String> {
        self.src.skip(n).map_err(|_| {
            format!(
                "the file ends inside element {} at byte {}; it is truncated",
                tag_text(tag),
                self.pos
            )
        })?;
        self.pos += n;
        Ok(())
    }

    /// Checks that `len` bytes from here fit in the file and in every open container.
    fn fits(&self, len: u64, tag: Tag, open: &[Open]) -> std::result::Result<(), String> {
        let limit = open
            .iter()
            .filter_map(|o| o.end)
            .chain([self.end])
            .min()
            .unwrap_or(self.end);
        if self.pos.saturating_add(len) > limit {
            let within = if limit < self.end {
                "the sequence or item that holds it"
            } else {
                "the file"
            };
            return Err(format!(
                "element {} at byte {} declares a length of {len} bytes but only {} bytes remain in {within}; the file is truncated or damaged",
                tag_text(tag),
                self.pos,
                limit.saturating_sub(self.pos)
            ));
        }
        Ok(())
    }

    /// Tag and length of the next element header; `None` at the end of the data.
    fn header(&mut self) -> std::result::Result<Option<(Tag, Option<VR>, u32)>, String> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let mut first = [0u8; 4];
        match self.src.read(&mut first[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot be read at byte {} ({e})", self.pos)),
        }
        self.src.read_exact(&mut first[1..]).map_err(|_| {
            format!(
                "the file ends at byte {} inside an element header; it is truncated",
                self.pos
            )
        })?;
        self.pos += 4;
        let tag = Tag(
            self.u16([first[0], first[1]]),
            self.u16([first[2], first[3]]),
        );
        if tag.0 == 0xFFFE {
            let len = self.read_u32("an item header")?;
            return Ok(Some((tag, None, len)));
        }
        match self.enc {
            Encoding::Implicit => {
                let len = self.read_u32("an element header")?;
                Ok(Some((tag, None, len)))
            }
            Encoding::Explicit { .. } => {
                let vr_bytes = self.read::<2>("an element header")?;
                let vr = VR::from_binary(vr_bytes);
                let long = match vr {
                    Some(v) => long_length(v),
                    None => {
                        return Err(format!(
                            "element {} at byte {} has an invalid value representation {:?}; the file is damaged",
                            tag_text(tag),
                            self.pos - 6,
                            String::from_utf8_lossy(&vr_bytes)
                        ))
                    }
                };
                let len = if long {
                    self.read::<2>("an element header")?;
                    self.read_u32("an element header")?
                } else {
                    self.read_u16("an element header")? as u32
                };
                Ok(Some((tag, vr, len)))
            }
        }
    }

    /// Walks a data set to its end (or to the first top-level tag at or after `stop`).
    fn data_set(&mut self, stop: Option<Tag>) -> std::result::Result<(), String> {
        let mut open: Vec<Open> = Vec::new();
        loop {
            // Close the containers of defined length that end here.
            while let Some(o) = open.last() {
                match o.end {
                    Some(e) if self.pos >= e => {
                        if self.pos > e {
                            return Err(format!(
                                "an element runs past the end of {} {} at byte {e}; the file is damaged",
                                if o.sequence { "sequence" } else { "an item of sequence" },
                                tag_text(o.tag)
                            ));
                        }
                        open.pop();
                    }
                    _ => break,
                }
            }
            let Some((tag, vr, len)) = self.header()? else {
                // The end of the data: sequences left open are closed by it, as readers do.
                return Ok(());
            };
            if open.is_empty() && tag == ITEM_DELIMITER {
                // An item delimiter outside any sequence: `dicom-parser` reads its 8 bytes and
                // goes on with the next element, whatever its length field says and without
                // stopping at `stop` (its `read_until` looks at element tags only). The walk
                // does the same, so that both read the next element from the same byte (a
                // walk that stopped here let the parser read a 1.4 GB length unchecked; found
                // by the DICOM fuzz targets, docs/fuzzing.md).
                continue;
            }
            if open.is_empty() && stop.is_some_and(|s| tag >= s) {
                return Ok(());
            }
            let defined = (len != UNDEFINED).then_some(len as u64);
            match tag {
                ITEM => {
                    let Some(seq) = open.last().filter(|o| o.sequence) else {
                        return Err(format!(
                            "an item starts at byte {} outside any sequence; the file is damaged",
                            self.pos - 8
                        ));
                    };
                    let seq_tag = seq.tag;
                    if let Some(l) = defined {
                        self.fits(l, tag, &open)?;
                    }
                    open.push(Open {
                        sequence: false,
                        end: defined.map(|l| self.pos + l),
                        tag: seq_tag,
                    });
                    continue;
                }
                ITEM_DELIMITER | SEQUENCE_DELIMITER => {
                    let item = tag == ITEM_DELIMITER;
                    let at = self.pos - 8;
                    if len != 0 {
                        return Err(format!(
                            "a delimiter {} at byte {at} declares a length of {len} where it must be 0; the file is damaged",
                            tag_text(tag)
                        ));
                    }
                    // It must close what is open: an undefined-length item or sequence.
                    match open.last() {
                        Some(o) if o.sequence != item && o.end.is_none() => {
                            open.pop();
                        }
                        // A sequence delimiter after the last item of a defined-length sequence,
                        // or a stray sequence delimiter of length 0 at the top level: read past, as DCMTK does.
                        None => {}
                        Some(_) => {
                            return Err(format!(
                                "{} delimiter at byte {at} does not close the {} open there; the file is damaged",
                                if item { "an item" } else { "a sequence" },
                                if item { "sequence" } else { "item" }
                            ))
                        }
                    }
                    continue;
                }
                Tag(0xFFFE, _) => {
                    return Err(format!(
                        "unknown item tag {} at byte {}; the file is damaged",
                        tag_text(tag),
                        self.pos - 8
                    ))
                }
                _ => {}
            }
            if tag == PIXEL_DATA && defined.is_none() {
                self.fragments()?;
                continue;
            }
            let sequence = match (vr, defined) {
                (Some(VR::SQ), _) => true,
                (_, None) => true,
                (Some(_), Some(_)) => false,
                (None, Some(_)) => is_dictionary_sequence(tag),
            };
            if sequence {
                let depth = open.iter().filter(|o| o.sequence).count() + 1;
                if depth > MAX_SEQUENCE_DEPTH {
                    return Err(format!(
                        "sequences are nested more than {MAX_SEQUENCE_DEPTH} levels deep (sequence {} at byte {}); real objects nest a few levels, so the file is damaged or hostile",
                        tag_text(tag),
                        self.pos
                    ));
                }
                if let Some(l) = defined {
                    self.fits(l, tag, &open)?;
                }
                open.push(Open {
                    sequence: true,
                    end: defined.map(|l| self.pos + l),
                    tag,
                });
            } else {
                let l = defined.unwrap_or(0);
                self.fits(l, tag, &open)?;
                // The parser reads a binary value as whole numbers of its values and drops the
                // rest of the declared length, so it would read the next header a few bytes
                // early: a length the walk above never checked (e.g. 800 MB read from text).
                let vr = vr.unwrap_or_else(|| dictionary_vr(tag));
                let size = value_size(vr);
                if l % size != 0 {
                    return Err(format!(
                        "element {} at byte {} has value representation {} but a length of {l} bytes, not a multiple of its {size}-byte values; the file is damaged",
                        tag_text(tag),
                        self.pos,
                        vr.to_string()
                    ));
                }
                self.skip(l, tag)?;
            }
        }
    }

    /// Encapsulated pixel data: items of defined length up to the sequence delimiter.
    fn fragments(&mut self) -> std::result::Result<(), String> {
        loop {
            let Some((tag, _, len)) = self.header()? else {
                return Err(
                    "the file ends inside the encapsulated pixel data (7FE0,0010); it is truncated"
                        .into(),
                );
            };
            match tag {
                SEQUENCE_DELIMITER => return Ok(()),
                ITEM if len != UNDEFINED => {
                    self.fits(len as u64, PIXEL_DATA, &[])?;
                    self.skip(len as u64, PIXEL_DATA)?;
                }
                _ => {
                    return Err(format!(
                        "the encapsulated pixel data (7FE0,0010) holds {} at byte {} where a fragment item belongs; the file is damaged",
                        tag_text(tag),
                        self.pos - 8
                    ))
                }
            }
        }
    }
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length (PS3.5 §7.1.2).
fn long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

/// Bytes per value of a binary VR (PS3.5 §6.2 Table 6.2-1), 1 for text and bytes.
fn value_size(vr: VR) -> u64 {
    match vr {
        VR::US | VR::SS | VR::OW => 2,
        VR::AT | VR::UL | VR::SL | VR::FL | VR::OL | VR::OF => 4,
        VR::FD | VR::OD | VR::SV | VR::UV | VR::OV => 8,
        _ => 1,
    }
}

/// The VR an implicit-VR parser gives `tag`: the dictionary's (US for US-or-SS, OW for
/// OB-or-OW), UN where the tag is not in it, as `dicom-encoding`'s implicit decoder does.
fn dictionary_vr(tag: Tag) -> VR {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

fn is_dictionary_sequence(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| matches!(e.vr(), VirtualVr::Exact(VR::SQ)))
}

fn encoding_of(ts: &str) -> Encoding {
    match ts.trim_end_matches(['\0', ' ']) {
        IMPLICIT_VR_LE => Encoding::Implicit,
        EXPLICIT_VR_BE => Encoding::Explicit { big_endian: true },
        _ => Encoding::Explicit { big_endian: false },
    }
}

/// Pre-scans a DICOM file (preamble, "DICM", file meta group, data set) as described in the
/// module documentation; with `stop`, the walk ends at the first top-level tag at or after it.
/// Err: what is wrong, with the element and byte offset.
pub fn check_file(path: &Path, stop: Option<Tag>) -> std::result::Result<(), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot be opened ({e}); check it"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?
        .len();
    let mut src = BufReader::new(file);
    let mut walk = Walk {
        src: &mut src,
        pos: 0,
        end: size,
        enc: Encoding::Explicit { big_endian: false },
    };
    let preamble = walk.read::<132>("the preamble")?;
    if &preamble[128..] != b"DICM" {
        return Err("has no DICM marker at byte 128: not a DICOM file".into());
    }
    // The file meta group (PS3.10 §7.1): explicit VR little endian, its group length
    // (0002,0000) first. It ends where `dicom-object` ends it: once the group length's bytes
    // are read, whatever the tags read meanwhile (an element of another group inside them is
    // read as part of the meta group), so that the walk below starts the data set where the
    // parser does (a different start let a damaged file's data set pass unchecked; found by
    // the DICOM-file fuzz target, docs/fuzzing.md).
    let mut ts = String::new();
    let mut group_length: Option<u64> = None;
    let mut consumed = 0u64;
    loop {
        if group_length.is_some_and(|g| consumed >= g) {
            break;
        }
        let mut peek = [0u8; 2];
        let at = walk.pos;
        if walk.src.read_exact(&mut peek).is_err() {
            return Ok(()); // a file of only its meta group
        }
        let group = u16::from_le_bytes(peek);
        walk.pos += 2;
        let elem = u16::from_le_bytes(walk.read::<2>("the file meta group")?);
        let tag = Tag(group, elem);
        if group_length.is_none() && tag != Tag(0x0002, 0x0000) {
            return Err(format!(
                "the file meta group does not start with its group length (0002,0000) (found {} at byte {at}); the file is damaged",
                tag_text(tag)
            ));
        }
        let vr_bytes = walk.read::<2>("the file meta group")?;
        let Some(vr) = VR::from_binary(vr_bytes) else {
            return Err(format!(
                "file meta element {} at byte {} has an invalid value representation {:?}; the file is damaged",
                tag_text(tag),
                walk.pos - 6,
                String::from_utf8_lossy(&vr_bytes)
            ));
        };
        let (len, header_bytes) = if long_length(vr) {
            walk.read::<2>("the file meta group")?;
            (
                u32::from_le_bytes(walk.read::<4>("the file meta group")?),
                12,
            )
        } else {
            (
                u16::from_le_bytes(walk.read::<2>("the file meta group")?) as u32,
                8,
            )
        };
        let len = len as u64;
        if len == UNDEFINED as u64 {
            return Err(format!(
                "file meta element {} at byte {} has an undefined length; the file is damaged",
                tag_text(tag),
                walk.pos
            ));
        }
        walk.fits(len, tag, &[])?;
        if group_length.is_none() {
            if len != 4 {
                return Err(format!(
                    "the file meta group length (0002,0000) at byte {at} has {len} bytes where it must have 4; the file is damaged"
                ));
            }
            group_length = Some(u32::from_le_bytes(walk.read::<4>("the file meta group")?) as u64);
            continue;
        }
        if tag == Tag(0x0002, 0x0010) && len <= 64 {
            let mut v = vec![0u8; len as usize];
            walk.src
                .read_exact(&mut v)
                .map_err(|_| format!("the file ends at byte {at} in the file meta group"))?;
            walk.pos += len;
            ts = String::from_utf8_lossy(&v).into_owned();
        } else {
            walk.skip(len, tag)?;
        }
        consumed = consumed.saturating_add(header_bytes + len);
    }
    if ts.trim_end_matches(['\0', ' ']) == DEFLATED_EXPLICIT_VR_LE {
        let cap = size
            .saturating_sub(walk.pos)
            .saturating_mul(DEFLATE_MAX_RATIO);
        let mut inflated = flate2::read::DeflateDecoder::new(src);
        let mut walk = Walk {
            src: &mut inflated,
            pos: 0,
            end: cap,
            enc: Encoding::Explicit { big_endian: false },
        };
        return walk.data_set(stop);
    }
    walk.enc = encoding_of(&ts);
    walk.data_set(stop)
}

/// Pre-scans a data set without file meta group (as received over the network) in the given
/// transfer syntax.
pub fn check_data_set(bytes: &[u8], ts: &str) -> std::result::Result<(), String> {
    if ts.trim_end_matches(['\0', ' ']) == DEFLATED_EXPLICIT_VR_LE {
        let mut inflated = flate2::read::DeflateDecoder::new(bytes);
        let mut walk = Walk {
            src: &mut inflated,
            pos: 0,
            end: (bytes.len() as u64).saturating_mul(DEFLATE_MAX_RATIO),
            enc: Encoding::Explicit { big_endian: false },
        };
        return walk.data_set(None);
    }
    let mut cursor = std::io::Cursor::new(bytes);
    let mut walk = Walk {
        src: &mut cursor,
        pos: 0,
        end: bytes.len() as u64,
        enc: encoding_of(ts),
    };
    walk.data_set(None)
}

/// Runs `f`, turning a panic into `Err(the panic's message)`; the panic's report on stderr is
/// silenced (the caller turns it into an error naming the file).
pub fn no_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    thread_local!(static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        text
    })
}

/// The reason given for a panic caught in a reading library.
pub fn library_stopped(panic: &str) -> String {
    format!("the reading library stopped on an internal error ({panic}) triggered by this file's content")
}

fn corrupt(path: &Path, reason: String) -> Error {
    Error::CorruptDicom {
        path: path.to_path_buf(),
        reason,
    }
}

/// Opens a DICOM file after [`check_file`], reading up to (not including) `until` where given;
/// parse errors carry their whole cause chain, panics become errors, all naming the file.
pub fn open(path: &Path, until: Option<Tag>) -> Result<DefaultDicomObject> {
    check_file(path, until).map_err(|r| corrupt(path, r))?;
    let opened = no_panic(|| {
        let mut opts = OpenFileOptions::new();
        if let Some(t) = until {
            opts = opts.read_until(t);
        }
        opts.open_file(path)
    })
    .map_err(|r| corrupt(path, library_stopped(&r)))?;
    opened.map_err(|e| corrupt(path, crate::error::error_chain(&e)))
}

/// Checks that `rows`×`cols`×`samples`×`frames` pixels of `bits_allocated` bits, the decoded
/// size of a file's pixel data, stays below [`MAX_DECODED_PIXEL_BYTES`]; Err says why not.
pub fn check_decoded_size(
    rows: u64,
    cols: u64,
    samples: u64,
    frames: u64,
    bits_allocated: u64,
) -> std::result::Result<u64, String> {
    let bytes = (rows as u128 * cols as u128 * samples as u128 * frames as u128)
        * (bits_allocated.max(8) as u128).div_ceil(8);
    if bytes > MAX_DECODED_PIXEL_BYTES as u128 {
        return Err(format!(
            "its header declares {frames} frame(s) of {cols}×{rows} pixels ({bytes} bytes decoded), more than the {} GiB paramap reads from one file; the NumberOfFrames (0028,0008), Rows (0028,0010) or Columns (0028,0011) is damaged",
            MAX_DECODED_PIXEL_BYTES >> 30
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explicit VR little endian data set: `depth` sequences nested, each with one item of
    /// undefined length, around a PatientID.
    fn nested(depth: usize, explicit: bool) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend([0x08, 0x00, 0x15, 0x11]); // (0008,1115) ReferencedSeriesSequence
            if explicit {
                b.extend(b"SQ\0\0");
            }
            b.extend(UNDEFINED.to_le_bytes());
            b.extend([0xFE, 0xFF, 0x00, 0xE0]);
            b.extend(UNDEFINED.to_le_bytes());
        }
        b.extend([0x10, 0x00, 0x20, 0x00]);
        if explicit {
            b.extend(b"LO");
            b.extend(4u16.to_le_bytes());
        } else {
            b.extend(4u32.to_le_bytes());
        }
        b.extend(b"ABCD");
        for _ in 0..depth {
            b.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            b.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        b
    }

    #[test]
    fn nesting_up_to_the_bound_passes_and_beyond_is_refused_in_both_encodings() {
        for (ts, explicit) in [("1.2.840.10008.1.2.1", true), (IMPLICIT_VR_LE, false)] {
            assert_eq!(
                check_data_set(&nested(MAX_SEQUENCE_DEPTH, explicit), ts),
                Ok(())
            );
            let err = check_data_set(&nested(10_000, explicit), ts).unwrap_err();
            assert!(err.contains("nested more than 64 levels"), "{err}");
            // Unterminated: the file ends inside the sequences.
            let mut cut = nested(10_000, explicit);
            cut.truncate(cut.len() / 3);
            assert!(check_data_set(&cut, ts).is_err());
        }
    }

    #[test]
    fn a_deflated_data_set_is_walked_inflated() {
        use std::io::Write;
        let deflate = |b: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(b).unwrap();
            e.finish().unwrap()
        };
        // 10,000 levels compress to a few kB: refused all the same.
        let deep = deflate(&nested(10_000, true));
        assert!(deep.len() < 10_000);
        let err = check_data_set(&deep, DEFLATED_EXPLICIT_VR_LE).unwrap_err();
        assert!(err.contains("nested more than 64 levels"), "{err}");
        let fine = deflate(&nested(3, true));
        assert_eq!(check_data_set(&fine, DEFLATED_EXPLICIT_VR_LE), Ok(()));
    }

    #[test]
    fn the_parser_takes_the_deepest_accepted_nesting_on_a_two_mib_stack() {
        let bytes = nested(MAX_SEQUENCE_DEPTH, true);
        let parsed = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                use dicom_encoding::TransferSyntaxIndex;
                let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
                    .get("1.2.840.10008.1.2.1")
                    .expect("explicit VR LE is registered");
                dicom_object::InMemDicomObject::read_dataset_with_ts(bytes.as_slice(), ts)
                    .map(|o| o.iter().count())
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(parsed, Ok(1));
    }

    #[test]
    fn a_length_past_the_end_is_refused_naming_the_element_and_sizes() {
        let mut b = Vec::new();
        b.extend([0x08, 0x00, 0x16, 0x00]); // (0008,0016) SOPClassUID, 4 GB declared
        b.extend(b"UN\0\0");
        b.extend(0xFFFF_FFF0u32.to_le_bytes());
        b.extend([0u8; 100]);
        let err = check_data_set(&b, "1.2.840.10008.1.2.1").unwrap_err();
        assert!(err.contains("(0008,0016)"), "{err}");
        assert!(err.contains("4294967280 bytes"), "{err}");
        assert!(err.contains("only 100 bytes remain"), "{err}");
    }

    /// A file of explicit VR little endian: preamble, meta group (transfer syntax only), `data`.
    fn file_with(data: &[u8]) -> tempfile::NamedTempFile {
        let mut b = vec![0u8; 128];
        b.extend(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        b.extend([0x02, 0x00, 0x00, 0x00]);
        b.extend(b"UL");
        b.extend(4u16.to_le_bytes());
        b.extend((8 + ts.len() as u32).to_le_bytes());
        b.extend([0x02, 0x00, 0x10, 0x00]);
        b.extend(b"UI");
        b.extend((ts.len() as u16).to_le_bytes());
        b.extend(ts);
        b.extend(data);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b).unwrap();
        f
    }

    #[test]
    fn an_item_delimiter_outside_any_sequence_is_read_past_whatever_its_length_as_the_parser_does()
    {
        // dicom-parser reads the delimiter's 8 bytes and goes on with the next element (its
        // read_until looks at element tags only), so the walk must check what follows, also
        // when it stops at a tag: here a 4 GB length the parser would reserve.
        let mut data = vec![0xFE, 0xFF, 0x0D, 0xE0];
        data.extend(0x0016_0000u32.to_le_bytes()); // a length, ignored by the parser
        data.extend([0x08, 0x00, 0x16, 0x00]);
        data.extend(b"UN\0\0");
        data.extend(0xFFFF_FFF0u32.to_le_bytes());
        data.extend([0u8; 100]);
        let file = file_with(&data);
        for stop in [None, Some(Tag(0x7FE0, 0x0008))] {
            let err = check_file(file.path(), stop).unwrap_err();
            assert!(err.contains("(0008,0016)"), "{err}");
            assert!(err.contains("4294967280 bytes"), "{err}");
        }
        // With a value that fits, the file passes, and the parser reads the element after it.
        let mut fine = vec![0xFE, 0xFF, 0x0D, 0xE0];
        fine.extend(0x0016_0000u32.to_le_bytes());
        fine.extend([0x10, 0x00, 0x20, 0x00]);
        fine.extend(b"LO");
        fine.extend(4u16.to_le_bytes());
        fine.extend(b"ABCD");
        let file = file_with(&fine);
        assert_eq!(check_file(file.path(), None), Ok(()));
        let obj = open(file.path(), None).unwrap();
        assert_eq!(
            obj.element(Tag(0x0010, 0x0020)).unwrap().to_str().unwrap(),
            "ABCD"
        );
    }

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let r: std::result::Result<(), String> = no_panic(|| panic!("index 7 out of range"));
        let e = r.unwrap_err();
        assert!(e.contains("index 7 out of range"), "{e}");
        assert_eq!(no_panic(|| 3), Ok(3));
    }

    #[test]
    fn decoded_size_is_capped() {
        assert!(check_decoded_size(256, 256, 1, 1 << 31, 16).is_err());
        assert_eq!(check_decoded_size(2, 3, 1, 4, 16), Ok(48));
    }
}
