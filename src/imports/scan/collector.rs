//! Recognises imports in the token stream: `import` and `from` statements
//! (wherever they sit: nested blocks, after `;` or `:`, behind `lazy`),
//! literal `import_module(...)` / `__import__(...)` calls, and string
//! literals that name a module.
//!
//! Only the tokens of a statement or call that may be an import are
//! buffered, in vectors reused across the file; every other token is looked
//! at once and dropped, so memory does not grow with the file.

use super::lexer::{StringFlags, Token, TokenKind, TokenSink};
use super::{module_part_of_spec, ImportKind, ImportRef, ModuleString, TextDecoder};

/// A call's arguments longer than this are not a literal import (literal
/// calls take a few tokens; a long `fromlist` a few hundred).
const MAX_CALL_TOKENS: usize = 4096;

/// Which import function a call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callee {
    /// `importlib.import_module(name, package=None)`, or the bare name.
    ImportModule,
    /// `__import__(name, globals=None, locals=None, fromlist=(), level=0)`.
    DunderImport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Idle,
    AwaitingParen {
        callee: Callee,
        line: u32,
    },
    InArguments {
        callee: Callee,
        line: u32,
        depth: u32,
    },
}

pub(super) struct Collector<'s> {
    src: &'s [u8],
    decoder: TextDecoder,
    imports: Vec<ImportRef>,
    module_strings: Vec<ModuleString>,
    /// Tokens of the `import`/`from` statement being read, keyword first.
    statement: Vec<Token>,
    statement_line: u32,
    call: Vec<Token>,
    call_state: CallState,
    previous: Option<Token>,
}

impl TokenSink for Collector<'_> {
    #[inline]
    fn token(&mut self, token: Token) {
        if let TokenKind::String(flags) = token.kind {
            self.record_module_string(token, flags);
        }
        // Fast path for nearly every token: nothing is being collected and
        // the token is not a name as long as a keyword or callee we look for
        // (`from`, `import`, `cimport`, `__import__`, `import_module`).
        let idle = self.statement.is_empty() && self.call_state == CallState::Idle;
        let may_start =
            token.kind == TokenKind::Name && matches!(token.end - token.start, 4 | 6 | 7 | 10 | 13);
        if idle && !may_start {
            self.previous = Some(token);
            return;
        }
        self.feed_call(token);
        self.feed_statement(token);
        self.previous = Some(token);
    }
}

impl<'s> Collector<'s> {
    pub(super) fn new(src: &'s [u8], decoder: TextDecoder) -> Self {
        Collector {
            src,
            decoder,
            imports: Vec::new(),
            module_strings: Vec::new(),
            statement: Vec::new(),
            statement_line: 0,
            call: Vec::new(),
            call_state: CallState::Idle,
            previous: None,
        }
    }

    pub(super) fn into_results(self) -> (Vec<ImportRef>, Vec<ModuleString>) {
        (self.imports, self.module_strings)
    }

    fn text(&self, token: Token) -> &'s [u8] {
        &self.src[token.start..token.end]
    }

    fn is_name(&self, token: Option<&Token>, name: &[u8]) -> bool {
        token.is_some_and(|token| token.kind == TokenKind::Name && self.text(*token) == name)
    }

    fn record_module_string(&mut self, token: Token, flags: StringFlags) {
        if flags.bytes || flags.template {
            return;
        }
        let Some(value) = self.literal_value(token, flags) else {
            return;
        };
        if let Some(module) = module_part_of_spec(&value) {
            self.module_strings.push(ModuleString {
                value: self.decoder.decode(module),
                line: token.line,
            });
        }
    }

    /// The value of a `str` literal token, or `None` when it holds an escape
    /// other than a line continuation: no module name needs one, and decoding
    /// escapes in full is not worth it.
    fn literal_value(
        &self,
        token: Token,
        flags: StringFlags,
    ) -> Option<std::borrow::Cow<'s, [u8]>> {
        let content = self.text(token);
        if flags.raw || !content.contains(&b'\\') {
            return Some(std::borrow::Cow::Borrowed(content));
        }
        let mut value = Vec::with_capacity(content.len());
        let mut rest = content;
        while let Some((&byte, tail)) = rest.split_first() {
            if byte != b'\\' {
                value.push(byte);
                rest = tail;
                continue;
            }
            rest = match tail {
                [b'\r', b'\n', after @ ..] | [b'\n', after @ ..] | [b'\r', after @ ..] => after,
                _ => return None,
            };
        }
        Some(std::borrow::Cow::Owned(value))
    }

    fn feed_statement(&mut self, token: Token) {
        if !self.statement.is_empty() {
            // No import statement holds a `:`, so one ends a `from` that was
            // `yield from` in a compound statement's header and lets the body
            // after it start an import: `if (yield from g()): import x`.
            if matches!(token.kind, TokenKind::Newline | TokenKind::Op(b';' | b':')) {
                self.finish_statement();
            } else {
                self.statement.push(token);
            }
            return;
        }
        if token.kind != TokenKind::Name || !matches!(token.end - token.start, 4 | 6 | 7) {
            return;
        }
        let keyword = self.text(token);
        // `import` and `from` are hard keywords, so outside strings they
        // always start an import; `x.import` is not one (and not Python).
        // Cython's `cimport` (in .pyx/.pxd files) counts as `import`.
        let after_dot = self
            .previous
            .is_some_and(|previous| previous.kind == TokenKind::Op(b'.'));
        if matches!(keyword, b"import" | b"from" | b"cimport") && !after_dot {
            self.statement_line = match self.previous {
                Some(previous) if self.is_name(Some(&previous), b"lazy") => previous.line,
                _ => token.line,
            };
            self.statement.push(token);
        }
    }

    fn finish_statement(&mut self) {
        let statement = std::mem::take(&mut self.statement);
        if self.text(statement[0]) != b"from" {
            self.parse_import_statement(&statement[1..]);
        } else {
            self.parse_from_statement(&statement[1..]);
        }
        // Hand the buffer back so its capacity is reused.
        self.statement = statement;
        self.statement.clear();
    }

    /// `import a.b, c as d`
    fn parse_import_statement(&mut self, tokens: &[Token]) {
        let mut at = 0;
        while let Some((module, next)) = self.read_dotted_name(tokens, at) {
            self.imports.push(ImportRef {
                module,
                level: 0,
                names: Vec::new(),
                line: self.statement_line,
                kind: ImportKind::Import,
            });
            at = self.skip_alias(tokens, next);
            if tokens.get(at).map(|token| token.kind) != Some(TokenKind::Op(b',')) {
                break;
            }
            at += 1;
        }
    }

    /// `from ..p.q import (r as s, t,)`, `from . import *`, Cython's
    /// `from a cimport b`. Also sees `yield from x` and `raise E from x`,
    /// which lack the `import` and yield nothing.
    fn parse_from_statement(&mut self, tokens: &[Token]) {
        let mut at = 0;
        let mut level = 0u32;
        while tokens.get(at).map(|token| token.kind) == Some(TokenKind::Op(b'.')) {
            level = level.saturating_add(1);
            at += 1;
        }
        let module = match self.read_dotted_name(tokens, at) {
            Some((module, next)) => {
                at = next;
                module
            }
            None => String::new(),
        };
        if (module.is_empty() && level == 0) || !self.is_import_keyword(tokens.get(at)) {
            return;
        }
        at += 1;
        if tokens.get(at).map(|token| token.kind) == Some(TokenKind::Op(b'(')) {
            at += 1;
        }
        let names = self.read_imported_names(tokens, at);
        self.imports.push(ImportRef {
            module,
            level,
            names,
            line: self.statement_line,
            kind: ImportKind::From,
        });
    }

    fn read_imported_names(&self, tokens: &[Token], mut at: usize) -> Vec<String> {
        let mut names = Vec::new();
        loop {
            match tokens.get(at) {
                Some(token) if token.kind == TokenKind::Op(b'*') => {
                    names.push("*".to_owned());
                    at += 1;
                }
                Some(token) if token.kind == TokenKind::Name => {
                    names.push(self.decoder.decode(self.text(*token)));
                    at = self.skip_alias(tokens, at + 1);
                }
                _ => break,
            }
            if tokens.get(at).map(|token| token.kind) != Some(TokenKind::Op(b',')) {
                break;
            }
            at += 1;
        }
        names
    }

    fn is_import_keyword(&self, token: Option<&Token>) -> bool {
        self.is_name(token, b"import") || self.is_name(token, b"cimport")
    }

    /// Skips `as alias` at `at`, returning the index after it.
    fn skip_alias(&self, tokens: &[Token], at: usize) -> usize {
        if self.is_name(tokens.get(at), b"as") {
            at + 2
        } else {
            at
        }
    }

    /// Reads `name(.name)*` at `at`, joining the parts with dots (they may be
    /// separated by spaces or continuations in the source), and returns it
    /// with the index after it. `import`/`cimport` are never module parts.
    fn read_dotted_name(&self, tokens: &[Token], mut at: usize) -> Option<(String, usize)> {
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            let token = tokens.get(at)?;
            if token.kind != TokenKind::Name || self.is_import_keyword(Some(token)) {
                return None;
            }
            bytes.extend_from_slice(self.text(*token));
            at += 1;
            let dot_then_name = tokens.get(at).map(|token| token.kind) == Some(TokenKind::Op(b'.'))
                && tokens
                    .get(at + 1)
                    .is_some_and(|token| token.kind == TokenKind::Name);
            if !dot_then_name {
                return Some((self.decoder.decode(&bytes), at));
            }
            bytes.push(b'.');
            at += 1;
        }
    }

    fn feed_call(&mut self, token: Token) {
        match self.call_state {
            CallState::Idle => self.maybe_start_call(token),
            CallState::AwaitingParen { callee, line } => {
                self.call_state = if token.kind == TokenKind::Op(b'(') {
                    CallState::InArguments {
                        callee,
                        line,
                        depth: 1,
                    }
                } else {
                    CallState::Idle
                };
                // `import_module import_module(...)` is not Python, but a
                // name that fails to open a call may still start the next one.
                if self.call_state == CallState::Idle {
                    self.maybe_start_call(token);
                }
            }
            CallState::InArguments {
                callee,
                line,
                depth,
            } => self.feed_call_argument(token, callee, line, depth),
        }
    }

    fn maybe_start_call(&mut self, token: Token) {
        // A length test first: almost no name is 10 or 13 bytes of these.
        if token.kind != TokenKind::Name || !matches!(token.end - token.start, 10 | 13) {
            return;
        }
        let callee = match self.text(token) {
            b"import_module" => Callee::ImportModule,
            b"__import__" => Callee::DunderImport,
            _ => return,
        };
        if self.is_name(self.previous.as_ref(), b"def") {
            return;
        }
        self.call.clear();
        self.call_state = CallState::AwaitingParen {
            callee,
            line: token.line,
        };
    }

    fn feed_call_argument(&mut self, token: Token, callee: Callee, line: u32, depth: u32) {
        let depth = match token.kind {
            TokenKind::Op(b'(' | b'[' | b'{') => depth + 1,
            TokenKind::Op(b')' | b']' | b'}') => depth - 1,
            TokenKind::Newline => 0,
            _ => depth,
        };
        if depth == 0 {
            self.call_state = CallState::Idle;
            if token.kind != TokenKind::Newline {
                self.finish_call(callee, line);
            }
            return;
        }
        if self.call.len() >= MAX_CALL_TOKENS {
            self.call_state = CallState::Idle;
            return;
        }
        self.call.push(token);
        self.call_state = CallState::InArguments {
            callee,
            line,
            depth,
        };
    }

    fn finish_call(&mut self, callee: Callee, line: u32) {
        let call = std::mem::take(&mut self.call);
        let arguments = CallArguments::split(&call, self.src);
        if let Some(import) = self.dynamic_import(&arguments, callee, line) {
            self.imports.push(import);
        }
        self.call = call;
        self.call.clear();
    }

    fn dynamic_import(
        &self,
        arguments: &CallArguments<'_>,
        callee: Callee,
        line: u32,
    ) -> Option<ImportRef> {
        let name = self.string_argument(arguments.get(0, b"name")?)?;
        if name.is_empty() {
            return None;
        }
        let dots = name.iter().take_while(|&&byte| byte == b'.').count();
        let relative_name = &name[dots..];
        let dot_level = u32::try_from(dots).unwrap_or(u32::MAX);
        let (module, level, names) = match callee {
            Callee::ImportModule => {
                let package = arguments
                    .get(1, b"package")
                    .and_then(|argument| self.string_argument(argument));
                match (dots, package) {
                    (0, _) => (relative_name.to_vec(), 0, Vec::new()),
                    (_, Some(package)) => (
                        resolve_relative_name(relative_name, dots, &package),
                        0,
                        Vec::new(),
                    ),
                    // Without a literal package (`__package__`, `__name__`),
                    // relative to the calling file's package is the best guess.
                    (_, None) => (relative_name.to_vec(), dot_level, Vec::new()),
                }
            }
            Callee::DunderImport => {
                let level = arguments
                    .get(4, b"level")
                    .and_then(|argument| self.integer_argument(argument))
                    .unwrap_or(0);
                let names = arguments
                    .get(3, b"fromlist")
                    .map(|argument| self.string_list_argument(argument))
                    .unwrap_or_default();
                (relative_name.to_vec(), level, names)
            }
        };
        Some(ImportRef {
            module: self.decoder.decode(&module),
            level,
            names,
            line,
            kind: ImportKind::Dynamic,
        })
    }

    /// The value of an argument that is exactly one `str` literal.
    fn string_argument(&self, argument: &[Token]) -> Option<Vec<u8>> {
        match argument {
            [token] => match token.kind {
                TokenKind::String(flags) if !flags.bytes && !flags.template => self
                    .literal_value(*token, flags)
                    .map(|value| value.into_owned()),
                _ => None,
            },
            _ => None,
        }
    }

    fn integer_argument(&self, argument: &[Token]) -> Option<u32> {
        match argument {
            [token] if token.kind == TokenKind::Number => {
                std::str::from_utf8(self.text(*token)).ok()?.parse().ok()
            }
            _ => None,
        }
    }

    /// The strings of a literal `["a", "b"]` / `("a",)`; other elements are
    /// skipped.
    fn string_list_argument(&self, argument: &[Token]) -> Vec<String> {
        argument
            .iter()
            .filter_map(|token| match token.kind {
                TokenKind::String(flags) if !flags.bytes && !flags.template => {
                    self.literal_value(*token, flags)
                }
                _ => None,
            })
            .map(|value| self.decoder.decode(&value))
            .collect()
    }
}

/// `importlib.import_module("..b.c", "pkg.sub")` resolves to `pkg.b.c`:
/// each dot past the first climbs one package (as `importlib._resolve_name`).
pub(super) fn resolve_relative_name(relative_name: &[u8], dots: usize, package: &[u8]) -> Vec<u8> {
    let mut base = package;
    for _ in 1..dots {
        base = match base.iter().rposition(|&byte| byte == b'.') {
            Some(dot) => &base[..dot],
            // Climbing past the top raises at run time; report the name
            // alone rather than nothing.
            None => b"",
        };
    }
    let mut module = base.to_vec();
    if !module.is_empty() && !relative_name.is_empty() {
        module.push(b'.');
    }
    module.extend_from_slice(relative_name);
    module
}

/// A call's arguments split at top-level commas, as positional and keyword.
struct CallArguments<'t> {
    positional: Vec<&'t [Token]>,
    keyword: Vec<(&'t [u8], &'t [Token])>,
}

impl<'t> CallArguments<'t> {
    fn split(tokens: &'t [Token], src: &'t [u8]) -> Self {
        let mut arguments = CallArguments {
            positional: Vec::new(),
            keyword: Vec::new(),
        };
        let mut depth = 0u32;
        let mut start = 0;
        for (index, token) in tokens.iter().enumerate() {
            match token.kind {
                TokenKind::Op(b'(' | b'[' | b'{') => depth += 1,
                TokenKind::Op(b')' | b']' | b'}') => depth = depth.saturating_sub(1),
                TokenKind::Op(b',') if depth == 0 => {
                    arguments.push(&tokens[start..index], src);
                    start = index + 1;
                }
                _ => {}
            }
        }
        arguments.push(&tokens[start..], src);
        arguments
    }

    fn push(&mut self, argument: &'t [Token], src: &'t [u8]) {
        match argument {
            [] => {}
            [name, equals, value @ ..]
                if name.kind == TokenKind::Name && equals.kind == TokenKind::Op(b'=') =>
            {
                self.keyword.push((&src[name.start..name.end], value));
            }
            _ => self.positional.push(argument),
        }
    }

    /// The argument at `position` or passed as `keyword`.
    fn get(&self, position: usize, keyword: &[u8]) -> Option<&'t [Token]> {
        self.positional.get(position).copied().or_else(|| {
            self.keyword
                .iter()
                .find(|(name, _)| *name == keyword)
                .map(|(_, value)| *value)
        })
    }
}
