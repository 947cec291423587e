//! Valid Chinese identifiers: resident identity numbers (GB 11643, ISO 7064
//! MOD 11-2 check character) and unified social credit codes (GB 32100, with
//! the GB 11714 organization-code check digit inside).

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The check character for the first 17 digits of a resident ID.
pub fn resident_id_check(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(ID_WEIGHTS)
        .map(|(b, w)| (b - b'0') as u32 * w)
        .sum();
    Some(ID_CHECK[(sum % 11) as usize] as char)
}

/// Whether `id` is a well-formed 18-character resident ID with a correct check character.
pub fn is_valid_resident_id(id: &str) -> bool {
    id.len() == 18
        && id.is_ascii()
        && resident_id_check(&id[..17]).is_some_and(|c| id.as_bytes()[17] as char == c)
}

pub fn resident_id(region: &str, birth_yyyymmdd: &str, sequence: u16) -> String {
    let first17 = format!("{region}{birth_yyyymmdd}{sequence:03}");
    let check = resident_id_check(&first17).expect("17 digits");
    format!("{first17}{check}")
}

/// The 31 characters of GB 32100 (no I, O, S, V, Z).
pub const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARS.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The GB 11714 check character of an 8-digit organization code body.
pub fn org_code_check(body8: &str) -> Option<char> {
    if body8.len() != 8 {
        return None;
    }
    let mut sum = 0;
    for (b, w) in body8.bytes().zip(ORG_WEIGHTS) {
        let v = if b.is_ascii_digit() {
            (b - b'0') as u32
        } else if b.is_ascii_uppercase() {
            (b - b'A') as u32 + 10
        } else {
            return None;
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).expect("digit"),
    })
}

/// The GB 32100 check character for the first 17 characters of a code.
pub fn uscc_check(first17: &str) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (b, w) in first17.bytes().zip(USCC_WEIGHTS) {
        sum += uscc_value(b)? * w;
    }
    Some(USCC_CHARS[((31 - sum % 31) % 31) as usize] as char)
}

pub fn is_valid_uscc(code: &str) -> bool {
    code.len() == 18
        && code.is_ascii()
        && uscc_check(&code[..17]).is_some_and(|c| code.as_bytes()[17] as char == c)
        && org_code_check(&code[8..16]).is_some_and(|c| code.as_bytes()[16] as char == c)
}

/// A unified social credit code for an enterprise (`91` prefix) in `region`.
pub fn uscc(region: &str, org_body8: u32) -> String {
    let body = format!("{:08}", org_body8 % 100_000_000);
    let org_check = org_code_check(&body).expect("8 digits");
    let first17 = format!("91{region}{body}{org_check}");
    let check = uscc_check(&first17).expect("valid characters");
    format!("{first17}{check}")
}

/// Checks a lookup key against its type's check characters and returns it
/// trimmed and in upper case, or says what is wrong with it.
pub fn checked_key(key_type: &str, key: &str) -> Result<String, String> {
    let key = key.trim().to_ascii_uppercase();
    let (ok, what) = match key_type {
        "person_id" => (
            is_valid_resident_id(&key),
            "a resident identity number (18 characters, GB 11643 check character)",
        ),
        "org_code" => (
            is_valid_uscc(&key),
            "a unified social credit code (18 characters, GB 32100 check characters)",
        ),
        other => return Err(unsupported_key_type(other)),
    };
    if ok {
        Ok(key)
    } else {
        Err(format!(
            "{:?} is not {what}: check for a mistyped digit",
            key.chars().take(40).collect::<String>()
        ))
    }
}

/// Why a lookup by `key_type` is refused: only the two identifier types have keys.
pub fn unsupported_key_type(key_type: &str) -> String {
    format!(
        "lookups by key_type {:?} are not supported: use \"person_id\" or \"org_code\"",
        key_type.chars().take(40).collect::<String>()
    )
}

/// `440604********1234`: enough to recognise a subject in a log without
/// copying the full identifier into one more place.
pub fn mask_subject(key: &str) -> String {
    let n = key.chars().count();
    if n <= 10 {
        return "*".repeat(n);
    }
    key.chars()
        .enumerate()
        .map(|(i, c)| if i < 6 || i + 4 >= n { c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_ids_have_correct_check_characters() {
        // The worked example from GB 11643-1999.
        assert_eq!(resident_id_check("11010519491231002"), Some('X'));
        assert!(is_valid_resident_id("11010519491231002X"));
        assert!(!is_valid_resident_id("110105194912310021"));
        let id = resident_id("440604", "19850612", 123);
        assert!(is_valid_resident_id(&id), "{id}");
        assert!(!is_valid_resident_id("44060419850612123"));
        assert!(!is_valid_resident_id(
            "４４０６０４１９８５０６１２１２３４"
        ));
    }

    #[test]
    fn credit_codes_have_both_check_characters() {
        // A published code (Huawei Technologies Co., Ltd.).
        assert!(is_valid_uscc("914403001922038216"));
        assert!(!is_valid_uscc("914403001922038217"));
        for n in [0u32, 1, 12345678, 99999999, 4242] {
            let code = uscc("440605", n);
            assert!(is_valid_uscc(&code), "{code}");
            assert!(code.bytes().all(|b| USCC_CHARS.contains(&b)));
        }
    }

    #[test]
    fn subjects_are_masked_for_logs() {
        assert_eq!(mask_subject("11010519491231002X"), "110105********002X");
        assert_eq!(mask_subject("91440300MA5FXXXX1X"), "914403********XX1X");
        assert_eq!(mask_subject("short"), "*****");
    }
}
