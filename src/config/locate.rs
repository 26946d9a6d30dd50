//! Finding the line of a key or value in the configuration text, so that
//! errors found after parsing (a bad glob, a bad regex) can name a line.
//! The YAML and TOML parsers keep no positions once a value is deserialized.

/// 1-based line of the first line containing `needle` as written (quoted or bare).
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    let quoted = [format!("\"{needle}\""), format!("'{needle}'")];
    let lines: Vec<&str> = text.lines().collect();
    // Prefer a quoted occurrence: a bare substring match may hit a longer value.
    for candidate in quoted
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(needle))
    {
        if let Some(index) = lines.iter().position(|line| line.contains(candidate)) {
            return Some(index + 1);
        }
    }
    None
}

/// 1-based line of a `key:` (YAML) or `key =` (TOML) definition.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    line_of_key_from(text, key, 1)
}

/// Like `line_of_key`, looking only at lines from `first_line` (1-based) on.
pub fn line_of_key_from(text: &str, key: &str, first_line: usize) -> Option<usize> {
    let skip = first_line.saturating_sub(1);
    text.lines()
        .skip(skip)
        .position(|line| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            trimmed.strip_prefix(key).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with(':') || rest.starts_with('=')
            })
        })
        .map(|i| i + skip + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_quoted_value_before_bare_substring() {
        let text = "inputs: tests/a*\nglobal_deps:\n  - \"a*\"\n";
        assert_eq!(line_of(text, "a*"), Some(3));
        assert_eq!(line_of_key(text, "global_deps"), Some(2));
        assert_eq!(line_of(text, "zzz"), None);
    }
}
