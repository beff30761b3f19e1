//! Message search: the words of a query, and where they occur in a message's text.

use crate::error::AppError;

/// Most words one query may hold.
pub const MAX_TERMS: usize = 8;

/// The words of a query (split on whitespace, each kept whole: the index matches substrings,
/// so "chat" finds "LiveChat", and scripts without spaces are searched by their characters).
pub fn terms(text: &str) -> Result<Vec<String>, AppError> {
    let mut terms: Vec<String> = Vec::new();
    for t in text.split_whitespace() {
        if !terms.iter().any(|x| x.to_lowercase() == t.to_lowercase()) {
            terms.push(t.to_string());
        }
    }
    if terms.is_empty() {
        return Err(AppError::validation("text", "text must not be empty"));
    }
    if terms.len() > MAX_TERMS {
        return Err(AppError::validation(
            "text",
            format!("text holds at most {MAX_TERMS} words"),
        ));
    }
    Ok(terms)
}

/// Each character lowered on its own (one char for one char), so positions in the lowered text
/// are positions in the text.
fn lowered(text: &str) -> Vec<char> {
    text.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Where the terms occur in `text`, as `[start, end)` character offsets, sorted, overlapping
/// ones merged: what a client marks (it gets positions, never markup to trust).
pub fn highlights(text: &str, terms: &[String]) -> Vec<[usize; 2]> {
    let hay = lowered(text);
    let mut found: Vec<[usize; 2]> = Vec::new();
    for term in terms {
        let needle = lowered(term);
        if needle.is_empty() || needle.len() > hay.len() {
            continue;
        }
        let mut i = 0;
        while i + needle.len() <= hay.len() {
            if hay[i..i + needle.len()] == needle[..] {
                found.push([i, i + needle.len()]);
                i += needle.len();
            } else {
                i += 1;
            }
        }
    }
    found.sort_unstable();
    let mut merged: Vec<[usize; 2]> = Vec::new();
    for r in found {
        match merged.last_mut() {
            Some(last) if r[0] <= last[1] => last[1] = last[1].max(r[1]),
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_words_without_repeats() {
        assert_eq!(
            terms("  Pizza  pizza   tonight ").unwrap(),
            vec!["Pizza", "tonight"]
        );
        assert!(terms("   ").is_err());
        assert!(terms("a b c d e f g h i").is_err());
    }

    #[test]
    fn highlights_are_character_offsets_in_any_script() {
        let t = |s: &str| vec![s.to_string()];
        assert_eq!(
            highlights("Ünïcode and ünï", &t("ÜNÏ")),
            vec![[0, 3], [12, 15]]
        );
        assert_eq!(highlights("東京で会いましょう", &t("会い")), vec![[3, 5]]);
        assert_eq!(
            highlights("chatchat", &["chat".into(), "atc".into()]),
            vec![[0, 8]],
            "overlaps merged"
        );
        assert!(highlights("short", &t("longer than it")).is_empty());
    }
}
