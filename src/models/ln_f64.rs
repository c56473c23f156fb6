//! A natural logarithm in f64 without branches or table look-ups, so that LLVM vectorises a
//! loop of them (the ΔR2* of a block of voxels, `models::delta_r2star`), where the C library's
//! `log` is one call per sample.
//!
//! The algorithm and its constants are fdlibm's `__ieee754_log` (Sun Microsystems, 1993;
//! `e_log.c`), in the branch-free form musl 1.1 used (`src/math/log.c`, 2012–2017): write
//! x = 2^k·(1 + f) with 1 + f in [√2/2, √2), s = f/(2 + f), and
//! ln(1 + f) = f − f²/2 + s·(f²/2 + R(s²)), R a degree-14 minimax polynomial in s (Remez,
//! |error| < 2^−58.45 on the interval); then ln x = k·ln2_hi + (that + k·ln2_lo), ln 2 split
//! so that k·ln2_hi is exact. fdlibm states the error is below 1 ulp; the test below measures
//! at most 1 ulp from Rust's `f64::ln` (the C library's, itself within about 0.52 ulp).

/// ln 2 split in two: the high part has 32 trailing zero bits, so that k·LN2_HI is exact
/// for every exponent k of an f64.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-01
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
/// fdlibm's Lg1..Lg7: R(z) ≈ Lg1·z + Lg2·z² + … + Lg7·z⁷, z = s².
const LG1: f64 = f64::from_bits(0x3fe5_5555_5555_5593); // 6.666666666666735130e-01
const LG2: f64 = f64::from_bits(0x3fd9_9999_9997_fa04); // 3.999999999940941908e-01
const LG3: f64 = f64::from_bits(0x3fd2_4924_9422_9359); // 2.857142874366239149e-01
const LG4: f64 = f64::from_bits(0x3fcc_71c5_1d8e_78af); // 2.222219843214978396e-01
const LG5: f64 = f64::from_bits(0x3fc7_4664_96cb_03de); // 1.818357216161805012e-01
const LG6: f64 = f64::from_bits(0x3fc3_9a09_d078_c69f); // 1.531383769920937332e-01
const LG7: f64 = f64::from_bits(0x3fc2_f112_df3e_5244); // 1.479819860511658591e-01

/// 2^52 + 1023: an exponent field read as an integer m into the mantissa of 2^52 gives
/// 2^52 + m; less this, m − 1023 exactly.
const EXPONENT_MAGIC: f64 = 4_503_599_627_371_519.0;

/// ln x for a positive, finite, normal `x` (every ratio of two positive finite f32 signals
/// is one), within 1 ulp. Outside that domain (0, negative, subnormal, infinite, NaN) the
/// result is meaningless but harmless: callers test their inputs first, as
/// `models::delta_r2star` does. Pure IEEE-754 arithmetic in a fixed order (no fused
/// multiply-add), so the same bits at every vector width and on every machine.
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    // The high word moved so that the exponent steps where the mantissa crosses √2/2
    // (0x3fe6a09e is the high word of √2/2): k = exponent of x·√2, 1 + f in [√2/2, √2).
    let hx = (bits >> 32).wrapping_add(0x3ff0_0000 - 0x3fe6_a09e) & 0xffff_ffff;
    let k = hx >> 20;
    let hm = (hx & 0x000f_ffff) + 0x3fe6_a09e;
    let m = f64::from_bits((hm << 32) | (bits & 0xffff_ffff));
    let dk = f64::from_bits(0x4330_0000_0000_0000 | k) - EXPONENT_MAGIC;
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let r = t2 + t1;
    s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI
}

#[cfg(test)]
mod tests {
    use super::ln;

    /// Distance in ulps between two finite f64 of the same sign.
    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64).abs_diff(b.to_bits() as i64)
    }

    #[test]
    fn within_one_ulp_of_the_c_librarys_ln_over_the_whole_normal_range() {
        let mut worst = (0, 0.0);
        let mut check = |x: f64| {
            let d = ulps(ln(x), x.ln());
            if d > worst.0 {
                worst = (d, x);
            }
        };
        // Every binade of the normal range, 2^12 points in each (a stride through the mantissa
        // that is odd, so every residue of the low bits turns up).
        let stride = (1u64 << 52) / 4096 + 12_345;
        for e in 1..2047u64 {
            let mut m = 0u64;
            while m < (1 << 52) {
                check(f64::from_bits((e << 52) | m));
                m += stride;
            }
        }
        // Densely around 1, where ln is near 0 and the relative error matters most (the ratio
        // S/S0 of a baseline frame), and the edges: powers of two, the extremes, √2 and √2/2.
        for i in 0..2_000_000u64 {
            check(f64::from_bits(1.0f64.to_bits() + i));
            check(f64::from_bits(1.0f64.to_bits() - i));
        }
        for e in -1022..=1023 {
            check(2f64.powi(e));
        }
        for x in [
            f64::MIN_POSITIVE,
            f64::MAX,
            std::f64::consts::SQRT_2,
            std::f64::consts::FRAC_1_SQRT_2,
            f64::from_bits(std::f64::consts::SQRT_2.to_bits() + 1),
            f64::from_bits(std::f64::consts::FRAC_1_SQRT_2.to_bits() - 1),
            1e-300,
            1e300,
            std::f64::consts::E,
        ] {
            check(x);
        }
        assert!(worst.0 <= 1, "{} ulps at {:e}", worst.0, worst.1);
    }

    #[test]
    fn exact_where_ln_is_exact_or_a_multiple_of_ln2() {
        assert_eq!(ln(1.0).to_bits(), 0.0f64.to_bits(), "ln 1 is +0");
        for k in [-1022, -100, -1, 1, 2, 10, 1000, 1023] {
            let x = 2f64.powi(k);
            assert_eq!(ln(x), x.ln(), "ln 2^{k}");
        }
    }
}
