//! Delimiting the functions of a Python source file, for function-level keys:
//! a test can be keyed on the module-level code of its files (the
//! "skeleton": the source with every outermost function's body left out) plus
//! the bodies of the functions it executed, so that editing one function's
//! body invalidates only the tests that ran it.
//!
//! Parsing is tree-sitter's, with its Python grammar: maintained, tolerant of
//! errors (it always returns a tree and marks what it could not parse, which
//! is how a syntax error is told here) and covering every Python version's
//! syntax. The walk visits the statements outside functions (and the
//! headers of compound statements), never a function's inside nor a simple
//! statement's expressions, and allocates nothing per node: only each
//! function's name.
//!
//! The cost is the parse. Measured on this project's 2-core machine with an
//! optimised build: a generated 5,000-line file (149 KB, 438 functions) takes
//! 28 ms to index, of which the walk and the hashing take about 1 ms; large
//! real files run at 8 to 10 MB/s (`_pydecimal.py`, 6,425 lines: 22 ms). A
//! Python 3.11 installation's `lib/python3.11` (standard library and
//! installed packages: 11,659 files, 128 MB) takes 16 s on one thread,
//! against 0.5 s for our import scanner and 0.04 s for blake3 on the same
//! files: about 30 times the import scan. Hence the memo by content digest in
//! the state cache (`files::state`): a file is indexed once per content. 3 of
//! those files are refused: two that are invalid on purpose, and
//! `test/test_compile.py`, whose valid but odd continuation lines tree-sitter
//! does not parse (such a file falls back to its whole digest). On the 11,641
//! that CPython compiles, `function_at(co_firstlineno)` of 248,812 of the
//! 249,182 code objects is the outermost `def` CPython's nesting gives; the
//! other 370 are the safe over-attributions listed below, none is wrong.
//!
//! What a function is here:
//! - An outermost function is a `def` or `async def` (decorated or not) that
//!   is not inside another function. Classes and compound statements between
//!   it and the module are transparent: `class A: def f` is `A.f`, `if X: def
//!   g` is `g`. Everything inside a function (nested functions and classes,
//!   lambdas, comprehensions) belongs to its outermost function's body.
//! - Its span runs from its first decorator (or its `def`/`async def` line)
//!   to the last line of its body, which is what CPython's `co_firstlineno`
//!   gives for the function and, for every code object inside it, a line
//!   within the span. So `function_at(code.co_firstlineno)` names the
//!   outermost function a code object belongs to, and `None` means
//!   module-level code (the module body, class bodies, module-level lambdas
//!   and comprehensions).
//! - Its body is the `def`'s block. The decorators, the parameter list (with
//!   defaults and annotations) and the return annotation are not in the body:
//!   they run when the module is imported, so they are in the skeleton. The
//!   docstring is in both: the skeleton keeps it (doctests and `__doc__` read
//!   it) and the body digest covers the whole block, docstring included,
//!   which keeps the body one contiguous range of bytes.
//!
//! Limitations, each on the safe side unless said otherwise:
//! - The skeleton does not depend on where the bodies' lines fall: editing a
//!   body shifts the lines of what follows without changing the skeleton. Code
//!   that reads its own line numbers (`inspect`, tracebacks compared as text,
//!   warnings pinned to a line) is not covered by function-level keys: the
//!   one limitation here that is not on the safe side.
//! - Lambdas and comprehensions in a decorator or a default value run at
//!   import, yet their `co_firstlineno` falls in the function's span: they map
//!   to the function, whose body a test then depends on needlessly.
//! - The module's own code object has `co_firstlineno` 1, the line of the
//!   first function when a file starts with one: a caller should take
//!   `<module>` as module-level without asking `function_at`.
//! - A file tree-sitter cannot parse without error is refused, valid Python
//!   or not (the caller then keys on the whole file). So is a file with a
//!   carriage return alone as a line break: Python counts it as one and
//!   tree-sitter does not, so the line numbers would disagree.
//! - A file that is not UTF-8 is parsed as long as its non-UTF-8 bytes are in
//!   strings and comments (a latin-1 file with accented text); a non-UTF-8
//!   identifier is a syntax error to tree-sitter, so that file is refused.
//! - Qualified names are the source's bytes, not NFKC-normalised as Python
//!   does with non-ASCII identifiers: they are consistent within an index,
//!   which is what `function_at` and `body_digest` need, but may then differ
//!   from the running `__qualname__`.

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser, Tree};

use crate::files::Digest;

pub mod recent;

/// How module-level code is named where functions are (`path::<module>`):
/// the name CPython gives a module's code object.
pub const MODULE_LEVEL: &str = "<module>";
/// The pseudo-function that calls whatever runs outside every test,
/// fixture and collector (a conftest's `pytest_configure`, say): every test
/// depends on what it was seen to call.
pub const SESSION_LEVEL: &str = "<session>";

/// The blake3 derive-key context of the skeleton digest.
const SKELETON_CONTEXT: &str = "dryci 2026 module skeleton";
/// The blake3 derive-key context that combines the bodies of several
/// definitions of one name.
const BODIES_CONTEXT: &str = "dryci 2026 function bodies";
/// What stands for a body in the skeleton. Python source cannot contain a
/// NUL byte, so no source text can look like it.
const BODY_PLACEHOLDER: &[u8] = b"\0body\0";

/// The functions of one Python source file and the digest of everything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionIndex {
    /// blake3 digest of the module-level code: the source with the body of
    /// every outermost function (after its docstring, which stays) replaced
    /// by a fixed placeholder.
    pub skeleton: Digest,
    /// The outermost functions, in source order (so sorted by first line,
    /// and their spans do not overlap).
    pub functions: Vec<FunctionSpan>,
}

/// One outermost function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpan {
    /// `f`, `Class.method`, `Outer.Inner.method`: Python's `__qualname__`
    /// (outermost functions have no `<locals>` part).
    pub qualname: String,
    /// 1-based line of the first decorator, or of `def`/`async def` when
    /// undecorated: CPython's `co_firstlineno`.
    pub first_line: u32,
    /// 1-based last line of the body.
    pub last_line: u32,
    /// blake3 of the body's source bytes: the whole block, docstring, nested
    /// functions, lambdas and comprehensions included.
    pub body: Digest,
}

/// Why a file's functions could not be delimited; the caller then keys on
/// the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FunctionsError {
    #[error("line {line}: syntax error, the functions cannot be delimited")]
    Syntax { line: u32 },
    #[error(
        "line {line}: a carriage return alone ends the line; Python counts it as a line break and \
         tree-sitter does not, so their line numbers would disagree"
    )]
    LoneCarriageReturn { line: u32 },
    /// The parser could not be set up, gave no tree or gave a range outside
    /// the source: a fault of this build, not of the file.
    #[error("the Python parser failed: {0}")]
    Parser(String),
}

impl FunctionsError {
    /// Whether the same source would always give this error (so it may be
    /// remembered by content digest).
    pub fn is_about_the_source(&self) -> bool {
        !matches!(self, FunctionsError::Parser(_))
    }
}

impl FunctionIndex {
    /// Parses `source` once and delimits its outermost functions. `Err` when
    /// they cannot be delimited: a syntax error anywhere (a tree-sitter
    /// ERROR or MISSING node), or a lone carriage return.
    pub fn parse(source: &[u8]) -> Result<FunctionIndex, FunctionsError> {
        if let Some(line) = lone_carriage_return(source) {
            return Err(FunctionsError::LoneCarriageReturn { line });
        }
        let tree = parse_tree(source)?;
        let root = tree.root_node();
        if root.has_error() {
            return Err(FunctionsError::Syntax {
                line: first_error_line(root),
            });
        }
        index_tree(root, source)
    }

    /// The qualified name of the outermost function whose span holds `line`
    /// (a code object's `co_firstlineno`); `None` for module-level code. Not
    /// for the `<module>` code object, whose line 1 may be a function's.
    pub fn function_at(&self, line: u32) -> Option<&str> {
        let after = self.functions.partition_point(|f| f.first_line <= line);
        let candidate = self.functions.get(after.checked_sub(1)?)?;
        (line <= candidate.last_line).then_some(candidate.qualname.as_str())
    }

    /// The digest that stands for every definition named `qualname`: its
    /// body's digest when it is defined once; when it is defined several
    /// times (redefined, defined in `if`/`else` or `try`/`except` branches, a
    /// property's getter and setter), one digest of all their bodies in
    /// source order. `None` when no function has that name.
    pub fn body_digest(&self, qualname: &str) -> Option<Digest> {
        let mut named = self.functions.iter().filter(|f| f.qualname == qualname);
        let first = named.next()?;
        let Some(second) = named.next() else {
            return Some(first.body);
        };
        let mut hasher = blake3::Hasher::new_derive_key(BODIES_CONTEXT);
        for span in [first, second].into_iter().chain(named) {
            hasher.update(&span.body.0);
        }
        Some(Digest(*hasher.finalize().as_bytes()))
    }
}

/// Result of indexing a file, as the state cache remembers it.
pub type FunctionsOutcome = Result<std::sync::Arc<FunctionIndex>, FunctionsError>;

/// A parser per call: setting one up costs about 2 µs, a thousandth of
/// parsing a small file, so keeping one per thread is not worth it.
fn parse_tree(source: &[u8]) -> Result<Tree, FunctionsError> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .map_err(|err| FunctionsError::Parser(err.to_string()))?;
    parser
        .parse(source, None)
        .ok_or_else(|| FunctionsError::Parser("no tree was returned".into()))
}

/// The 1-based line of the first carriage return not followed by a line feed.
fn lone_carriage_return(source: &[u8]) -> Option<u32> {
    let position = source
        .iter()
        .enumerate()
        .position(|(i, &b)| b == b'\r' && source.get(i + 1) != Some(&b'\n'))?;
    let breaks = source[..position].iter().filter(|&&b| b == b'\n').count();
    Some(line_number(breaks))
}

/// The 1-based line of the first innermost ERROR or MISSING node under
/// `node`, which has one (tree-sitter may wrap many good statements in one
/// ERROR; the line worth naming is where the trouble is).
fn first_error_line(node: Node) -> u32 {
    let mut node = node;
    'down: loop {
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if child.has_error() || child.is_missing() {
                node = child;
                continue 'down;
            }
        }
        // An ERROR node may start with the whitespace before its first token.
        let first_token = node.child(0).unwrap_or(node);
        return line_number(first_token.start_position().row);
    }
}

fn line_number(row: usize) -> u32 {
    u32::try_from(row).map_or(u32::MAX, |row| row.saturating_add(1))
}

/// The last line of `node`, which ends after its last token (a block ends
/// there, not on the next line's column 0; kept safe if it ever did).
fn last_line(node: Node) -> u32 {
    let (start, end) = (node.start_position(), node.end_position());
    if end.column == 0 && end.row > start.row {
        line_number(end.row - 1)
    } else {
        line_number(end.row)
    }
}

/// Walks the statements of an error-free tree, outside functions, and hashes
/// the skeleton on the way.
fn index_tree(root: Node, source: &[u8]) -> Result<FunctionIndex, FunctionsError> {
    let mut index = Indexer {
        source,
        skeleton: blake3::Hasher::new_derive_key(SKELETON_CONTEXT),
        hashed_to: 0,
        functions: Vec::new(),
        classes: Vec::new(),
    };
    let mut cursor = root.walk();
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        let descend = match node.kind() {
            "function_definition" => {
                index.function(node, node)?;
                false
            }
            "decorated_definition" => match node.child_by_field_name("definition") {
                Some(definition) if definition.kind() == "function_definition" => {
                    index.function(node, definition)?;
                    false
                }
                // A decorated class: its decorators are skipped below.
                _ => true,
            },
            "class_definition" => {
                if let Some(name) = node.child_by_field_name("name") {
                    index
                        .classes
                        .push((depth, slice(source, name.byte_range())?));
                }
                true
            }
            // Nodes that hold no statement, so no function. Anything else
            // (compound statements, their clauses, blocks, a kind a later
            // grammar adds) is walked; a function missed would only stay in
            // the skeleton, where every test sees it.
            "expression_statement"
            | "import_statement"
            | "import_from_statement"
            | "future_import_statement"
            | "assert_statement"
            | "return_statement"
            | "delete_statement"
            | "raise_statement"
            | "pass_statement"
            | "break_statement"
            | "continue_statement"
            | "global_statement"
            | "nonlocal_statement"
            | "type_alias_statement"
            | "print_statement"
            | "exec_statement"
            | "decorator"
            | "comment"
            | "identifier"
            | "argument_list" => false,
            _ => true,
        };
        if descend && cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        // Next sibling, or up until there is one; classes left are popped.
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return index.finish();
            }
            depth -= 1;
        }
        while index
            .classes
            .last()
            .is_some_and(|&(class_depth, _)| class_depth >= depth)
        {
            index.classes.pop();
        }
    }
}

/// What the walk has gathered so far.
struct Indexer<'s> {
    source: &'s [u8],
    skeleton: blake3::Hasher,
    /// Source bytes before this offset are in `skeleton` already.
    hashed_to: usize,
    functions: Vec<FunctionSpan>,
    /// The enclosing classes: (depth of the class node, its name's bytes).
    classes: Vec<(usize, &'s [u8])>,
}

impl Indexer<'_> {
    /// Records the outermost function `definition`, whose span starts with
    /// `outer` (itself, or the decorated definition around it).
    fn function(&mut self, outer: Node, definition: Node) -> Result<(), FunctionsError> {
        let Some(body) = definition.child_by_field_name("body") else {
            // Not in an error-free tree; without a body the def stays whole in the skeleton.
            return Ok(());
        };
        let name = match definition.child_by_field_name("name") {
            Some(name) => slice(self.source, name.byte_range())?,
            None => b"",
        };
        let mut qualname = String::new();
        for part in self.classes.iter().map(|&(_, class)| class).chain([name]) {
            if !qualname.is_empty() {
                qualname.push('.');
            }
            qualname.push_str(&String::from_utf8_lossy(part));
        }
        // The docstring stays in the skeleton; the rest of the body leaves it.
        let cut = docstring(body).map_or(body.start_byte(), |doc| doc.end_byte());
        self.skeleton
            .update(slice(self.source, self.hashed_to..cut)?);
        self.skeleton.update(BODY_PLACEHOLDER);
        self.hashed_to = body.end_byte();
        self.functions.push(FunctionSpan {
            qualname,
            first_line: line_number(outer.start_position().row),
            last_line: last_line(body),
            body: Digest::of(slice(self.source, body.byte_range())?),
        });
        Ok(())
    }

    fn finish(mut self) -> Result<FunctionIndex, FunctionsError> {
        self.skeleton
            .update(slice(self.source, self.hashed_to..self.source.len())?);
        Ok(FunctionIndex {
            skeleton: Digest(*self.skeleton.finalize().as_bytes()),
            functions: self.functions,
        })
    }
}

/// `source[range]`. Tree-sitter's ranges are within the source and in
/// order; were one not, the file is refused rather than a panic or a
/// skeleton with a piece missing.
fn slice(source: &[u8], range: std::ops::Range<usize>) -> Result<&[u8], FunctionsError> {
    source.get(range.clone()).ok_or_else(|| {
        FunctionsError::Parser(format!(
            "byte range {range:?} outside the {}-byte source",
            source.len()
        ))
    })
}

/// The docstring statement of a body: its first statement, when that is a
/// lone string (or implicitly concatenated strings).
fn docstring(body: Node) -> Option<Node> {
    let mut cursor = body.walk();
    let first = body
        .named_children(&mut cursor)
        .find(|child| child.kind() != "comment")?;
    if first.kind() != "expression_statement" || first.named_child_count() != 1 {
        return None;
    }
    let value = first.named_child(0)?;
    matches!(value.kind(), "string" | "concatenated_string").then_some(first)
}

#[cfg(test)]
mod tests;
