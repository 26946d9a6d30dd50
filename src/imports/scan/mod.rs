//! Import scanning: Python source bytes in, imports and module-naming strings out.
//! Pure: no file system, no configuration.
//!
//! [`scan`] tokenizes the source ([`lexer`]) and recognises import statements,
//! literal dynamic imports and module-naming string literals in the token
//! stream ([`collector`]). When the source cannot be tokenized it falls back to
//! a conservative text scan ([`fallback`]) that may over-report but never
//! under-reports, and says so in [`ScanResult::fallback`].

mod collector;
mod fallback;
mod lexer;
#[cfg(test)]
mod tests;

/// How an import was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportKind {
    /// `import a.b` / `import a.b as c`
    Import,
    /// `from a.b import c, d` / `from . import x`
    From,
    /// `importlib.import_module("a.b")`, `__import__("a")` with a literal name.
    Dynamic,
}

/// One imported module as found in the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImportRef {
    /// Dotted module as written, without leading dots ("" for `from . import x`).
    pub module: String,
    /// Number of leading dots: 0 is absolute, 1 is `from . import`, 2 is `from ..`.
    pub level: u32,
    /// Names after `from M import`: `["a", "b"]`, `["*"]` for a star; empty for `import M`.
    pub names: Vec<String>,
    /// 1-based line of the statement's first token.
    pub line: u32,
    pub kind: ImportKind,
}

/// A string literal whose whole value names a module (`"pkg.mod"`) or an
/// object in one (`"pkg.mod:attr"`); `value` holds the module part only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleString {
    pub value: String,
    pub line: u32,
}

/// Why the precise scan gave up and a conservative one was used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFallback {
    pub line: u32,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanResult {
    pub imports: Vec<ImportRef>,
    pub module_strings: Vec<ModuleString>,
    /// Set when the source could not be tokenized; the lists above then come
    /// from a conservative scan that may over-report but never under-reports.
    pub fallback: Option<ScanFallback>,
}

/// Scans Python source for imports and module-naming strings.
///
/// Never panics and never fails: source that cannot be tokenized is scanned
/// conservatively instead, and `fallback` says where and why.
pub fn scan(source: &[u8]) -> ScanResult {
    let decoder = TextDecoder::for_source(source);
    let mut collector = collector::Collector::new(source, decoder);
    match lexer::tokenize(source, &mut collector) {
        Ok(()) => {
            let (imports, module_strings) = collector.into_results();
            ScanResult {
                imports,
                module_strings,
                fallback: None,
            }
        }
        Err(error) => {
            // The precise pass's partial results are merged in so that the
            // fallback is a superset of anything the precise pass had found.
            let (partial_imports, partial_strings) = collector.into_results();
            let (imports, module_strings) =
                fallback::conservative_scan(source, decoder, partial_imports, partial_strings);
            ScanResult {
                imports,
                module_strings,
                fallback: Some(ScanFallback {
                    line: error.line,
                    reason: error.reason.to_owned(),
                }),
            }
        }
    }
}

/// Turns identifier bytes into `String`s the way Python would decode the file:
/// latin-1 when its coding cookie says so, UTF-8 otherwise (lossily, since a
/// file that is not valid UTF-8 and has no cookie cannot be imported anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextDecoder {
    latin1: bool,
}

impl TextDecoder {
    fn for_source(source: &[u8]) -> Self {
        let latin1 = coding_cookie(source).is_some_and(|name| is_latin1_name(&name));
        TextDecoder { latin1 }
    }

    fn decode(self, bytes: &[u8]) -> String {
        if bytes.is_ascii() || !self.latin1 {
            return String::from_utf8_lossy(bytes).into_owned();
        }
        bytes.iter().map(|&byte| char::from(byte)).collect()
    }
}

/// The encoding named by a PEP 263 cookie (`# -*- coding: latin-1 -*-`) on
/// the first or second line, lower-cased with `_` as `-`.
fn coding_cookie(source: &[u8]) -> Option<String> {
    let mut lines = source.split(|&byte| byte == b'\n' || byte == b'\r');
    for _ in 0..2 {
        let line = lines.next()?;
        let trimmed = trim_leading_blanks(line);
        if !trimmed.starts_with(b"#") {
            // Only a comment or blank first line lets the cookie sit on line 2.
            if trimmed.is_empty() {
                continue;
            }
            return None;
        }
        if let Some(name) = cookie_in_comment(trimmed) {
            return Some(name);
        }
    }
    None
}

fn trim_leading_blanks(line: &[u8]) -> &[u8] {
    let blanks = line
        .iter()
        .take_while(|&&byte| matches!(byte, b' ' | b'\t' | b'\x0C'))
        .count();
    &line[blanks..]
}

fn cookie_in_comment(comment: &[u8]) -> Option<String> {
    let at = comment.windows(6).position(|window| window == b"coding")?;
    let rest = &comment[at + 6..];
    let rest = rest
        .strip_prefix(b":")
        .or_else(|| rest.strip_prefix(b"="))?;
    let rest = trim_leading_blanks(rest);
    let name_length = rest
        .iter()
        .take_while(|&&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        .count();
    if name_length == 0 {
        return None;
    }
    let name = rest[..name_length]
        .iter()
        .map(|&byte| match byte {
            b'_' => '-',
            _ => char::from(byte.to_ascii_lowercase()),
        })
        .collect();
    Some(name)
}

fn is_latin1_name(name: &str) -> bool {
    matches!(
        name,
        "latin-1"
            | "latin1"
            | "latin"
            | "l1"
            | "iso-8859-1"
            | "iso8859-1"
            | "iso-latin-1"
            | "8859"
            | "cp819"
    ) || name.starts_with("latin-1-")
        || name.starts_with("iso-8859-1-")
}

/// Longer literals are prose or data, never a module name (and skipping them
/// keeps megabyte-long strings cheap).
const MAX_MODULE_STRING_BYTES: usize = 200;

/// The module part of a string value that is a dotted Python name,
/// optionally followed by `:attr` or `:attr.sub` (an entry-point spec).
fn module_part_of_spec(value: &[u8]) -> Option<&[u8]> {
    if value.len() > MAX_MODULE_STRING_BYTES {
        return None;
    }
    let (module, attribute) = match value.iter().position(|&byte| byte == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    let attribute_ok = attribute.is_none_or(is_dotted_name);
    (is_dotted_name(module) && attribute_ok).then_some(module)
}

/// `a`, `a.b.c`: identifiers (bytes >= 0x80 allowed) joined by single dots.
fn is_dotted_name(text: &[u8]) -> bool {
    !text.is_empty()
        && text.split(|&byte| byte == b'.').all(|part| {
            part.first()
                .is_some_and(|&first| lexer::is_identifier_start(first))
                && part.iter().all(|&byte| lexer::is_identifier_byte(byte))
        })
}
