//! Input rules shared by REST and WebSocket: lengths in characters, no control characters.

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

/// Usernames: letters, digits, `_`, `.`, `-` (so `@username` mentions are unambiguous).
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
    Ok(value.to_string())
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
    fn username_rules() {
        assert!(username("al", 3, 32).is_err());
        assert!(username("alice bob", 3, 32).is_err());
        assert!(username("Иван_1", 3, 32).is_ok());
    }
}
