//! The WGSL source each kernel is compiled from: the constants the Rust side owns, then
//! `shaders/prelude.wgsl` (what every kernel needs: `nan()`, `finite()`, the
//! `WORKGROUP_SIZE` override), then the kernel's own file. WGSL has no includes, so this is
//! how a fact is written once for all kernels; the uniform blocks, which must be written on
//! both sides, are compared with their Rust twins by this module's tests (read with naga).

use crate::models::adc::FitMethod;

/// What every kernel is compiled with, in front of its own file.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// The constants the kernels share with the Rust side, as WGSL declarations.
pub fn constants() -> String {
    let code = |m: FitMethod| m.code();
    format!(
        "// Written by src/gpu/wgsl.rs from the Rust side.\n\
         const MAX_T: u32 = {max_t}u;\n\
         const METHOD_MEASURED_S2: u32 = {measured}u;\n\
         const METHOD_UNWEIGHTED: u32 = {unweighted}u;\n\
         const METHOD_TWO_POINT: u32 = {two_point}u;\n\
         const METHOD_PREDICTED_S2: u32 = {predicted}u;\n",
        max_t = super::dsc::MAX_RESIDUE_FIT_T,
        measured = code(FitMethod::TraceWls),
        unweighted = code(FitMethod::Ols),
        two_point = code(FitMethod::TwoPoint),
        predicted = code(FitMethod::Wls),
    )
}

/// The whole source of a kernel whose own file is `kernel` (`include_str!` of
/// `shaders/<name>.wgsl`).
pub fn source(kernel: &str) -> String {
    format!("{}\n{PRELUDE}\n{kernel}", constants())
}

/// Test support: a kernel's `Params` uniform block, read from its WGSL with naga, against
/// its Rust twin's layout, so that neither drifts from the other unnoticed.
#[cfg(test)]
pub(crate) mod layout {
    use super::source;

    /// One 4-byte scalar of a uniform block: byte offset, whether a float, and the WGSL
    /// member's name (empty on the Rust side).
    pub type Slot = (u32, bool, String);

    /// The kernel source parsed, panicking with naga's message where it does not parse.
    pub fn parse(stem: &str, kernel: &str) -> naga::Module {
        let text = source(kernel);
        naga::front::wgsl::parse_str(&text)
            .unwrap_or_else(|e| panic!("{stem}.wgsl: {}", e.emit_to_string(&text)))
    }

    /// The `Params` struct of a kernel, flattened to 4-byte scalars, and its size in bytes.
    pub fn wgsl_params(stem: &str, kernel: &str) -> (Vec<Slot>, u32) {
        let module = parse(stem, kernel);
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .unwrap_or_else(|| panic!("{stem}.wgsl has no struct Params"));
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("{stem}.wgsl: Params is not a struct")
        };
        let slots = members
            .iter()
            .map(|m| match &module.types[m.ty].inner {
                naga::TypeInner::Scalar(s) if s.width == 4 => (
                    m.offset,
                    s.kind == naga::ScalarKind::Float,
                    m.name.clone().unwrap_or_default(),
                ),
                other => panic!(
                    "{stem}.wgsl: Params.{:?} is {other:?}, not a 4-byte scalar",
                    m.name
                ),
            })
            .collect();
        (slots, *span)
    }

    /// The 4-byte scalars of a Rust field's type: whether each is a float.
    pub trait Scalars {
        const FLOATS: &'static [bool];
    }
    impl Scalars for u32 {
        const FLOATS: &'static [bool] = &[false];
    }
    impl Scalars for f32 {
        const FLOATS: &'static [bool] = &[true];
    }
    impl<const N: usize> Scalars for [u32; N] {
        const FLOATS: &'static [bool] = &[false; N];
    }
    impl<const N: usize> Scalars for [f32; N] {
        const FLOATS: &'static [bool] = &[true; N];
    }
    pub fn floats_of<T: Scalars>(_: &T) -> &'static [bool] {
        T::FLOATS
    }

    /// A Rust uniform block flattened as [`wgsl_params`] flattens the WGSL one: every field
    /// must be listed (the destructuring has no `..`, so a field added to the struct and not
    /// here does not compile), at its `offset_of!`, arrays spread out.
    macro_rules! rust_params {
        ($ty:ident { $($field:ident),* $(,)? }) => {{
            #[allow(unused_variables)]
            let $ty { $($field),* }: $ty = bytemuck::Zeroable::zeroed();
            let value: $ty = bytemuck::Zeroable::zeroed();
            let mut slots: Vec<$crate::gpu::wgsl::layout::Slot> = vec![];
            $(
                let floats = $crate::gpu::wgsl::layout::floats_of(&value.$field);
                for (i, &f) in floats.iter().enumerate() {
                    let name = if floats.len() == 1 { stringify!($field) } else { "" };
                    slots.push((
                        (std::mem::offset_of!($ty, $field) + 4 * i) as u32,
                        f,
                        name.to_string(),
                    ));
                }
            )*
            slots.sort_by_key(|s| s.0);
            (slots, std::mem::size_of::<$ty>() as u32)
        }};
    }
    pub(crate) use rust_params;

    /// The kernel's block and the Rust one agree: the same size, a scalar of the same kind at
    /// every offset, and the same name wherever the Rust field is a single scalar (arrays are
    /// spread over numbered WGSL members, e.g. `base: [u32; 2]` over `base0`, `base1`).
    pub fn assert_same(stem: &str, kernel: &str, rust: (Vec<Slot>, u32)) {
        let (wgsl, wgsl_size) = wgsl_params(stem, kernel);
        let (rust, rust_size) = rust;
        assert_eq!(
            wgsl_size, rust_size,
            "{stem}: Params is {wgsl_size} bytes in WGSL, {rust_size} in Rust"
        );
        let kinds = |s: &[Slot]| s.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>();
        assert_eq!(
            kinds(&wgsl),
            kinds(&rust),
            "{stem}: Params' (offset, is float) differ, WGSL left, Rust right"
        );
        for (w, r) in wgsl.iter().zip(&rust) {
            if !r.2.is_empty() {
                assert_eq!(w.2, r.2, "{stem}: Params member at byte {}", w.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::layout::{parse, rust_params};
    use super::*;

    fn kernel_files() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
            .filter(|p| p.file_stem().is_some_and(|s| s != "prelude"))
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                (stem, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_kernel_parses_and_validates_with_the_prelude() {
        let files = kernel_files();
        assert!(files.len() >= 7, "{} kernels", files.len());
        for (stem, text) in files {
            let module = parse(&stem, &text);
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{stem}.wgsl: {}", e.emit_to_string(&source(&text))));
        }
    }

    #[test]
    fn constants_written_from_rust_are_the_rust_values() {
        let module = parse("adc", include_str!("../../shaders/adc.wgsl"));
        let value = |name: &str| -> u32 {
            let (_, c) = module
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("no constant {name}"));
            match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v,
                ref e => panic!("{name} = {e:?}"),
            }
        };
        assert_eq!(
            value("MAX_T") as usize,
            super::super::dsc::MAX_RESIDUE_FIT_T
        );
        for m in FitMethod::ALL {
            let name = match m {
                FitMethod::TraceWls => "METHOD_MEASURED_S2",
                FitMethod::Ols | FitMethod::TraceOls => "METHOD_UNWEIGHTED",
                FitMethod::TwoPoint => "METHOD_TWO_POINT",
                FitMethod::Wls => "METHOD_PREDICTED_S2",
            };
            assert_eq!(value(name), m.code(), "{m:?}");
        }
    }

    /// The check itself catches a drift: a WGSL block with a member of the wrong kind, one too
    /// many, or a different name.
    #[test]
    #[allow(dead_code)]
    fn a_drifted_block_is_caught() {
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct Params {
            n: u32,
            pair: [u32; 2],
            scale: f32,
        }
        let ok = "struct Params { n: u32, pair0: u32, pair1: u32, scale: f32, }\n@group(0) @binding(0) var<uniform> p: Params;\n";
        layout::assert_same("ok", ok, rust_params!(Params { n, pair, scale }));
        for bad in [
            "struct Params { n: u32, pair0: u32, pair1: u32, scale: u32, }",
            "struct Params { n: u32, pair0: u32, pair1: u32, scale: f32, extra: f32, }",
            "struct Params { count: u32, pair0: u32, pair1: u32, scale: f32, }",
        ] {
            let r = std::panic::catch_unwind(|| {
                layout::assert_same("bad", bad, rust_params!(Params { n, pair, scale }))
            });
            assert!(r.is_err(), "{bad} passed");
        }
    }
}
