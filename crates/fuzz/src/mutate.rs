//! Random mutations of byte strings, seeded and reproducible.

/// xorshift64*: fast, reproducible from its seed, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces that matter to the parsers under test, spliced into inputs:
/// syntax, boundary numbers, quotes, odd Unicode, control characters.
const DICTIONARY: &[&str] = &[
    " AND ",
    " OR ",
    " IN (",
    ")",
    "(",
    "'",
    "''",
    ",",
    " = ",
    " != ",
    " <> ",
    " < ",
    " >= ",
    " BETWEEN ",
    " LIKE '",
    "%'",
    "NOT",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "1e16",
    "99999999999999999999",
    "-9223372036854775808",
    "0.0000000000001",
    "\u{202e}",
    "\u{200b}",
    "\u{1b}[31m",
    "\r\n",
    "\0",
    "\u{feff}",
    "𠀀",
    "粤E",
    "440604198506121234",
    "--",
    ";",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ":",
    "=",
    "\n[[datasets]]\n",
    "\n[[datasets.fields]]\n",
    "mask = \"hash\"",
    "sensitivity = \"secret\"",
    "type = \"float\"",
    "key_type = \"person_id\"",
    "\"fields\"",
    "\"where\"",
    "\"limit\"",
    "null",
    "[]",
    "{}",
    ".",
    "=",
    "A",
    "_",
];

/// One to eight random edits of `input`: bit flips, byte changes,
/// deletions, duplications, insertions of dictionary pieces, and splices
/// with `other`.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = rng.next() as u8;
            }
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(out.len())..end);
            }
            3 if !out.is_empty() => {
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(32)).min(out.len());
                let chunk = out[start..end].to_vec();
                out.splice(at..at, chunk);
            }
            4 | 5 => {
                let piece = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                out.splice(at..at, piece.iter().copied());
            }
            _ if !other.is_empty() => {
                let start = rng.below(other.len());
                let end = (start + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[start..end].iter().copied());
            }
            _ => {}
        }
        if out.len() > 64 << 10 {
            out.truncate(64 << 10);
        }
    }
    out
}
