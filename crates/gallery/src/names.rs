//! What a subject is given: a name as people read it, and bounded metadata.
//!
//! A name is stored in Unicode NFKC, trimmed, in one script, and without characters a reader
//! cannot see or that change how a terminal shows what follows (control codes, ANSI escapes,
//! bidirectional overrides, zero-width characters): two names that look the same must be the
//! same name, and `gallery list` must not be able to repaint a terminal. NFKC folds
//! compatibility forms ("ﬁ" and "fi", full-width "Ａ" and "A") into one name; a name mixing
//! scripts ("Аlice" with a Cyrillic "А") is refused rather than guessed at, since its letters
//! can pass for another person's name. Names in one script that merely resemble another
//! (Cyrillic "Асе" and Latin "Ace") stay different names: people of both scripts enrol.

use std::fmt::Write;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::mixed_script::AugmentedScriptSet;

use crate::{Error, Invalid, Result};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Largest subject metadata, as JSON text: what a person's record needs, not a store for files.
pub const MAX_METADATA_BYTES: usize = 16 << 10;

/// The stored form of `raw`: NFKC, trimmed; refused when empty, too long, holding a control
/// or invisible character (the error names the character and its position), or mixing scripts.
pub fn subject_name(raw: &str) -> Result<String> {
    let name: String = raw.nfkc().collect::<String>().trim().to_string();
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
    // Augmented sets: Han with Hiragana and Katakana (Japanese) or Hangul (Korean) is one
    // script; digits, spaces and punctuation belong to every script.
    if AugmentedScriptSet::for_str(&name).is_empty() {
        let mut scripts: Vec<String> = Vec::new();
        for c in name.chars() {
            let set = AugmentedScriptSet::for_char(c);
            if !set.is_all() && !scripts.contains(&set.to_string()) {
                scripts.push(set.to_string());
            }
        }
        return Err(Error::Invalid(Invalid::MixedScripts { name, scripts: scripts.join(" and ") }));
    }
    Ok(name)
}

/// Subject metadata as stored: its JSON text, refused over [`MAX_METADATA_BYTES`].
pub fn subject_metadata(metadata: &serde_json::Value) -> Result<String> {
    let text = metadata.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(Error::Invalid(Invalid::LongMetadata { bytes: text.len() }));
    }
    Ok(text)
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

    #[test]
    fn compatibility_forms_fold_and_mixed_scripts_are_refused() {
        assert_eq!(subject_name("\u{FB01}sh").unwrap(), "fish");
        assert_eq!(subject_name("\u{FF21}nna").unwrap(), "Anna");
        for one_script in ["Алиса", "山田 太郎", "やまだ たろう", "山田たろう", "김민준", "Ana-María 2", "O'Brien"]
        {
            assert_eq!(subject_name(one_script).unwrap(), one_script.nfkc().collect::<String>(), "{one_script}");
        }
        for mixed in ["\u{410}lice", "P\u{430}ypal", "Αlpha"] {
            let e = subject_name(mixed).unwrap_err();
            assert!(matches!(e, Error::Invalid(Invalid::MixedScripts { .. })), "{mixed}: {e}");
            assert!(e.to_string().contains("Latin"), "{e}");
        }
    }

    #[test]
    fn metadata_is_bounded() {
        let small = serde_json::json!({ "team": "blue" });
        assert_eq!(subject_metadata(&small).unwrap(), r#"{"team":"blue"}"#);
        let big = serde_json::json!({ "photo": "x".repeat(MAX_METADATA_BYTES) });
        assert!(matches!(subject_metadata(&big), Err(Error::Invalid(Invalid::LongMetadata { .. }))));
    }
}
