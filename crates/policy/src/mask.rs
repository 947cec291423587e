//! Masks applied to values at the owning node.
//!
//! Every mask works on Unicode scalar values, never on bytes, so it cannot
//! split a character or panic on odd input, and it never lets a short value
//! through unmasked: a value too short to keep anything is replaced whole.
//!
//! | mask | example |
//! | --- | --- |
//! | `keep_first:N` | `佛山市南海区桂城街道` → `佛山市*******` (N = 3) |
//! | `keep_last:N` | `LVS12345678` → `*******5678` (N = 4) |
//! | `id_number` | `440604198506121234` → `440604********1234` |
//! | `mobile` | `13812341234` → `138****1234` |
//! | `surname` | `张三丰` → `张**`, `欧阳娜娜` → `欧阳**` |
//! | `hash` | any value → 32 hex digits of HMAC-SHA-256 under the federation key |
//! | `year` | `2025-03-14` or `2025-03-14 08:00:00` → `2025` |
//! | `null` | any value → null |

use crate::Mask;

const MASK_CHAR: char = '*';

/// Two-character surnames (复姓) that `surname` keeps whole.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司徒", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
    "夏侯", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延", "轩辕", "澹台", "公冶", "宗政",
    "濮阳", "太史", "申屠", "闻人",
];

/// A key of the `hash` mask. Each consumer department has its own,
/// derived from a master secret only the coordinator holds
/// ([`consumer_mask_secret`]): every owner hashes what it sends one
/// consumer with that consumer's key, so the consumer's masked keys still
/// join across departments, while its own node, which never receives its
/// own member's key, cannot recompute them from guessed values.
#[derive(Clone)]
pub struct HashKey(ring::hmac::Key);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

impl HashKey {
    /// At least 32 bytes of secret.
    pub fn new(secret: &[u8]) -> Option<HashKey> {
        (secret.len() >= 32).then(|| HashKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)))
    }

    /// 128 bits of HMAC-SHA-256, as 32 lowercase hex digits.
    pub fn digest(&self, value: &str) -> String {
        let tag = ring::hmac::sign(&self.0, value.as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }
}

/// The `hash` mask's secret for values sent to `consumer`, derived from
/// the coordinator's master secret.
pub fn consumer_mask_secret(master: &[u8], consumer: &str) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, master);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(b"exchange hash mask v2\0");
    context.update(consumer.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// The result of masking one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskedValue {
    Text(String),
    Null,
}

fn stars(n: usize) -> String {
    std::iter::repeat_n(MASK_CHAR, n).collect()
}

/// Keeps `keep_head` leading and `keep_tail` trailing characters; if that
/// would leave nothing masked, masks the whole value.
fn keep_ends(value: &str, keep_head: usize, keep_tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    if keep_head + keep_tail >= n {
        return stars(n);
    }
    let mut out = String::with_capacity(value.len());
    out.extend(&chars[..keep_head]);
    out.push_str(&stars(n - keep_head - keep_tail));
    out.extend(&chars[n - keep_tail..]);
    out
}

fn surname(value: &str) -> String {
    let trimmed = value.trim();
    let n = trimmed.chars().count();
    if n == 0 {
        return String::new();
    }
    let keep = if n > 2 && COMPOUND_SURNAMES.iter().any(|s| trimmed.starts_with(s)) {
        2
    } else {
        1
    };
    if n <= keep {
        // A bare surname reveals no more than the mask would.
        return trimmed.chars().take(keep).collect();
    }
    let mut out: String = trimmed.chars().take(keep).collect();
    out.push_str(&stars(n - keep));
    out
}

fn year(value: &str) -> MaskedValue {
    let head: String = value.trim().chars().take(4).collect();
    if head.len() == 4 && head.chars().all(|c| c.is_ascii_digit()) {
        MaskedValue::Text(head)
    } else {
        // Not a date we recognise: reveal nothing.
        MaskedValue::Null
    }
}

/// Applies `mask` to a textual value. `None` (SQL NULL) stays null.
pub fn apply(mask: Mask, value: Option<&str>, key: &HashKey) -> MaskedValue {
    let Some(value) = value else {
        return MaskedValue::Null;
    };
    match mask {
        Mask::None => MaskedValue::Text(value.to_string()),
        Mask::Null => MaskedValue::Null,
        Mask::KeepFirst(n) => MaskedValue::Text(keep_ends(value, n as usize, 0)),
        Mask::KeepLast(n) => MaskedValue::Text(keep_ends(value, 0, n as usize)),
        Mask::IdNumber => MaskedValue::Text(if value.chars().count() >= 15 {
            keep_ends(value, 6, 4)
        } else {
            stars(value.chars().count())
        }),
        Mask::Mobile => MaskedValue::Text(if value.chars().count() >= 8 {
            keep_ends(value, 3, 4)
        } else {
            stars(value.chars().count())
        }),
        Mask::Surname => MaskedValue::Text(surname(value)),
        Mask::Hash => MaskedValue::Text(key.digest(value)),
        Mask::Year => year(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HashKey {
        HashKey::new(b"federation-wide secret key for tests only!!").unwrap()
    }

    fn text(mask: Mask, value: &str) -> String {
        match apply(mask, Some(value), &key()) {
            MaskedValue::Text(t) => t,
            MaskedValue::Null => "<null>".into(),
        }
    }

    #[test]
    fn resident_ids() {
        assert_eq!(
            text(Mask::IdNumber, "440604198506121234"),
            "440604********1234"
        );
        assert_eq!(
            text(Mask::IdNumber, "11010519491231002X"),
            "110105********002X"
        );
        assert_eq!(
            text(Mask::IdNumber, "440604850612123"),
            "440604*****2123",
            "15-character legacy ids"
        );
        assert_eq!(text(Mask::IdNumber, "12345"), "*****");
        assert_eq!(text(Mask::IdNumber, ""), "");
    }

    #[test]
    fn mobiles() {
        assert_eq!(text(Mask::Mobile, "13812341234"), "138****1234");
        assert_eq!(text(Mask::Mobile, "1381234"), "*******");
        assert_eq!(text(Mask::Mobile, "+8613812341234"), "+86*******1234");
    }

    #[test]
    fn names() {
        assert_eq!(text(Mask::Surname, "张三"), "张*");
        assert_eq!(text(Mask::Surname, "张三丰"), "张**");
        assert_eq!(text(Mask::Surname, "欧阳娜娜"), "欧阳**");
        assert_eq!(text(Mask::Surname, "司徒雷登"), "司徒**");
        assert_eq!(
            text(Mask::Surname, "欧阳"),
            "欧*",
            "a two-character name starting like a compound surname is surname + given name"
        );
        assert_eq!(text(Mask::Surname, "张"), "张");
        assert_eq!(text(Mask::Surname, " 李娜 "), "李*");
        assert_eq!(text(Mask::Surname, "Wang Fang"), "W********");
        assert_eq!(text(Mask::Surname, ""), "");
    }

    #[test]
    fn keep_first_and_last() {
        assert_eq!(
            text(Mask::KeepFirst(3), "佛山市南海区桂城街道"),
            "佛山市*******"
        );
        assert_eq!(text(Mask::KeepLast(4), "LVS12345678"), "*******5678");
        assert_eq!(
            text(Mask::KeepLast(4), "1234"),
            "****",
            "never the whole value"
        );
        assert_eq!(text(Mask::KeepFirst(9), "短"), "*");
    }

    #[test]
    fn years_and_nulls() {
        assert_eq!(text(Mask::Year, "2025-03-14"), "2025");
        assert_eq!(text(Mask::Year, "2025-03-14 08:00:00"), "2025");
        assert_eq!(
            text(Mask::Year, "14/03/2025"),
            "<null>",
            "unrecognised dates reveal nothing"
        );
        assert_eq!(text(Mask::Null, "anything"), "<null>");
        assert_eq!(apply(Mask::IdNumber, None, &key()), MaskedValue::Null);
        assert_eq!(
            apply(Mask::None, Some("x"), &key()),
            MaskedValue::Text("x".into())
        );
    }

    #[test]
    fn keyed_hash_joins_and_depends_on_the_key() {
        let a = text(Mask::Hash, "440604198506121234");
        assert_eq!(a.len(), 32);
        assert_eq!(
            a,
            text(Mask::Hash, "440604198506121234"),
            "deterministic, so masked keys join"
        );
        assert_ne!(a, text(Mask::Hash, "440604198506121235"));
        let other = HashKey::new(&[7u8; 32]).unwrap();
        assert_ne!(
            apply(Mask::Hash, Some("440604198506121234"), &other),
            MaskedValue::Text(a.clone())
        );
        assert!(!a.contains("4406041985"));
        assert!(HashKey::new(b"short").is_none());
    }

    #[test]
    fn odd_unicode_keeps_character_counts_and_never_panics() {
        let samples = [
            "e\u{301}\u{301}\u{301}",
            "👨‍👩‍👧‍👦🚗",
            "\u{202e}440604198506121234",
            "\u{0}\u{0}\u{0}",
            "𠀀𠀁𠀂𠀃",
            "ｱｲｳｴｵ",
            "\u{FEFF}",
        ];
        for s in samples {
            let n = s.chars().count();
            // Position-keeping masks output exactly one character per input character.
            for mask in [
                Mask::KeepFirst(2),
                Mask::KeepLast(2),
                Mask::IdNumber,
                Mask::Mobile,
            ] {
                assert_eq!(text(mask, s).chars().count(), n, "{mask} on {s:?}");
            }
            assert!(text(Mask::Surname, s).chars().count() <= n);
            assert_eq!(text(Mask::Hash, s).len(), 32);
            assert_eq!(text(Mask::Year, s), "<null>");
        }
        assert_eq!(text(Mask::KeepFirst(1), "𠀀𠀁𠀂𠀃"), "𠀀***");
        assert_eq!(
            text(Mask::IdNumber, "\u{202e}440604198506121234"),
            "\u{202e}44060*********1234"
        );
    }
}
