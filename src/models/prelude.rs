//! The CPU side of `shaders/prelude.wgsl`, the functions every kernel is compiled with
//! (`gpu::wgsl` puts the prelude in front of each kernel): what each one means in f32, so that
//! a twin can say "as the prelude's `finite`" and a test can hold the two to the same rule.
//! The `WORKGROUP_SIZE` override has no CPU meaning (the CPU twins run one voxel per loop
//! iteration); it is set from `gpu::GpuContext`'s workgroup size when a kernel is compiled.

/// The bit pattern of the prelude's `nan()`: the IEEE 754 quiet NaN, 0x7fc00000, what a voxel
/// that cannot be fitted gets on the GPU (the CPU twins write `f32::NAN`, the same bits).
pub const NAN_BITS: u32 = 0x7fc0_0000;

/// The prelude's `nan()`.
pub fn nan() -> f32 {
    f32::from_bits(NAN_BITS)
}

/// The prelude's `finite(x)`: WGSL has no `isFinite`, so the kernel tests the exponent bits
/// (all ones is an infinity or a NaN). The same answer as [`f32::is_finite`] for every f32.
pub fn finite(x: f32) -> bool {
    (x.to_bits() & 0x7f80_0000) != 0x7f80_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_is_rust_is_finite_for_every_class_of_f32() {
        let special = [
            0.0f32,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE / 2.0, // subnormal
            f32::MAX,
            f32::MIN,
            1.5,
            -3.25e-3,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001), // signalling NaN
        ];
        for x in special {
            assert_eq!(finite(x), x.is_finite(), "{x:e} ({:#x})", x.to_bits());
        }
        // Every exponent, with a mantissa of 1 and both signs.
        for e in 0u32..=255 {
            for sign in [0u32, 1] {
                let x = f32::from_bits((sign << 31) | (e << 23) | 1);
                assert_eq!(finite(x), x.is_finite(), "{:#x}", x.to_bits());
            }
        }
    }

    #[test]
    fn nan_is_the_quiet_nan_the_cpu_twins_write() {
        assert!(nan().is_nan());
        assert_eq!(nan().to_bits(), f32::NAN.to_bits());
    }

    /// The prelude says the same: the WGSL text holds the bit patterns used here.
    #[test]
    fn the_wgsl_prelude_uses_these_bit_patterns() {
        let wgsl = include_str!("../../shaders/prelude.wgsl");
        assert!(wgsl.contains("bitcast<f32>(0x7fc00000u)"), "nan()");
        assert!(
            wgsl.contains("(bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u"),
            "finite()"
        );
    }
}
