//! MT19937, the 32-bit Mersenne Twister, seeded the way Python's
//! `random.seed(int)` seeds it (`init_by_array`), and Python's
//! `randint` drawn from it.

/// Words of state.
const N: usize = 624;
/// The twist's middle offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The generator of Matsumoto and Nishimura's reference `mt19937ar.c`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    /// Next word of `state` to temper; `N` means the state must twist first.
    index: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    /// `init_genrand(seed)`.
    pub fn new(seed: u32) -> Self {
        let mut state = [0_u32; N];
        state[0] = seed;
        for i in 1..N {
            let previous = state[i - 1];
            // i < 624, so the cast is exact.
            state[i] = 1_812_433_253_u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    /// `init_by_array(key)`: what Python's `random.seed(n)` does with the
    /// 32-bit words of `n` (least significant first; `seed(42)` is `[42]`).
    /// An empty key is taken as `[0]`, as Python does for `seed(0)`.
    pub fn from_key(key: &[u32]) -> Self {
        let key: &[u32] = if key.is_empty() { &[0] } else { key };
        let mut generator = Self::new(19_650_218);
        let mt = &mut generator.state;
        let mut i = 1_usize;
        let mut j = 0_usize;
        for _ in 0..N.max(key.len()) {
            let previous = mt[i - 1];
            // j < key.len() <= u32::MAX words in any real key; the C code adds it as uint32.
            mt[i] = (mt[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = mt[i - 1];
            mt[i] = (mt[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        generator
    }

    /// `genrand_uint32()`: the next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Python's `randint(low, high)` (both ends included) for a range of at
    /// most 2^31 values: `low + _randbelow(high - low + 1)`, where
    /// `_randbelow(n)` draws `bit_length(n)` bits and draws again until the
    /// value is below `n`. Returns `low` when `high < low`.
    pub fn randint(&mut self, low: i32, high: i32) -> i32 {
        let Some(width) = i64::from(high)
            .checked_sub(i64::from(low))
            .and_then(|span| u32::try_from(span + 1).ok())
            .filter(|&width| width > 0)
        else {
            return low;
        };
        let bits = u32::BITS - width.leading_zeros();
        loop {
            let r = self.next_u32() >> (u32::BITS - bits);
            if r < width {
                // r < width <= 2^31 and low + r <= high: exact in i64, fits i32.
                return i32::try_from(i64::from(low) + i64::from(r)).unwrap_or(high);
            }
        }
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_output_for_its_published_key() {
        // mt19937ar.out: init_by_array({0x123, 0x234, 0x345, 0x456}), first outputs.
        let mut mt = Mt19937::from_key(&[0x123, 0x234, 0x345, 0x456]);
        let first: Vec<u32> = (0..5).map(|_| mt.next_u32()).collect();
        assert_eq!(
            first,
            [
                1_067_595_299,
                955_945_823,
                477_289_528,
                4_107_218_783,
                4_228_976_476
            ]
        );
        // The 1000th output of the same stream (mt19937ar.out's last integer).
        let last = (5..1000).map(|_| mt.next_u32()).last();
        assert_eq!(last, Some(3_460_025_646));
    }

    #[test]
    fn matches_init_genrand_5489() {
        // The C++ standard: the 10000th output of mt19937 default-seeded (5489).
        let mut mt = Mt19937::new(5489);
        let tenth_thousand = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(tenth_thousand, Some(4_123_659_995));
    }

    #[test]
    fn randint_matches_python_random_seed_42() {
        // random.seed(42); [random.randint(1, 10000) for _ in range(10)]
        let mut mt = Mt19937::from_key(&[42]);
        let ids: Vec<i32> = (0..10).map(|_| mt.randint(1, 10_000)).collect();
        assert_eq!(
            ids,
            [1825, 410, 4507, 4013, 3658, 2287, 1680, 8936, 1425, 9675]
        );
    }

    #[test]
    fn randint_of_one_value_or_an_empty_range_returns_low() {
        let mut mt = Mt19937::from_key(&[42]);
        assert_eq!(mt.randint(7, 7), 7);
        assert_eq!(mt.randint(9, 3), 9);
    }
}
