//! Text that one person types and other people read: purposes, users,
//! reasons, notes, names.
//!
//! Such text is checked where it enters ([`request_text`]): no control
//! characters (escape sequences could recolour, retitle or overwrite an
//! owner's terminal), no invisible or direction-changing characters (a
//! purpose of one zero-width space is no purpose; a right-to-left override
//! makes `abc` read as `cba`), nothing blank after trimming where the text
//! is required, and a length limit. Text that was stored before these
//! checks, or comes from elsewhere (a manifest, a database), is made
//! harmless where it is shown: [`visible`] spells every such character as
//! `\u{..}`, and [`for_log`] also clips it.

use std::borrow::Cow;

/// Why a text was refused. Each message names the field, what is wrong and
/// how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error(
        "{what} is required and is empty (after trimming spaces and invisible characters); {hint}"
    )]
    Required { what: String, hint: &'static str },
    #[error("{what} has {chars} characters; at most {max} are allowed")]
    TooLong {
        what: String,
        chars: usize,
        max: usize,
    },
    #[error("{what} contains the {kind} character U+{code:04X} at position {position}; remove it (only printable text is accepted)")]
    Forbidden {
        what: String,
        kind: &'static str,
        code: u32,
        position: usize,
    },
}

/// What a field demands beyond printable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// The most characters allowed.
    pub max_chars: usize,
    /// Blank is refused, with this hint (e.g. "say why you need the data").
    pub required: Option<&'static str>,
    /// Line breaks are allowed (notes and reasons); tabs and every other
    /// control character never are.
    pub multiline: bool,
}

impl TextRule {
    pub const fn line(max_chars: usize) -> TextRule {
        TextRule {
            max_chars,
            required: None,
            multiline: false,
        }
    }

    pub const fn required_line(max_chars: usize, hint: &'static str) -> TextRule {
        TextRule {
            max_chars,
            required: Some(hint),
            multiline: false,
        }
    }

    pub const fn paragraph(max_chars: usize) -> TextRule {
        TextRule {
            max_chars,
            required: None,
            multiline: true,
        }
    }

    pub const fn required_paragraph(max_chars: usize, hint: &'static str) -> TextRule {
        TextRule {
            max_chars,
            required: Some(hint),
            multiline: true,
        }
    }
}

/// The kind of a character that must not appear in request text, if it is
/// one.
pub fn hidden_kind(c: char) -> Option<&'static str> {
    match c {
        '\u{1b}' => Some("escape"),
        c if c.is_control() => Some("control"),
        '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{061c}' => Some("text-direction"),
        '\u{200b}'..='\u{200d}'
        | '\u{2060}'..='\u{2064}'
        | '\u{206a}'..='\u{206f}'
        | '\u{feff}'
        | '\u{00ad}'
        | '\u{034f}'
        | '\u{115f}'
        | '\u{1160}'
        | '\u{180e}'
        | '\u{3164}'
        | '\u{ffa0}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}' => Some("invisible"),
        '\u{2028}' | '\u{2029}' => Some("line-separator"),
        _ => None,
    }
}

/// Checks and trims a request's text field `what` under `rule`.
pub fn request_text(what: &str, text: &str, rule: TextRule) -> Result<String, TextError> {
    let trimmed = text.trim();
    for (position, c) in trimmed.chars().enumerate() {
        if rule.multiline && c == '\n' {
            continue;
        }
        if let Some(kind) = hidden_kind(c) {
            return Err(TextError::Forbidden {
                what: what.to_string(),
                kind,
                code: c as u32,
                position: position + 1,
            });
        }
    }
    let chars = trimmed.chars().count();
    if chars > rule.max_chars {
        return Err(TextError::TooLong {
            what: what.to_string(),
            chars,
            max: rule.max_chars,
        });
    }
    if let Some(hint) = rule.required {
        if trimmed.is_empty() {
            return Err(TextError::Required {
                what: what.to_string(),
                hint,
            });
        }
    }
    Ok(trimmed.to_string())
}

/// `text` with every control, invisible and direction-changing character
/// spelled `\uXXXX` (a line break stays when `keep_newlines`). The
/// spelling is also a valid JSON string escape of the same character, so
/// JSON text stays JSON and means the same.
fn spell_hidden(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hidden = |c: char| !(keep_newlines && c == '\n') && hidden_kind(c).is_some();
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if (c as u32) < 0x10000 {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            // Outside the BMP: as a JSON surrogate pair.
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        }
    }
    Cow::Owned(out)
}

/// Text made safe to print on a terminal: line breaks and tabs stay,
/// everything else hidden is spelled out (see [`spell_hidden`]).
pub fn visible(text: &str) -> Cow<'_, str> {
    let tab_kept = text.replace('\t', "    ");
    match spell_hidden(&tab_kept, true) {
        Cow::Borrowed(_) if !text.contains('\t') => Cow::Borrowed(text),
        other => Cow::Owned(other.into_owned()),
    }
}

/// A CSV cell made safe to open in a spreadsheet (OWASP's advice on CSV
/// injection): a cell that a spreadsheet would evaluate as a formula,
/// because it starts with `=`, `+`, `-`, `@`, a tab or a carriage return,
/// gets a leading `'`, which spreadsheets show as text. A plain number
/// (`-12.5`, `+86`) is left alone, so amounts stay numbers.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    let Some(first) = cell.chars().next() else {
        return Cow::Borrowed(cell);
    };
    let risky = matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r');
    let number = cell.len() > 1
        && matches!(first, '+' | '-')
        && cell[1..].parse::<f64>().is_ok()
        && cell[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E');
    if risky && !number {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// A request value as a log field: on one line, hidden characters spelled
/// out, and at most `max` characters with the length of the rest noted.
pub fn for_log(text: &str, max: usize) -> String {
    let total = text.chars().count();
    let head: String = text.chars().take(max).collect();
    let mut out = spell_hidden(&head, false).into_owned();
    if total > max {
        out.push_str(&format!("…(+{} characters)", total - max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_numbers_are_not() {
        for risky in [
            "=HYPERLINK(\"http://x\",\"点我\")",
            "@SUM(1+1)*cmd|'/C calc'!A0",
            "+1+1",
            "-2+3",
            "\tx",
            "\rx",
            "=1",
        ] {
            assert_eq!(spreadsheet_safe(risky), format!("'{risky}"), "{risky}");
        }
        for plain in ["-12.5", "+86", "张三", "", "1e5", "a=b"] {
            assert_eq!(spreadsheet_safe(plain), plain, "{plain}");
        }
    }

    const PURPOSE: TextRule = TextRule::required_line(500, "say why you need the data");

    #[test]
    fn plain_chinese_and_english_pass_trimmed() {
        assert_eq!(
            request_text("purpose", "  低保家庭财产核查 (relief check)  ", PURPOSE).unwrap(),
            "低保家庭财产核查 (relief check)"
        );
    }

    #[test]
    fn escapes_controls_invisibles_and_overrides_are_refused_by_name() {
        for (bad, kind) in [
            ("核查\u{1b}]0;pwned\u{7}", "escape"),
            ("核查\r覆盖", "control"),
            ("line\nbreak", "control"),
            ("\u{202e}查核", "text-direction"),
            ("a\u{2066}b", "text-direction"),
            ("\u{200b}", "invisible"),
            ("x\u{feff}", "invisible"),
        ] {
            let err = request_text("purpose", bad, PURPOSE).unwrap_err();
            match &err {
                TextError::Forbidden { kind: k, what, .. } => {
                    assert_eq!((*k, what.as_str()), (kind, "purpose"), "{bad:?}")
                }
                other => panic!("{bad:?}: {other}"),
            }
            assert!(err.to_string().contains("purpose contains"), "{err}");
        }
    }

    #[test]
    fn blank_and_overlong_text_is_refused_with_the_limit() {
        let err = request_text("purpose", "   ", PURPOSE).unwrap_err();
        assert!(err.to_string().contains("say why"), "{err}");
        let err = request_text("purpose", &"查".repeat(501), PURPOSE).unwrap_err();
        assert!(err.to_string().contains("at most 500"), "{err}");
        assert_eq!(request_text("user", "", TextRule::line(100)).unwrap(), "");
    }

    #[test]
    fn notes_may_have_line_breaks_but_no_other_control() {
        let note = TextRule::paragraph(1000);
        assert_eq!(
            request_text("note", "第一行\n第二行", note).unwrap(),
            "第一行\n第二行"
        );
        assert!(request_text("note", "a\r\nb", note).is_err());
    }

    #[test]
    fn shown_text_spells_hidden_characters_and_stays_json() {
        let shown = visible("ok\u{1b}[31mred\u{202e}txet\nnext");
        assert_eq!(shown, "ok\\u001b[31mred\\u202etxet\nnext");
        let json = serde_json::to_string("a\u{202e}b").unwrap();
        let safe = visible(&json);
        assert!(!safe.contains('\u{202e}'));
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "a\u{202e}b");
        assert!(matches!(visible("普通文本"), Cow::Borrowed(_)));
    }

    #[test]
    fn log_fields_stay_on_one_line_and_are_clipped() {
        assert_eq!(for_log("tax/x\nFAKE LINE", 100), "tax/x\\u000aFAKE LINE");
        let long = "a".repeat(900_000);
        let logged = for_log(&long, 200);
        assert!(logged.len() < 250, "{}", logged.len());
        assert!(logged.ends_with("…(+899800 characters)"));
    }
}
