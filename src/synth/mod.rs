//! Digital reference objects: phantoms whose maps are known by construction.

pub mod dsc;
pub mod dwi;
pub mod head;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Magnitude of a signal with complex Gaussian noise of standard deviation `sigma` in each
/// channel (Rician), or the clean signal when `sigma` is None.
pub fn rician(clean: f64, sigma: Option<f64>, rng: &mut impl Rng) -> f64 {
    match sigma {
        Some(s) => {
            let (n1, n2): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            let (re, im) = (clean + s * n1, s * n2);
            (re * re + im * im).sqrt()
        }
        None => clean,
    }
}
