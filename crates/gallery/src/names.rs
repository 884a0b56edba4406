//! Subject names as people read them. A name is stored in Unicode NFC, trimmed, and without
//! characters a reader cannot see or that change how a terminal shows what follows (control
//! codes, ANSI escapes, bidirectional overrides, zero-width characters): two names that look
//! the same must be the same name, and `gallery list` must not be able to repaint a terminal.

use std::fmt::Write;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::{Error, Invalid, Result};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The stored form of `raw`: NFC, trimmed; refused when empty, too long, or holding a
/// control or invisible character (the error names the character and its position).
pub fn subject_name(raw: &str) -> Result<String> {
    let name: String = raw.nfc().collect::<String>().trim().to_string();
    if name.is_empty() {
        return Err(Error::Invalid(Invalid::EmptyName));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Error::Invalid(Invalid::LongName { chars }));
    }
    if let Some((at, c)) = name.chars().enumerate().find(|&(_, c)| is_hidden(c)) {
        return Err(Error::Invalid(Invalid::HiddenCharacter { name, code_point: c as u32, position: at + 1 }));
    }
    Ok(name)
}

/// `name` safe to print: every control or invisible character written as `\u{..}`. For
/// names stored before they were checked.
pub fn escaped_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if is_hidden(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Control, format (zero-width, bidi controls, soft hyphen), line and paragraph separators,
/// private-use and unassigned characters, and the letters that render as nothing.
fn is_hidden(c: char) -> bool {
    use GeneralCategory as G;
    matches!(
        c.general_category(),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Unassigned
            | G::Surrogate
    ) || matches!(c, '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{2800}' | '\u{3164}' | '\u{FFA0}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_trimmed_and_refused_when_they_hide_characters() {
        // NFD "José" (e + combining acute) becomes NFC; spaces around go.
        assert_eq!(subject_name("  Jose\u{301} Garci\u{301}a \t").unwrap(), "José García");
        assert_eq!(subject_name("李小龍").unwrap(), "李小龍");
        for bad in [
            "ann\0",
            "ann\nbob",
            "\u{1b}[31mred\u{1b}[0m",
            "evil\u{202E}gnp.exe",
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "soft\u{AD}hyphen",
            "filler\u{3164}",
            "line\u{2028}sep",
        ] {
            let e = subject_name(bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad:?} was accepted");
            // The error itself prints nothing hidden.
            assert!(!e.to_string().chars().any(is_hidden), "{e}");
        }
        assert!(subject_name(" \t ").is_err());
        assert!(subject_name(&"a".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(subject_name(&"a".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(escaped_name("a\u{1b}[2Jb\u{202E}"), "a\\u{1b}[2Jb\\u{202e}");
    }
}
