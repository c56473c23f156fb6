//! A data set received by `paramap listen` in a C-STORE request, read as the listener does
//! before it stores the object (`paramap::net::listen::parse_data_set`: pre-scan, then parse).
//! The input's first byte chooses the negotiated transfer syntax (0: explicit VR little
//! endian, 1: implicit VR little endian, 2: deflated explicit VR little endian, 3: explicit VR
//! big endian); the rest is the data set. A refusal is the right answer to a broken data set;
//! a crash (panic, stack overflow, an allocation above the cap) would take the listener down.
//! Seeds: `tests/data/fuzz_seeds/c_store/`.

// Links the capped allocator and its verdicts.
extern crate paramap_fuzz;

const SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
];

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&which, data_set)) = data.split_first() else {
            return;
        };
        let ts = SYNTAXES[usize::from(which) % SYNTAXES.len()];
        let _ = paramap::net::listen::parse_data_set(data_set, ts);
    });
}
