//! `exp` and the sigmoid in a form LLVM vectorises: branch-free, no libm calls, no FMA.
//!
//! Why no FMA: the kernels that use these are compiled twice (AVX2, and the portable baseline)
//! and must give the same bits either way, for reproducible training across machines.

/// `e^x` within 2 ulp for finite inputs (Cephes `expf`: range reduction by `ln 2` split in two
/// parts, a degree-6 polynomial, and the power of two written into the exponent bits).
/// Inputs are clamped to `[-87.3, 88.3]`, so results stay finite and normal; a NaN input gives
/// a finite value, and callers that must propagate NaN multiply by the input afterwards.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, with LN2_HI short enough that `k * LN2_HI` is exact for |k| ≤ 128.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.3 { 88.3 } else { x };
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    let n = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes writes 5.0000001201e-1, which is 0.5 in f32
    let e = p * (r * r) + r + 1.0;
    e * f32::from_bits(((n + 127) as u32) << 23)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_over_the_range_activations_use() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x);
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps(got, want));
            x += 0.001_37;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_saturates_instead_of_overflowing() {
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(sigmoid(-1000.0) >= 0.0 && sigmoid(-1000.0) < 1e-37);
        assert_eq!(sigmoid(1000.0), 1.0);
    }

    #[test]
    fn sigmoid_matches_the_textbook_formula() {
        for i in -400..400 {
            let x = i as f32 * 0.05;
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - want).abs() < 3e-7, "{x}: {} vs {want}", sigmoid(x));
        }
    }
}
