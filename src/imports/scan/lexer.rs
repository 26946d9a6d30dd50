//! A tokenizer of Python source bytes, as much of Python's as import scanning
//! needs: names, numbers, every string literal form (including 3.12 f-strings
//! whose replacement fields hold nested strings of the same quote), brackets,
//! logical newlines, comments and backslash continuations.
//!
//! It works on bytes and never allocates: tokens are spans into the source,
//! handed one at a time to a [`TokenSink`]. Bytes >= 0x80 count as identifier
//! characters, so a latin-1 file tokenizes the same as its UTF-8 twin. It is
//! lenient where leniency cannot change what is code and what is a string
//! (stray operators, `$`, mismatched bracket kinds), and strict where it can
//! (unterminated strings, unclosed brackets): those return a [`LexError`] so
//! the caller can fall back to a conservative scan.

/// One token: its kind, the span it covers and the 1-based line it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: TokenKind,
    /// For strings, the content between the quotes; otherwise the token itself.
    pub start: usize,
    pub end: usize,
    pub line: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind {
    Name,
    Number,
    /// A complete literal, including an f-string without replacement fields.
    String(StringFlags),
    /// An f-string (or t-string) with replacement fields starts; the tokens of
    /// its expressions follow, then `FormattedEnd`. Neither is a literal.
    FormattedStart,
    FormattedEnd,
    /// One of `( ) [ ] { } , . ; : = *` standing alone.
    Op(u8),
    /// Any other operator or stray byte (`==`, `:=`, `**`, `->`, `$` ...).
    Other,
    /// The end of a logical line (never emitted inside brackets).
    Newline,
}

/// The prefix letters of a string literal that matter to the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct StringFlags {
    pub raw: bool,
    pub bytes: bool,
    /// `f"..."`: its value is a `str` when it has no replacement fields.
    pub formatted: bool,
    /// `t"..."` (3.14 template strings): never a `str`, whatever it holds.
    pub template: bool,
}

/// Why the source cannot be tokenized, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LexError {
    pub line: u32,
    pub reason: &'static str,
}

pub(super) trait TokenSink {
    fn token(&mut self, token: Token);
}

/// CPython refuses f-strings nested deeper than this (MAXFSTRINGLEVEL); the
/// limit also bounds our recursion on hostile input.
const MAX_FSTRING_NESTING: u32 = 150;

/// Tokenizes `source`, feeding every token to `sink`, and ends with a
/// `Newline` token at the end of input.
pub(super) fn tokenize(source: &[u8], sink: &mut impl TokenSink) -> Result<(), LexError> {
    let mut lexer = Lexer {
        src: source,
        pos: 0,
        line: 1,
        depth: 0,
        outermost_open_line: 0,
        fstring_nesting: 0,
        sink,
    };
    lexer.skip_byte_order_mark();
    lexer.lex_module()
}

const fn identifier_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80;
        byte += 1;
    }
    table
}

static IDENTIFIER_BYTE: [bool; 256] = identifier_table();

/// Letters, digits, `_` and every byte >= 0x80 (non-ASCII identifiers, in
/// whatever encoding the file uses).
#[inline]
pub(super) fn is_identifier_byte(byte: u8) -> bool {
    IDENTIFIER_BYTE[byte as usize]
}

#[inline]
pub(super) fn is_identifier_start(byte: u8) -> bool {
    is_identifier_byte(byte) && !byte.is_ascii_digit()
}

/// What ended the expression part of an f-string replacement field.
enum FieldStop {
    Close,
    FormatSpec,
    Conversion,
}

/// The quote that delimits the string being lexed.
#[derive(Clone, Copy)]
struct Quote {
    byte: u8,
    triple: bool,
}

struct Lexer<'s, S> {
    src: &'s [u8],
    pos: usize,
    line: u32,
    /// Bracket depth of top-level code; newlines inside brackets are not logical.
    depth: u32,
    outermost_open_line: u32,
    fstring_nesting: u32,
    sink: &'s mut S,
}

impl<S: TokenSink> Lexer<'_, S> {
    fn skip_byte_order_mark(&mut self) {
        if self.src.starts_with(b"\xEF\xBB\xBF") {
            self.pos = 3;
        }
    }

    fn peek(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos + offset).copied()
    }

    fn emit(&mut self, kind: TokenKind, start: usize, end: usize, line: u32) {
        self.sink.token(Token {
            kind,
            start,
            end,
            line,
        });
    }

    fn emit_single(&mut self, kind: TokenKind) {
        let start = self.pos;
        self.pos += 1;
        self.emit(kind, start, self.pos, self.line);
    }

    /// Consumes `\n`, `\r\n` or a lone `\r` (all line ends to Python).
    fn consume_line_end(&mut self) {
        if self.peek(0) == Some(b'\r') && self.peek(1) == Some(b'\n') {
            self.pos += 2;
        } else {
            self.pos += 1;
        }
        self.line += 1;
    }

    fn lex_module(&mut self) -> Result<(), LexError> {
        while let Some(byte) = self.peek(0) {
            // Names and indentation make up most tokens: test for them with
            // plain branches before the jump table of the full match.
            if is_identifier_start(byte) {
                self.lex_name_or_prefixed_string()?;
                continue;
            }
            if byte == b' ' {
                self.skip_blanks();
                continue;
            }
            match byte {
                b'\n' | b'\r' => {
                    let (start, line) = (self.pos, self.line);
                    self.consume_line_end();
                    if self.depth == 0 {
                        self.emit(TokenKind::Newline, start, start, line);
                    }
                }
                b'(' | b'[' | b'{' => {
                    if self.depth == 0 {
                        self.outermost_open_line = self.line;
                    }
                    self.depth += 1;
                    self.emit_single(TokenKind::Op(byte));
                }
                b')' | b']' | b'}' => {
                    if self.depth == 0 {
                        return Err(LexError {
                            line: self.line,
                            reason: "unmatched closing bracket",
                        });
                    }
                    self.depth -= 1;
                    self.emit_single(TokenKind::Op(byte));
                }
                _ => self.lex_common(byte)?,
            }
        }
        if self.depth > 0 {
            return Err(LexError {
                line: self.outermost_open_line,
                reason: "bracket opened here is never closed",
            });
        }
        let end = self.src.len();
        self.emit(TokenKind::Newline, end, end, self.line);
        Ok(())
    }

    /// Everything that lexes the same at top level and inside an f-string's
    /// replacement field: whitespace, comments, continuations, names, strings,
    /// numbers and operators other than brackets.
    fn lex_common(&mut self, byte: u8) -> Result<(), LexError> {
        match byte {
            b' ' | b'\t' | b'\x0C' | b'\0' => self.skip_blanks(),
            b'#' => self.skip_comment(),
            b'\\' => self.lex_backslash(),
            b'\'' | b'"' => self.lex_string(self.pos, StringFlags::default())?,
            b'.' => {
                if self.peek(1).is_some_and(|next| next.is_ascii_digit()) {
                    self.lex_number();
                } else {
                    self.emit_single(TokenKind::Op(b'.'));
                }
            }
            b',' | b';' => self.emit_single(TokenKind::Op(byte)),
            // `**`, `*=`, `==`, `:=` are not the single-character tokens the
            // import grammar uses (`import *`, `package=`, `if x: import y`).
            b'*' | b'=' | b':' => {
                let second = self.peek(1);
                let compound = match byte {
                    b'*' => matches!(second, Some(b'*' | b'=')),
                    _ => second == Some(b'='),
                };
                if compound {
                    let start = self.pos;
                    self.pos += 2;
                    self.emit(TokenKind::Other, start, self.pos, self.line);
                } else {
                    self.emit_single(TokenKind::Op(byte));
                }
            }
            _ if byte.is_ascii_digit() => self.lex_number(),
            _ if is_identifier_start(byte) => self.lex_name_or_prefixed_string()?,
            _ => self.emit_single(TokenKind::Other),
        }
        Ok(())
    }

    /// Indentation is a large share of Python source: skip a run at once.
    fn skip_blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\x0C' | b'\0') = self.peek(0) {
            self.pos += 1;
        }
    }

    fn skip_comment(&mut self) {
        self.pos += self.src[self.pos..]
            .iter()
            .position(|&byte| byte == b'\n' || byte == b'\r')
            .unwrap_or(self.src.len() - self.pos);
    }

    /// A backslash before a line end joins the lines; anywhere else it is a
    /// stray byte Python would reject, which cannot hide an import.
    fn lex_backslash(&mut self) {
        match self.peek(1) {
            Some(b'\n' | b'\r') => {
                self.pos += 1;
                self.consume_line_end();
            }
            _ => self.emit_single(TokenKind::Other),
        }
    }

    fn lex_number(&mut self) {
        let start = self.pos;
        while let Some(byte) = self.peek(0) {
            let exponent_sign = matches!(byte, b'+' | b'-')
                && self.pos > start
                && matches!(self.src[self.pos - 1], b'e' | b'E')
                && self.peek(1).is_some_and(|next| next.is_ascii_digit());
            if is_identifier_byte(byte) || byte == b'.' || exponent_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.emit(TokenKind::Number, start, self.pos, self.line);
    }

    fn lex_name_or_prefixed_string(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        self.pos += self.src[self.pos..]
            .iter()
            .position(|&byte| !is_identifier_byte(byte))
            .unwrap_or(self.src.len() - self.pos);
        if matches!(self.peek(0), Some(b'\'' | b'"')) {
            if let Some(flags) = string_prefix_flags(&self.src[start..self.pos]) {
                return self.lex_string(start, flags);
            }
        }
        self.emit(TokenKind::Name, start, self.pos, self.line);
        Ok(())
    }

    /// Lexes a string literal whose opening quote is at `self.pos`.
    fn lex_string(&mut self, token_start: usize, flags: StringFlags) -> Result<(), LexError> {
        let start_line = self.line;
        let quote_byte = self.src[self.pos];
        let triple = self.peek(1) == Some(quote_byte) && self.peek(2) == Some(quote_byte);
        let quote = Quote {
            byte: quote_byte,
            triple,
        };
        self.pos += if triple { 3 } else { 1 };
        let content_start = self.pos;
        let interpolated = flags.formatted || flags.template;
        let mut saw_field = false;
        loop {
            // Most of a string is plain text: skip to the next byte that matters.
            self.pos += self.src[self.pos..]
                .iter()
                .position(|&byte| {
                    byte == quote.byte
                        || matches!(byte, b'\\' | b'\n' | b'\r')
                        || (interpolated && byte == b'{')
                })
                .unwrap_or(self.src.len() - self.pos);
            let Some(byte) = self.peek(0) else {
                return Err(unterminated_string(start_line));
            };
            match byte {
                b'\\' => self.skip_escape(interpolated, flags.raw),
                b'\n' | b'\r' => {
                    if !quote.triple {
                        return Err(unterminated_string(start_line));
                    }
                    self.consume_line_end();
                }
                _ if byte == quote.byte => {
                    let closes = !quote.triple
                        || (self.peek(1) == Some(quote.byte) && self.peek(2) == Some(quote.byte));
                    if closes {
                        let content_end = self.pos;
                        self.pos += if quote.triple { 3 } else { 1 };
                        return self.finish_string(
                            flags,
                            saw_field,
                            token_start,
                            content_start,
                            content_end,
                            start_line,
                        );
                    }
                    self.pos += 1;
                }
                b'{' if interpolated => {
                    if self.peek(1) == Some(b'{') {
                        self.pos += 2;
                    } else {
                        if !saw_field {
                            saw_field = true;
                            self.emit(TokenKind::FormattedStart, token_start, self.pos, start_line);
                        }
                        self.pos += 1;
                        self.lex_replacement_field(quote)?;
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    fn finish_string(
        &mut self,
        flags: StringFlags,
        saw_field: bool,
        token_start: usize,
        content_start: usize,
        content_end: usize,
        start_line: u32,
    ) -> Result<(), LexError> {
        if saw_field {
            self.emit(TokenKind::FormattedEnd, token_start, self.pos, start_line);
        } else {
            self.emit(
                TokenKind::String(flags),
                content_start,
                content_end,
                start_line,
            );
        }
        Ok(())
    }

    /// Skips a backslash and what it escapes, so an escaped quote does not
    /// end the string. In an f-string a backslash never swallows the `{` of
    /// a field (`rf"\{x}"`), and in a non-raw one `\N{NAME}` is one escape.
    fn skip_escape(&mut self, interpolated: bool, raw: bool) {
        self.pos += 1;
        match self.peek(0) {
            None => {}
            Some(b'\n' | b'\r') => self.consume_line_end(),
            Some(b'{') if interpolated => {}
            Some(b'N') if interpolated && !raw && self.peek(1) == Some(b'{') => {
                while let Some(byte) = self.peek(0) {
                    if byte == b'}' || byte == b'\n' || byte == b'\r' {
                        break;
                    }
                    self.pos += 1;
                }
                if self.peek(0) == Some(b'}') {
                    self.pos += 1;
                }
            }
            Some(_) => self.pos += 1,
        }
    }

    /// Lexes one replacement field of an f-string; `self.pos` is just past `{`.
    fn lex_replacement_field(&mut self, quote: Quote) -> Result<(), LexError> {
        if self.fstring_nesting >= MAX_FSTRING_NESTING {
            return Err(LexError {
                line: self.line,
                reason: "f-strings nested too deeply",
            });
        }
        self.fstring_nesting += 1;
        let result = self.lex_field_body(quote);
        self.fstring_nesting -= 1;
        result
    }

    fn lex_field_body(&mut self, quote: Quote) -> Result<(), LexError> {
        match self.lex_field_expression()? {
            FieldStop::Close => Ok(()),
            FieldStop::FormatSpec => self.lex_format_spec(quote),
            FieldStop::Conversion => {
                while self.peek(0).is_some_and(is_identifier_byte) {
                    self.pos += 1;
                }
                match self.peek(0) {
                    Some(b':') => {
                        self.pos += 1;
                        self.lex_format_spec(quote)
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        Ok(())
                    }
                    _ => Err(LexError {
                        line: self.line,
                        reason: "malformed f-string conversion",
                    }),
                }
            }
        }
    }

    /// Lexes the expression of a replacement field as code (PEP 701: it may
    /// hold strings with the enclosing quote) up to its `}`, `:` or `!`.
    fn lex_field_expression(&mut self) -> Result<FieldStop, LexError> {
        let mut depth = 0u32;
        loop {
            let Some(byte) = self.peek(0) else {
                return Err(LexError {
                    line: self.line,
                    reason: "unterminated f-string replacement field",
                });
            };
            match byte {
                // Newlines inside a field are never logical line ends.
                b'\n' | b'\r' => self.consume_line_end(),
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    self.emit_single(TokenKind::Op(byte));
                }
                b'}' if depth == 0 => {
                    self.pos += 1;
                    return Ok(FieldStop::Close);
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    self.emit_single(TokenKind::Op(byte));
                }
                b':' if depth == 0 => {
                    self.pos += 1;
                    return Ok(FieldStop::FormatSpec);
                }
                b'!' if depth == 0 && self.peek(1) != Some(b'=') => {
                    self.pos += 1;
                    return Ok(FieldStop::Conversion);
                }
                _ => self.lex_common(byte)?,
            }
        }
    }

    /// Lexes a format spec (literal text with nested fields) through the
    /// field's closing `}`.
    fn lex_format_spec(&mut self, quote: Quote) -> Result<(), LexError> {
        loop {
            let Some(byte) = self.peek(0) else {
                return Err(unterminated_string(self.line));
            };
            match byte {
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'{' => {
                    self.pos += 1;
                    self.lex_replacement_field(quote)?;
                }
                b'\\' => self.skip_escape(true, true),
                b'\n' | b'\r' => {
                    if !quote.triple {
                        return Err(unterminated_string(self.line));
                    }
                    self.consume_line_end();
                }
                _ if byte == quote.byte => {
                    return Err(LexError {
                        line: self.line,
                        reason: "f-string ends inside a format spec",
                    });
                }
                _ => self.pos += 1,
            }
        }
    }
}

fn unterminated_string(line: u32) -> LexError {
    LexError {
        line,
        reason: "unterminated string literal",
    }
}

/// The flags of a valid string prefix (`r`, `b`, `rb`, `f`, `fr`, `t`, `u`
/// ... in any case and order), or `None` if `name` is an ordinary name.
fn string_prefix_flags(name: &[u8]) -> Option<StringFlags> {
    if name.len() > 2 {
        return None;
    }
    let mut flags = StringFlags::default();
    let mut unicode = false;
    for &letter in name {
        let seen = match letter.to_ascii_lowercase() {
            b'r' => std::mem::replace(&mut flags.raw, true),
            b'b' => std::mem::replace(&mut flags.bytes, true),
            b'f' => std::mem::replace(&mut flags.formatted, true),
            b't' => std::mem::replace(&mut flags.template, true),
            b'u' => std::mem::replace(&mut unicode, true),
            _ => return None,
        };
        if seen {
            return None;
        }
    }
    let kinds = [flags.bytes, flags.formatted, flags.template, unicode];
    let kind_count = kinds.iter().filter(|&&kind| kind).count();
    // `u` combines with nothing; b, f and t exclude each other.
    if kind_count > 1 || (unicode && flags.raw) {
        return None;
    }
    Some(flags)
}
