//! Strings with `$N` placeholders, filled from a regex match's groups.
//! `$10` is group ten, never group one followed by `0` (a defect of the original).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            let starts_group = c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit());
            if !starts_group {
                literal.push(c);
                continue;
            }
            let mut digits = String::new();
            while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                digits.push(d);
                chars.next();
            }
            match digits.parse::<usize>() {
                Ok(group) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Group(group));
                }
                // Absurdly long digit runs stay literal rather than failing.
                Err(_) => {
                    literal.push('$');
                    literal.push_str(&digits);
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Template {
            text: text.to_string(),
            parts,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The highest group number used, if any.
    pub fn max_group(&self) -> Option<usize> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Group(g) => Some(*g),
                Part::Literal(_) => None,
            })
            .max()
    }

    /// Fills the placeholders; `group(n)` returns the text of group `n` (empty if it did not take part).
    pub fn expand(&self, group: impl Fn(usize) -> String) -> String {
        if self.max_group().is_none() {
            return self.text.clone();
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Group(g) => out.push_str(&group(*g)),
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize) -> String {
        format!("<{n}>")
    }

    #[test]
    fn dollar_ten_is_group_ten_not_group_one() {
        // Regression: the original replaced `$1` inside `$10`.
        assert_eq!(
            Template::parse("a/$10/$1.txt").expand(groups),
            "a/<10>/<1>.txt"
        );
    }

    #[test]
    fn literal_dollar_and_no_groups() {
        let t = Template::parse("cost$/x");
        assert_eq!(t.max_group(), None);
        assert_eq!(t.expand(groups), "cost$/x");
        assert_eq!(Template::parse("$0$2").max_group(), Some(2));
    }
}
