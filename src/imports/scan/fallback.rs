//! The conservative scan used when the source cannot be tokenized.
//!
//! Once a string or bracket is unterminated nobody knows which text is code,
//! so this pass reads everything as code: comments and string contents too.
//! It finds every `import X[, Y]` and `from X import Y` shape (a `from`
//! header must sit on one line, as Python requires, or be joined by
//! backslashes), every `import_module("...")` / `__import__("...")` with a
//! quoted first argument, and reports every dotted-name-looking word as a
//! module string. It over-reports by design and must never under-report.

use std::collections::{HashSet, VecDeque};

use super::collector::{resolve_relative_name, Collector};
use super::lexer::{is_identifier_byte, is_identifier_start, tokenize};
use super::{ImportKind, ImportRef, ModuleString, TextDecoder};

/// Scans `source` conservatively and merges in the results the precise pass
/// found before it gave up, without duplicates.
pub(super) fn conservative_scan(
    source: &[u8],
    decoder: TextDecoder,
    partial_imports: Vec<ImportRef>,
    partial_strings: Vec<ModuleString>,
) -> (Vec<ImportRef>, Vec<ModuleString>) {
    let mut scanner = FallbackScanner {
        src: source,
        decoder,
        stream: CrudeStream::new(source),
        imports: Vec::new(),
        module_strings: Vec::new(),
        seen_words: HashSet::new(),
        precise_call_windows: 0,
    };
    scanner.run();
    let FallbackScanner {
        mut imports,
        mut module_strings,
        ..
    } = scanner;

    let mut seen_imports: HashSet<ImportRef> = imports.iter().cloned().collect();
    for import in partial_imports {
        if seen_imports.insert(import.clone()) {
            imports.push(import);
        }
    }
    let mut seen_values: HashSet<String> = module_strings
        .iter()
        .map(|string| string.value.clone())
        .collect();
    for string in partial_strings {
        if seen_values.insert(string.value.clone()) {
            module_strings.push(string);
        }
    }
    (imports, module_strings)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CrudeKind {
    /// A dotted name written without spaces: `a`, `a.b.c`.
    Word,
    /// A run of dots not inside a word (`from .. import`, `a . b`).
    Dots,
    /// One of `( ) , * ; =`.
    Punct(u8),
    /// A line end not escaped by a backslash.
    Newline,
}

#[derive(Debug, Clone, Copy)]
struct Crude {
    kind: CrudeKind,
    start: usize,
    end: usize,
    line: u32,
}

/// The crude tokens of the whole text, with one-token-at-a-time pushback so
/// a parse that fails can hand back what it read.
struct CrudeStream<'s> {
    src: &'s [u8],
    pos: usize,
    line: u32,
    pending: VecDeque<Crude>,
}

impl<'s> CrudeStream<'s> {
    fn new(src: &'s [u8]) -> Self {
        let pos = if src.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        CrudeStream {
            src,
            pos,
            line: 1,
            pending: VecDeque::new(),
        }
    }

    /// The next token and whether it is read for the first time.
    fn next(&mut self) -> Option<(Crude, bool)> {
        if let Some(token) = self.pending.pop_front() {
            return Some((token, false));
        }
        self.lex().map(|token| (token, true))
    }

    fn push_back(&mut self, tokens: &[Crude]) {
        for token in tokens.iter().rev() {
            self.pending.push_front(*token);
        }
    }

    fn lex(&mut self) -> Option<Crude> {
        while let Some(&byte) = self.src.get(self.pos) {
            let start = self.pos;
            match byte {
                b'\n' | b'\r' => {
                    let line = self.line;
                    self.consume_line_end();
                    return Some(self.token(CrudeKind::Newline, start, line));
                }
                b'\\' if matches!(self.src.get(self.pos + 1), Some(b'\n' | b'\r')) => {
                    self.pos += 1;
                    self.consume_line_end();
                }
                b'.' => {
                    while self.src.get(self.pos) == Some(&b'.') {
                        self.pos += 1;
                    }
                    return Some(self.token(CrudeKind::Dots, start, self.line));
                }
                b'(' | b')' | b',' | b'*' | b';' | b'=' => {
                    self.pos += 1;
                    return Some(self.token(CrudeKind::Punct(byte), start, self.line));
                }
                _ if is_identifier_start(byte) => {
                    self.skip_dotted_word();
                    return Some(self.token(CrudeKind::Word, start, self.line));
                }
                // Numbers (with any letters glued to them) are not names.
                _ if byte.is_ascii_digit() => self.skip_identifier_bytes(),
                _ => self.pos += 1,
            }
        }
        None
    }

    fn token(&self, kind: CrudeKind, start: usize, line: u32) -> Crude {
        Crude {
            kind,
            start,
            end: self.pos,
            line,
        }
    }

    fn consume_line_end(&mut self) {
        if self.src.get(self.pos) == Some(&b'\r') && self.src.get(self.pos + 1) == Some(&b'\n') {
            self.pos += 2;
        } else {
            self.pos += 1;
        }
        self.line += 1;
    }

    fn skip_identifier_bytes(&mut self) {
        while self
            .src
            .get(self.pos)
            .copied()
            .is_some_and(is_identifier_byte)
        {
            self.pos += 1;
        }
    }

    fn skip_dotted_word(&mut self) {
        loop {
            self.skip_identifier_bytes();
            let dot_then_name = self.src.get(self.pos) == Some(&b'.')
                && self
                    .src
                    .get(self.pos + 1)
                    .copied()
                    .is_some_and(is_identifier_start);
            if !dot_then_name {
                return;
            }
            self.pos += 1;
        }
    }
}

struct FallbackScanner<'s> {
    src: &'s [u8],
    decoder: TextDecoder,
    stream: CrudeStream<'s>,
    imports: Vec<ImportRef>,
    module_strings: Vec<ModuleString>,
    seen_words: HashSet<&'s [u8]>,
    precise_call_windows: usize,
}

impl<'s> FallbackScanner<'s> {
    fn text(&self, token: Crude) -> &'s [u8] {
        &self.src[token.start..token.end]
    }

    fn is_word(&self, token: Option<Crude>, word: &[u8]) -> bool {
        token.is_some_and(|token| token.kind == CrudeKind::Word && self.text(token) == word)
    }

    /// The next token; a word read for the first time is also recorded as a
    /// module string (once per distinct word).
    fn next(&mut self) -> Option<Crude> {
        let (token, first_time) = self.stream.next()?;
        if first_time && token.kind == CrudeKind::Word {
            let word = self.text(token);
            if self.seen_words.insert(word) {
                self.module_strings.push(ModuleString {
                    value: self.decoder.decode(word),
                    line: token.line,
                });
            }
        }
        Some(token)
    }

    fn run(&mut self) {
        while let Some(token) = self.next() {
            if token.kind != CrudeKind::Word {
                continue;
            }
            let word = self.text(token);
            if word == b"from" {
                self.parse_from(token.line);
            } else if word == b"import" || word == b"cimport" {
                self.parse_import_list(token.line);
            } else if let Some(kind) = dynamic_callee(word) {
                self.parse_dynamic_call(token, kind);
            }
        }
    }

    /// After `import`: `a.b [as c], d ...` up to anything else.
    fn parse_import_list(&mut self, line: u32) {
        loop {
            let Some(module) = self.read_dotted_name() else {
                return;
            };
            self.imports.push(ImportRef {
                module,
                level: 0,
                names: Vec::new(),
                line,
                kind: ImportKind::Import,
            });
            self.skip_alias();
            if !self.accept_punct(b',') {
                return;
            }
        }
    }

    /// After `from`: dots, a dotted name and `import` on one line, then the
    /// names (across lines inside parentheses). Anything else is handed back.
    fn parse_from(&mut self, line: u32) {
        let mut consumed = Vec::new();
        let mut level = 0u32;
        let mut module = String::new();
        let mut complete = false;
        while let Some(token) = self.next() {
            consumed.push(token);
            match token.kind {
                CrudeKind::Dots if module.is_empty() => {
                    let dots = u32::try_from(token.end - token.start).unwrap_or(u32::MAX);
                    level = level.saturating_add(dots);
                }
                CrudeKind::Word if matches!(self.text(token), b"import" | b"cimport") => {
                    complete = !module.is_empty() || level > 0;
                    break;
                }
                CrudeKind::Word if module.is_empty() || module.ends_with('.') => {
                    module.push_str(&self.decoder.decode(self.text(token)));
                }
                // `from a . b import c`: a single dot inside the module name.
                CrudeKind::Dots if token.end - token.start == 1 && !module.ends_with('.') => {
                    module.push('.')
                }
                _ => break,
            }
        }
        if !complete {
            self.stream.push_back(&consumed);
            return;
        }
        let names = self.read_imported_names();
        self.imports.push(ImportRef {
            module,
            level,
            names,
            line,
            kind: ImportKind::From,
        });
    }

    fn read_imported_names(&mut self) -> Vec<String> {
        let parenthesized = self.accept_punct(b'(');
        let mut names = Vec::new();
        loop {
            let Some(token) = self.next() else {
                return names;
            };
            match token.kind {
                CrudeKind::Word => {
                    names.push(self.decoder.decode(self.text(token)));
                    self.skip_alias();
                }
                CrudeKind::Punct(b'*') => names.push("*".to_owned()),
                CrudeKind::Newline if parenthesized => continue,
                _ => {
                    self.stream.push_back(&[token]);
                    return names;
                }
            }
            while parenthesized && self.accept_newline() {}
            if !self.accept_punct(b',') {
                return names;
            }
            while parenthesized && self.accept_newline() {}
        }
    }

    /// `a`, `a.b`, `a . b` (joined with single dots).
    fn read_dotted_name(&mut self) -> Option<String> {
        let first = self.next()?;
        if first.kind != CrudeKind::Word {
            self.stream.push_back(&[first]);
            return None;
        }
        let mut module = self.decoder.decode(self.text(first));
        loop {
            let Some(dot) = self.next() else {
                return Some(module);
            };
            let single_dot = dot.kind == CrudeKind::Dots && dot.end - dot.start == 1;
            let name = if single_dot { self.next() } else { None };
            match name {
                Some(name) if name.kind == CrudeKind::Word => {
                    module.push('.');
                    module.push_str(&self.decoder.decode(self.text(name)));
                }
                Some(name) => {
                    self.stream.push_back(&[dot, name]);
                    return Some(module);
                }
                None => {
                    self.stream.push_back(&[dot]);
                    return Some(module);
                }
            }
        }
    }

    fn skip_alias(&mut self) {
        let Some(token) = self.next() else {
            return;
        };
        if self.is_word(Some(token), b"as") {
            // The alias itself, whatever it is, is not a module.
            if let Some(alias) = self.next() {
                if alias.kind != CrudeKind::Word {
                    self.stream.push_back(&[alias]);
                }
            }
        } else {
            self.stream.push_back(&[token]);
        }
    }

    fn accept_punct(&mut self, punct: u8) -> bool {
        self.accept(|token| token.kind == CrudeKind::Punct(punct))
    }

    fn accept_newline(&mut self) -> bool {
        self.accept(|token| token.kind == CrudeKind::Newline)
    }

    fn accept(&mut self, wanted: impl Fn(Crude) -> bool) -> bool {
        match self.next() {
            Some(token) if wanted(token) => true,
            Some(token) => {
                self.stream.push_back(&[token]);
                false
            }
            None => false,
        }
    }

    /// `import_module("a.b")`, `import_module(".b", package="pkg")`,
    /// `__import__("m", fromlist=["x"], level=1)`: the call is re-read by the
    /// precise scanner over a window of text starting at the callee, which
    /// reads every argument form the precise pass does; if that finds nothing
    /// (or the window budget is spent), a quoted first argument is read
    /// straight from the bytes.
    fn parse_dynamic_call(&mut self, callee_token: Crude, callee: DynamicCallee) {
        if !self.accept_punct(b'(') {
            return;
        }
        if self.precise_call_windows < MAX_PRECISE_CALL_WINDOWS {
            self.precise_call_windows += 1;
            if let Some(mut import) = self.precise_call(callee_token) {
                import.line = import.line.saturating_add(callee_token.line - 1);
                self.imports.push(import);
                return;
            }
        }
        self.byte_level_call(callee_token, callee);
    }

    fn precise_call(&self, callee_token: Crude) -> Option<ImportRef> {
        let window_end = self.src.len().min(callee_token.start + CALL_WINDOW_BYTES);
        let window = &self.src[callee_token.start..window_end];
        let mut collector = Collector::new(window, self.decoder);
        // The window may well end inside a string: what matters is the call
        // at its start, which the collector has finished by then.
        let _ = tokenize(window, &mut collector);
        let (imports, _) = collector.into_results();
        imports
            .into_iter()
            .find(|import| import.kind == ImportKind::Dynamic)
    }

    fn byte_level_call(&mut self, callee_token: Crude, callee: DynamicCallee) {
        let after_paren = callee_token.end + count_blanks(&self.src[callee_token.end..]);
        let Some((name, after_name)) = quoted_at(self.src, after_paren) else {
            return;
        };
        let dots = name.iter().take_while(|&&byte| byte == b'.').count();
        let relative_name = &name[dots..];
        if relative_name.is_empty() && dots == 0 {
            return;
        }
        let package = match callee {
            DynamicCallee::ImportModule if dots > 0 => package_argument(self.src, after_name),
            _ => None,
        };
        let (module, level) = match package {
            Some(package) => (resolve_relative_name(relative_name, dots, package), 0),
            None => (
                relative_name.to_vec(),
                u32::try_from(dots).unwrap_or(u32::MAX),
            ),
        };
        self.imports.push(ImportRef {
            module: self.decoder.decode(&module),
            level,
            names: Vec::new(),
            line: callee_token.line,
            kind: ImportKind::Dynamic,
        });
    }
}

/// How much text after a callee the precise re-read of a call may see, and
/// how many calls per file get one: together they bound the extra work on a
/// hostile file made of nothing but `__import__(` to a few megabytes.
const CALL_WINDOW_BYTES: usize = 2048;
const MAX_PRECISE_CALL_WINDOWS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DynamicCallee {
    ImportModule,
    DunderImport,
}

fn dynamic_callee(word: &[u8]) -> Option<DynamicCallee> {
    let last = word.rsplit(|&byte| byte == b'.').next()?;
    match last {
        b"import_module" => Some(DynamicCallee::ImportModule),
        b"__import__" => Some(DynamicCallee::DunderImport),
        _ => None,
    }
}

fn count_blanks(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&byte| matches!(byte, b' ' | b'\t' | b'(' | b'\n' | b'\r' | b'\\'))
        .count()
}

/// A quoted string (optionally `r`/`u`-prefixed) at `at`, without escapes
/// or line ends, and the position after its closing quote.
fn quoted_at(src: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let mut at = at;
    while src
        .get(at)
        .is_some_and(|byte| matches!(byte, b'r' | b'R' | b'u' | b'U'))
    {
        at += 1;
    }
    let quote = *src.get(at)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let body_start = at + 1;
    let length = src
        .get(body_start..)?
        .iter()
        .position(|&byte| byte == quote)?;
    let body = &src[body_start..body_start + length];
    if body
        .iter()
        .any(|&byte| matches!(byte, b'\\' | b'\n' | b'\r'))
    {
        return None;
    }
    Some((body, body_start + length + 1))
}

/// The literal package after a relative name: `, "pkg"` or `, package="pkg"`.
fn package_argument(src: &[u8], after_name: usize) -> Option<&[u8]> {
    let mut at = after_name + count_spaces(src.get(after_name..)?);
    if src.get(at) != Some(&b',') {
        return None;
    }
    at += 1;
    at += count_spaces(src.get(at..)?);
    if src.get(at..)?.starts_with(b"package") {
        at += b"package".len();
        at += count_spaces(src.get(at..)?);
        if src.get(at) != Some(&b'=') {
            return None;
        }
        at += 1;
        at += count_spaces(src.get(at..)?);
    }
    quoted_at(src, at).map(|(package, _)| package)
}

fn count_spaces(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\\'))
        .count()
}
