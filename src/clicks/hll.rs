//! The HyperLogLog sketch of a link's distinct visitors on one day: 2^14
//! one-byte registers (16 KiB dense; 0.81 % standard error), the layout and
//! estimator of Redis's `PFCOUNT` (Ertl's improved estimator, which needs no
//! bias table and holds its error from a handful of visitors to billions).
//!
//! Written here rather than taken from a crate: the registers are what
//! PostgreSQL stores and what instances merge (register-wise maximum), so
//! they must be plain bytes we own; the crates we looked at keep theirs
//! private behind their own serialization.

/// Index bits: 2^14 registers.
const P: u32 = 14;
/// Registers of a sketch.
pub const REGISTERS: usize = 1 << P;
/// Bits of the hash left for the rank: a rank is 1 ..= Q + 1.
const Q: u32 = 64 - P;

/// Where a visitor's 64-bit hash lands: its register and the rank it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Observation {
    pub register: u16,
    pub rank: u8,
}

impl Observation {
    /// The low `P` bits choose the register; the rank is one more than the
    /// trailing zeros of the rest (as Redis does), at most `Q + 1`.
    pub fn of(hash: u64) -> Self {
        let register = (hash & (REGISTERS as u64 - 1)) as u16;
        let rest = (hash >> P) | (1 << Q);
        Self {
            register,
            rank: (rest.trailing_zeros() + 1) as u8,
        }
    }
}

/// A dense sketch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    registers: Vec<u8>,
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            registers: vec![0; REGISTERS],
        }
    }
}

impl Sketch {
    /// The sketch stored as `bytes`; anything but `REGISTERS` bytes (a row
    /// written by hand, say) starts empty rather than failing the merge.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        if bytes.len() == REGISTERS {
            Self { registers: bytes }
        } else {
            Self::default()
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.registers
    }

    /// Raises a register to an observation's rank.
    pub fn observe(&mut self, seen: Observation) {
        let slot = &mut self.registers[usize::from(seen.register)];
        *slot = (*slot).max(seen.rank);
    }

    /// The estimated number of distinct hashes observed.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; Q as usize + 2];
        for &rank in &self.registers {
            histogram[usize::from(rank).min(Q as usize + 1)] += 1;
        }
        let mut z = m * tau((m - f64::from(histogram[Q as usize + 1])) / m);
        for k in (1..=Q as usize).rev() {
            z += f64::from(histogram[k]);
            z *= 0.5;
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        let alpha_inf = 0.5 / std::f64::consts::LN_2;
        (alpha_inf * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hash(n: u64) -> u64 {
        let digest = Sha256::digest(n.to_le_bytes());
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    #[test]
    fn an_empty_sketch_counts_nobody() {
        assert_eq!(Sketch::default().estimate(), 0);
    }

    #[test]
    fn estimates_stay_within_two_percent_from_tens_to_a_million() {
        for n in [10u64, 100, 1_000, 5_000, 40_000, 100_000, 1_000_000] {
            let mut sketch = Sketch::default();
            for i in 0..n {
                sketch.observe(Observation::of(hash(i)));
            }
            let estimate = sketch.estimate() as f64;
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error <= 0.02, "{n} distinct: estimated {estimate}");
        }
    }

    #[test]
    fn a_visitor_seen_again_is_not_counted_again_and_merges_are_maxima() {
        let mut one = Sketch::default();
        let mut other = Sketch::default();
        for i in 0..3_000 {
            one.observe(Observation::of(hash(i)));
            one.observe(Observation::of(hash(i)));
            other.observe(Observation::of(hash(i + 1_500)));
        }
        let alone = one.estimate();
        for (register, rank) in other.registers.iter().enumerate() {
            one.observe(Observation {
                register: register as u16,
                rank: *rank,
            });
        }
        let merged = one.estimate() as f64;
        assert!((2_900..=3_100).contains(&alone), "{alone}");
        assert!((merged - 4_500.0).abs() / 4_500.0 <= 0.02, "{merged}");
    }

    #[test]
    fn ranks_fit_the_registers() {
        assert_eq!(Observation::of(0).rank as u32, Q + 1);
        assert_eq!(Observation::of(u64::MAX).rank, 1);
        assert_eq!(Observation::of(1 << P).rank, 1);
        assert_eq!(Observation::of(1 << (P + 1)).rank, 2);
    }

    #[test]
    fn bytes_of_another_length_start_empty() {
        assert_eq!(Sketch::from_bytes(vec![1, 2, 3]), Sketch::default());
        let mut sketch = Sketch::default();
        sketch.observe(Observation::of(hash(7)));
        let bytes = sketch.clone().into_bytes();
        assert_eq!(Sketch::from_bytes(bytes), sketch);
    }
}
