//! The conservative scan used when the source cannot be tokenized.
//!
//! Once a string or bracket is unterminated nobody knows which text is code,
//! so this pass reads everything as code: comments and string contents too.
//! It finds every `import X[, Y]` and `from X import Y` shape (a `from`
//! header must sit on one line, as Python requires, or be joined by
//! backslashes), every `import_module("...")` / `__import__("...")` with a
//! quoted first argument, and reports every dotted-name-looking word as a
//! module string. It over-reports by design and must never under-report.
//!
//! # Why a second grammar, not the collector's
//!
//! The collector ([`super::collector`]) parses a Python token stream:
//! comments and string contents are gone, newlines inside brackets are not
//! logical, and `import`/`from` are hard keywords, so buffering a statement
//! from its keyword to `;`, `:` or the logical newline and parsing it once
//! is exact. Text read as code breaks each of those premises, and this
//! grammar differs from the collector's exactly there:
//!
//! - It backtracks: every token a failed or partial parse does not use is
//!   handed back and read again. In a comment or string read as code,
//!   `from here, import json` must still yield `import json`; the
//!   collector's statement buffer would swallow it up to the terminator.
//! - It has no bracket depth (an unclosed bracket is often why we are here),
//!   so it sees every line end. The names of `from m import (` run across
//!   line ends up to the `)`, and end early at an import keyword, a call or
//!   other punctuation, so an unclosed list cannot swallow what follows.
//! - Comment words inside such a list are taken as names rather than
//!   ending it (the collector never sees comments).
//! - A string is both code and a string: its words are read as code, yet a
//!   dynamic call's literal argument must be read as a string. The call is
//!   therefore re-read by the collector itself over a window of text (the
//!   call-argument grammar is shared, not repeated), and by a byte-level
//!   reader of a quoted first argument when the window finds nothing.
//! - Module strings are every word, plus the words joined across a
//!   backslash continuation (deleted inside a string's value).
//!
//! Feeding a crude token stream to the collector would make the collector
//! carry the backtracking and both tolerances, which never fire on a real
//! token stream but sit in the hot path, and would let one grammar bug hit
//! both passes at once. Instead the two are pinned against each other:
//! `fallback_reports_a_superset_of_the_collector_on_every_test_input`
//! (`tests.rs`) runs both over every unit-test input and every file of the
//! import corpus, and `..._on_every_prefix` over every prefix of those, and
//! requires the fallback's results to be a superset, with the differences
//! listed and justified there (one, by rule: an import keyword the collector
//! takes as an imported name, `from importlib import import` in a file cut
//! inside `import_module`). When it was written it found two
//! gaps, both fixed here: the names after a comment in a parenthesized list,
//! and a dotted name split by a continuation inside a string.

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
        self.record_words_across_continuations();
    }

    /// A backslash continuation inside a string is deleted from its value
    /// (`'pkg.\` + newline + `mod'` is `"pkg.mod"`), but the crude lexer
    /// splits words there: the words of each run joined across
    /// continuations are recorded as module strings too.
    fn record_words_across_continuations(&mut self) {
        let mut recorded: HashSet<Vec<u8>> = HashSet::new();
        for (joined, line) in runs_across_continuations(self.src) {
            let mut stream = CrudeStream::new(&joined);
            while let Some((token, _)) = stream.next() {
                let word = &joined[token.start..token.end];
                if token.kind != CrudeKind::Word
                    || self.seen_words.contains(word)
                    || !recorded.insert(word.to_vec())
                {
                    continue;
                }
                self.module_strings.push(ModuleString {
                    value: self.decoder.decode(word),
                    line,
                });
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
        if self.accept_punct(b'(') {
            return self.read_parenthesized_names();
        }
        let mut names = Vec::new();
        loop {
            match self.next() {
                Some(token) if token.kind == CrudeKind::Word && !self.is_import_keyword(token) => {
                    names.push(self.decoder.decode(self.text(token)));
                    self.skip_alias();
                }
                Some(token) if token.kind == CrudeKind::Punct(b'*') => names.push("*".to_owned()),
                Some(token) => {
                    self.stream.push_back(&[token]);
                    return names;
                }
                None => return names,
            }
            if !self.accept_punct(b',') {
                return names;
            }
        }
    }

    /// The names of `from m import (...)` up to the `)`. Comments are read
    /// as code here too, so their words are taken as names (over-reporting
    /// names is harmless; stopping at the first comment would lose the names
    /// after it). An import keyword, a call, or any other punctuation ends
    /// the list and is handed back, so an unclosed list cannot swallow the
    /// imports after it.
    fn read_parenthesized_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        while let Some(token) = self.next() {
            match token.kind {
                CrudeKind::Word if !self.is_import_keyword(token) => {
                    let name = self.decoder.decode(self.text(token));
                    if !names.contains(&name) {
                        names.push(name);
                    }
                    match self.next() {
                        Some(paren) if paren.kind == CrudeKind::Punct(b'(') => {
                            // `import_module(` or any call: not a name list.
                            self.stream.push_back(&[token, paren]);
                            return names;
                        }
                        Some(other) => self.stream.push_back(&[other]),
                        None => {}
                    }
                    self.skip_alias();
                }
                CrudeKind::Punct(b'*') if !names.iter().any(|name| name == "*") => {
                    names.push("*".to_owned())
                }
                CrudeKind::Punct(b',' | b'*') | CrudeKind::Newline => {}
                CrudeKind::Punct(b')') => return names,
                _ => {
                    self.stream.push_back(&[token]);
                    return names;
                }
            }
        }
        names
    }

    /// `import`, `cimport` and `from` are never imported names.
    fn is_import_keyword(&self, token: Crude) -> bool {
        matches!(self.text(token), b"import" | b"cimport" | b"from")
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

/// Each run of word bytes (identifier bytes and dots) that goes on across
/// a backslash continuation, with the continuations deleted, and the line
/// it starts on. Runs without a continuation are the crude lexer's words.
fn runs_across_continuations(src: &[u8]) -> Vec<(Vec<u8>, u32)> {
    let is_word_byte = |byte: u8| is_identifier_byte(byte) || byte == b'.';
    let mut runs = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut current_line = 1;
    let mut continued = false;
    let mut line = 1u32;
    let mut at = 0;
    while let Some(&byte) = src.get(at) {
        if is_word_byte(byte) {
            if current.is_empty() {
                current_line = line;
            }
            current.push(byte);
            at += 1;
            continue;
        }
        let line_end_length = |at: usize| match (src.get(at), src.get(at + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r' | b'\n'), _) => 1,
            _ => 0,
        };
        let after_backslash = line_end_length(at + 1);
        if byte == b'\\' && after_backslash > 0 && !current.is_empty() {
            let resumed = at + 1 + after_backslash;
            if src.get(resumed).copied().is_some_and(is_word_byte) {
                at = resumed;
                line += 1;
                continued = true;
                continue;
            }
        }
        if continued {
            runs.push((current.clone(), current_line));
        }
        current.clear();
        continued = false;
        let here = line_end_length(at);
        if here > 0 {
            line += 1;
            at += here;
        } else {
            at += 1;
        }
    }
    if continued {
        runs.push((current, current_line));
    }
    runs
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
