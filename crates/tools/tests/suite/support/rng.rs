//! A small seeded random source for simulations and fuzz-like tests, shared by the
//! system suite and the unprivileged tests.

#![allow(dead_code)] // each test binary uses part of it

/// xorshift64*: seeded from the OS and printed, so a failing run can be replayed, or with
/// a fixed seed for a repeatable simulation.
pub struct Rng(u64);

impl Rng {
    /// A fixed, non-zero seed (xorshift stays at zero forever).
    pub fn seeded(seed: u64) -> Rng {
        assert_ne!(seed, 0, "xorshift needs a non-zero seed");
        Rng(seed)
    }

    pub fn from_os(what: &str) -> Rng {
        let mut bytes = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .expect("read /dev/urandom");
        let seed = u64::from_le_bytes(bytes) | 1;
        eprintln!("{what}: random seed {seed:#x}");
        Rng::seeded(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
