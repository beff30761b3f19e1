//! Input rules shared by REST and WebSocket: lengths in characters, no control characters.

use unicode_security::{skeleton, MixedScript};

use crate::error::AppError;

/// Counts characters and rejects C0/C1 control characters (newline and tab are allowed where
/// `multiline` is set). Returns the trimmed text.
pub fn text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, AppError> {
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
    {
        return Err(AppError::validation(
            field,
            format!("{field} contains control characters"),
        ));
    }
    let trimmed = value.trim();
    let n = trimmed.chars().count();
    if n < min {
        return Err(AppError::validation(
            field,
            if min == 1 {
                format!("{field} must not be empty")
            } else {
                format!("{field} must be at least {min} characters")
            },
        ));
    }
    if n > max {
        return Err(AppError::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_string())
}

/// Room names: [`text`] on one line, and nothing that changes how the text around it reads or
/// hides inside it: no bidirectional controls (an override reverses what follows the name
/// wherever it is listed) and no invisible characters (a zero-width space makes a second
/// "general" that looks like the first). Zero-width joiners and non-joiners stay allowed
/// between two non-ASCII characters, where scripts and emoji sequences need them.
pub fn room_name(value: &str, max: usize) -> Result<String, AppError> {
    let name = text("name", value, 1, max, false)?;
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let joiner_in_place = matches!(c, '\u{200C}' | '\u{200D}')
            && i > 0
            && !chars[i - 1].is_ascii()
            && chars.get(i + 1).is_some_and(|n| !n.is_ascii());
        if is_bidi_control(c) || (is_invisible(c) && !joiner_in_place) {
            return Err(AppError::validation(
                "name",
                format!(
                    "name must not contain invisible or text-direction characters (U+{:04X})",
                    c as u32
                ),
            ));
        }
    }
    Ok(name)
}

/// Marks and embeddings that reorder bidirectional text (Unicode UAX #9).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that draw nothing: zero-width spaces and joiners, invisible operators, the
/// byte-order mark, soft hyphen, Hangul fillers and the like (variation selectors, which
/// only pick a glyph for the character before them, are allowed).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
    )
}

/// Usernames: letters, digits, `_`, `.`, `-` (so `@username` mentions are unambiguous), in
/// one script (digits and punctuation go with any), so a Cyrillic letter cannot pass for a
/// Latin one inside a name.
pub fn username(value: &str, min: usize, max: usize) -> Result<String, AppError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(AppError::validation(
            "username",
            format!("username must be {min} to {max} characters"),
        ));
    }
    if !value.chars().all(is_username_char) {
        return Err(AppError::validation(
            "username",
            "username may contain only letters, digits, '_', '.' and '-'",
        ));
    }
    if !value.is_single_script() {
        return Err(AppError::validation(
            "username",
            "username must not mix scripts (for example Latin and Cyrillic letters)",
        ));
    }
    Ok(value.to_string())
}

/// The form two usernames share when people would take them for one name: case folded, and
/// each character replaced by the prototype it is confusable with (the skeleton of Unicode
/// TR39), so "Alice", "alice" and "ALlCE" are one name. Unique among accounts; names are
/// looked up by it (logins, mentions).
pub fn username_key(name: &str) -> String {
    skeleton(&name.to_lowercase())
        .collect::<String>()
        .to_lowercase()
}

/// Password rules of NIST SP 800-63B: at least `min` characters (at most `max`), no control
/// characters, and not among an attacker's first million guesses — common passwords, words,
/// names, sequences and repeats, and the username itself or the service's name (estimated by
/// zxcvbn on the first 64 characters, past which its estimate adds nothing and costs time).
pub fn password(value: &str, username: &str, min: usize, max: usize) -> Result<(), AppError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(AppError::validation(
            "password",
            format!("password must be {min} to {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::validation(
            "password",
            "password contains control characters",
        ));
    }
    let head: String = value.chars().take(64).collect();
    let estimate = zxcvbn::zxcvbn(&head, &[username, "livechat", "chat"]);
    if estimate.score() < zxcvbn::Score::Two {
        return Err(AppError::validation(
            "password",
            "password is too easy to guess (a common password, a word, a sequence or your \
             username): use a longer phrase of unrelated words",
        ));
    }
    Ok(())
}

/// A reaction: one emoji of Unicode's list (skin tones and sequences included) or its
/// `:shortcode:` (e.g. `:+1:`), returned as the emoji in its fully-qualified form, so "❤" and
/// "❤️" are the same reaction.
pub fn emoji(field: &str, value: &str) -> Result<String, AppError> {
    let shortcode = || {
        value
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .and_then(emojis::get_by_shortcode)
    };
    emojis::get(value)
        .or_else(shortcode)
        .map(|e| e.as_str().to_string())
        .ok_or_else(|| {
            AppError::validation(
                field,
                format!("{field} must be one emoji, or its :shortcode: (e.g. :+1:)"),
            )
        })
}

pub fn is_username_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// The distinct `@username` mentions in a text, in order of appearance.
pub fn mentions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let at_word_start = i == 0 || !is_username_char(chars[i - 1]);
        if chars[i] == '@' && at_word_start {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && is_username_char(chars[end]) {
                end += 1;
            }
            // A trailing '.' or '-' is punctuation, not part of the name ("hi @bob.").
            while end > start && matches!(chars[end - 1], '.' | '-') {
                end -= 1;
            }
            if end > start {
                let name: String = chars[start..end].iter().collect();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            i = end.max(start);
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_at_word_starts_only() {
        assert_eq!(
            mentions("hi @bob and @alice_2, mail x@y.z, @bob again @carol."),
            vec!["bob", "alice_2", "carol"]
        );
        assert!(mentions("no mentions @ here").is_empty());
    }

    #[test]
    fn text_rules() {
        assert!(text("content", "   ", 1, 10, true).is_err());
        assert!(text("content", "a\u{0}b", 1, 10, true).is_err());
        assert_eq!(text("content", " a\nb ", 1, 10, true).unwrap(), "a\nb");
        assert!(text("name", "a\nb", 1, 10, false).is_err());
        assert!(text("content", "ééééé", 1, 4, true).is_err());
    }

    #[test]
    fn room_names_hide_nothing() {
        assert!(room_name("\u{202E}", 32).is_err(), "only an override");
        assert!(room_name("general\u{202E}", 32).is_err());
        assert!(
            room_name("gen\u{200B}eral", 32).is_err(),
            "zero-width space"
        );
        assert!(
            room_name("gen\u{200D}eral", 32).is_err(),
            "a joiner between Latin letters"
        );
        assert!(room_name("\u{FEFF}general", 32).is_err());
        assert!(room_name("\u{200B}\u{200B}", 32).is_err());
        // A family emoji (joined by ZWJ), a heart with its variation selector, Persian with ZWNJ.
        assert!(room_name("\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} family", 32).is_ok());
        assert!(room_name("I \u{2764}\u{FE0F} Rust", 32).is_ok());
        assert!(room_name(
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            32
        )
        .is_ok());
        assert_eq!(room_name("  general ", 32).unwrap(), "general");
    }

    #[test]
    fn username_rules() {
        assert!(username("al", 3, 32).is_err());
        assert!(username("alice bob", 3, 32).is_err());
        assert!(username("Иван_1", 3, 32).is_ok());
        // Latin "alice" with a Cyrillic "а".
        assert!(username("\u{0430}lice", 3, 32).is_err());
    }

    #[test]
    fn names_people_would_confuse_share_a_key() {
        assert_eq!(username_key("Alice"), username_key("alice"));
        assert_eq!(username_key("ALICE"), username_key("alice"));
        // "rn" and "m"; digit 0 and letter o; a name all in Cyrillic letters that look Latin.
        assert_eq!(username_key("rnary"), username_key("mary"));
        assert_eq!(username_key("b0b"), username_key("bob"));
        assert_eq!(
            username_key("\u{0440}\u{043e}\u{0440}"),
            username_key("pop")
        );
        assert_ne!(username_key("alice"), username_key("alicia"));
    }

    #[test]
    fn password_rules() {
        let ok = |p: &str| password(p, "alice", 8, 128).is_ok();
        assert!(!ok("x7#k"), "shorter than 8");
        assert!(!ok("\0\0\0\0\0\0\0\0"), "control characters");
        assert!(!ok("password"), "the most common password");
        assert!(!ok("12345678"), "a sequence");
        assert!(!ok("aaaaaaaaaa"), "a repeat");
        assert!(!ok("alice123"), "the username");
        assert!(!ok("hunter22"), "a word and digits");
        assert!(ok("pw-secret-7"));
        assert!(ok("correct horse battery staple"));
        assert!(ok("alice-secret-1"));
    }
}
