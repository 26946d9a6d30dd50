use super::*;

/// Every kind of code object the brief names, at known lines. The table
/// `CODE_OBJECTS` below was printed by CPython 3.11 from this very text.
const SAMPLE: &str = r#""""Module docstring."""
import functools

CONST = [x * 2 for x in range(3)]
square = lambda v: v * v


def plain(a, b=1):
    return a + b


@functools.lru_cache(
    maxsize=None,
)
def decorated(n):
    return n


class A:
    attr = {k: k for k in "ab"}
    size = len(attr)

    def method(self):
        return 1

    @property
    def x(self):
        return self._x

    @x.setter
    def x(self, value):
        self._x = value

    class B:
        def m(self):
            return [j for j in range(2)]


def outer():
    def inner():
        return 3
    f = lambda: 4
    squares = [i * i for i in range(3)]
    class Local:
        def lm(self):
            return 5
    return inner, f, squares, Local


async def coro():
    return 6


def gen():
    yield 7


def twice():
    return 8


def twice():
    return 9


if CONST:
    def branch():
        return 10
else:
    def branch():
        return 11


try:
    import json
    def loads(s):
        return json.loads(s)
except ImportError:
    def loads(s):
        raise


def one(): return 1


def only_doc():
    """Only a docstring."""


@functools.wraps(plain)
@functools.lru_cache
async def stacked(
    a,
    b: int = 2,
) -> int:
    return {m: m for m in (a, b)}
"#;

/// `(co_firstlineno, co_qualname, outermost function)` of every code object
/// CPython 3.11 compiles from `SAMPLE`, the outermost function being the
/// first `def` on the way down from the module (lambdas and comprehensions
/// are not `def`s).
const CODE_OBJECTS: &[(u32, &str, Option<&str>)] = &[
    (1, "<module>", None),
    (4, "<listcomp>", None),
    (5, "<lambda>", None),
    (8, "plain", Some("plain")),
    (12, "decorated", Some("decorated")),
    (19, "A", None),
    (20, "A.<dictcomp>", None),
    (23, "A.method", Some("A.method")),
    (26, "A.x", Some("A.x")),
    (30, "A.x", Some("A.x")),
    (34, "A.B", None),
    (35, "A.B.m", Some("A.B.m")),
    (36, "A.B.m.<locals>.<listcomp>", Some("A.B.m")),
    (39, "outer", Some("outer")),
    (40, "outer.<locals>.inner", Some("outer")),
    (42, "outer.<locals>.<lambda>", Some("outer")),
    (43, "outer.<locals>.<listcomp>", Some("outer")),
    (44, "outer.<locals>.Local", Some("outer")),
    (45, "outer.<locals>.Local.lm", Some("outer")),
    (50, "coro", Some("coro")),
    (54, "gen", Some("gen")),
    (58, "twice", Some("twice")),
    (62, "twice", Some("twice")),
    (67, "branch", Some("branch")),
    (70, "branch", Some("branch")),
    (76, "loads", Some("loads")),
    (79, "loads", Some("loads")),
    (83, "one", Some("one")),
    (86, "only_doc", Some("only_doc")),
    (90, "stacked", Some("stacked")),
    (96, "stacked.<locals>.<dictcomp>", Some("stacked")),
];

fn index(source: &str) -> FunctionIndex {
    match FunctionIndex::parse(source.as_bytes()) {
        Ok(index) => index,
        Err(err) => panic!("{err}\n{source}"),
    }
}

#[test]
fn co_firstlineno_of_every_code_object_maps_to_its_outermost_function() {
    let index = index(SAMPLE);
    for &(line, code, expected) in CODE_OBJECTS {
        assert_eq!(index.function_at(line), expected, "{code} at line {line}");
    }
    // Module-level code between and around the functions.
    for line in [
        1, 2, 3, 6, 7, 17, 21, 22, 25, 73, 74, 78, 82, 84, 88, 89, 200,
    ] {
        assert_eq!(index.function_at(line), None, "line {line}");
    }
    assert_eq!(index.function_at(0), None);
}

/// The table above, checked again against whichever python3 runs the tests
/// (skipped when there is none): comprehensions stopped being code objects in
/// 3.12, the mapping must hold either way.
#[test]
fn the_machines_python_agrees_on_co_firstlineno() {
    let script = r#"
import sys, types
code = compile(sys.stdin.read(), "sample.py", "exec")
def walk(c, outermost):
    is_def = not c.co_name.startswith("<") and c.co_flags & 0x2
    if outermost is None and is_def:
        outermost = c.co_qualname
    print(c.co_firstlineno, outermost or "-")
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            walk(k, outermost)
walk(code, None)
"#;
    let child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("no python3: skipped");
        return;
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(SAMPLE.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let index = index(SAMPLE);
    let text = String::from_utf8(output.stdout).unwrap();
    let mut seen = 0;
    for row in text.lines() {
        let (line, outermost) = row.split_once(' ').unwrap();
        let line: u32 = line.parse().unwrap();
        let expected = (outermost != "-").then_some(outermost);
        assert_eq!(index.function_at(line), expected, "line {line}");
        seen += 1;
    }
    assert!(seen >= 25, "{text}");
}

#[test]
fn outermost_functions_with_their_spans_in_source_order() {
    let index = index(SAMPLE);
    let spans: Vec<(&str, u32, u32)> = index
        .functions
        .iter()
        .map(|f| (f.qualname.as_str(), f.first_line, f.last_line))
        .collect();
    assert_eq!(
        spans,
        [
            ("plain", 8, 9),
            ("decorated", 12, 16),
            ("A.method", 23, 24),
            ("A.x", 26, 28),
            ("A.x", 30, 32),
            ("A.B.m", 35, 36),
            ("outer", 39, 47),
            ("coro", 50, 51),
            ("gen", 54, 55),
            ("twice", 58, 59),
            ("twice", 62, 63),
            ("branch", 67, 68),
            ("branch", 70, 71),
            ("loads", 76, 77),
            ("loads", 79, 80),
            ("one", 83, 83),
            ("only_doc", 86, 87),
            ("stacked", 90, 96),
        ]
    );
}

#[test]
fn a_name_defined_several_times_has_one_digest_of_all_its_bodies() {
    let index = index(SAMPLE);
    let bodies = |name: &str| -> Vec<Digest> {
        index
            .functions
            .iter()
            .filter(|f| f.qualname == name)
            .map(|f| f.body)
            .collect()
    };
    for name in ["A.x", "twice", "branch", "loads"] {
        let each = bodies(name);
        assert_eq!(each.len(), 2, "{name}");
        assert_ne!(each[0], each[1], "{name}");
        let combined = index.body_digest(name).unwrap();
        assert!(!each.contains(&combined), "{name}");
        let mut hasher = blake3::Hasher::new_derive_key(BODIES_CONTEXT);
        hasher.update(&each[0].0);
        hasher.update(&each[1].0);
        assert_eq!(combined, Digest(*hasher.finalize().as_bytes()), "{name}");
    }
    // Defined once: the body's own digest, of the block's bytes.
    assert_eq!(
        index.body_digest("plain"),
        Some(Digest::of(b"return a + b"))
    );
    assert_eq!(index.body_digest("one"), Some(Digest::of(b"return 1")));
    assert_eq!(
        index.body_digest("only_doc"),
        Some(Digest::of(br#""""Only a docstring.""""#))
    );
    for missing in ["A", "inner", "outer.inner", "Local.lm", "nope", ""] {
        assert_eq!(index.body_digest(missing), None, "{missing}");
    }
}

#[test]
fn editing_a_body_changes_its_digest_and_nothing_else() {
    let before = index(SAMPLE);
    let after = index(&SAMPLE.replace("return a + b", "return a - b  # changed\n    pass"));
    assert_eq!(after.skeleton, before.skeleton);
    assert_ne!(after.body_digest("plain"), before.body_digest("plain"));
    for f in &before.functions {
        if f.qualname != "plain" {
            assert_eq!(
                after.body_digest(&f.qualname),
                before.body_digest(&f.qualname)
            );
        }
    }
    // Nested definitions, lambdas and comprehensions are the outer body's.
    for (old, new) in [
        ("return 3", "return 33"),
        ("lambda: 4", "lambda: 44"),
        ("i * i for", "i + i for"),
        ("return 5", "return 55"),
        ("m: m for", "m: 0 for"),
        (
            "return [j for j in range(2)]",
            "return [j for j in range(3)]",
        ),
    ] {
        assert!(SAMPLE.contains(old), "{old}");
        let after = index(&SAMPLE.replacen(old, new, 1));
        assert_eq!(after.skeleton, before.skeleton, "{old} -> {new}");
        assert_eq!(
            after.functions.len(),
            before.functions.len(),
            "{old} -> {new}"
        );
        let changed: Vec<&str> = before
            .functions
            .iter()
            .zip(&after.functions)
            .filter(|(b, a)| b.body != a.body)
            .map(|(b, _)| b.qualname.as_str())
            .collect();
        assert_eq!(changed.len(), 1, "{old} -> {new}: {changed:?}");
    }
}

#[test]
fn editing_module_level_code_changes_the_skeleton_only() {
    let before = index(SAMPLE);
    for (what, old, new) in [
        ("decorator argument", "maxsize=None", "maxsize=128"),
        ("decorator", "@functools.lru_cache\n", "@functools.cache\n"),
        ("default value", "b=1", "b=2"),
        ("annotation", "b: int = 2", "b: float = 2"),
        ("return annotation", ") -> int:", ") -> float:"),
        ("class attribute", "size = len(attr)", "size = 2"),
        ("module constant", "x * 2 for", "x * 3 for"),
        ("module-level lambda", "lambda v: v * v", "lambda v: v ** 2"),
        (
            "docstring",
            "\"\"\"Only a docstring.\"\"\"",
            "\"\"\"Other.\"\"\"",
        ),
        ("import-time code", "import json\n", "import json as json\n"),
        ("signature", "def one():", "def one(x=0):"),
        ("async or not", "async def coro", "def coro"),
        ("class name", "class B:", "class C:"),
        (
            "function name",
            "def twice():\n    return 9",
            "def twice2():\n    return 9",
        ),
    ] {
        assert!(SAMPLE.contains(old), "{what}: {old}");
        let after = index(&SAMPLE.replacen(old, new, 1));
        assert_ne!(after.skeleton, before.skeleton, "{what}");
    }
    // A decorator or a default is not in the body.
    let after = index(&SAMPLE.replacen("b=1", "b=2", 1));
    assert_eq!(after.body_digest("plain"), before.body_digest("plain"));
}

#[test]
fn a_docstring_stays_in_the_skeleton_and_the_body_digest() {
    let source = "def f():\n    \"\"\"Doc.\"\"\"\n    return 1\n";
    let before = index(source);
    let doc = index(&source.replace("Doc.", "Other doc."));
    assert_ne!(doc.skeleton, before.skeleton);
    assert_ne!(doc.body_digest("f"), before.body_digest("f"));
    let body = index(&source.replace("return 1", "return 2"));
    assert_eq!(body.skeleton, before.skeleton);
    assert_ne!(body.body_digest("f"), before.body_digest("f"));
    // Implicitly concatenated strings are a docstring too, after a comment.
    let source = "def f():\n    # note\n    'a' 'b'\n    return 1\n";
    let before = index(source);
    assert_ne!(
        index(&source.replace("'b'", "'c'")).skeleton,
        before.skeleton
    );
    assert_eq!(
        index(&source.replace("return 1", "return 2")).skeleton,
        before.skeleton
    );
    // A string that is not alone in its statement is not a docstring.
    let source = "def f():\n    'a' + x\n    return 1\n";
    let before = index(source);
    assert_eq!(
        index(&source.replace("'a'", "'b'")).skeleton,
        before.skeleton
    );
}

#[test]
fn the_skeleton_cannot_be_mistaken_for_the_source() {
    // Without a body the skeleton is the digest of the source itself.
    let source = "import os\nX = 1\n";
    let mut hasher = blake3::Hasher::new_derive_key(SKELETON_CONTEXT);
    hasher.update(source.as_bytes());
    assert_eq!(
        index(source).skeleton,
        Digest(*hasher.finalize().as_bytes())
    );
    // Removing a body is not the same as cutting it out.
    let full = index("def f():\n    return 1\n");
    let empty = index("def f():\n    pass\n");
    assert_eq!(full.skeleton, empty.skeleton);
    assert_ne!(full.skeleton, index("def f():\n").skeleton);
}

#[test]
fn a_syntax_error_anywhere_is_refused_with_its_line() {
    for (source, line) in [
        ("def f(:\n    return 1\n", 1), // MISSING ")"
        ("x = 1\ny = (\n", 2),          // unclosed
        (
            "def f():\n    return 1\n\nclass A:\n    def m(self)\n        pass\n",
            5,
        ),
        ("def f():\n    x = [1, 2\n    return x\n", 2),
    ] {
        assert_eq!(
            FunctionIndex::parse(source.as_bytes()),
            Err(FunctionsError::Syntax { line }),
            "{source}"
        );
    }
}

#[test]
fn a_latin_1_file_and_a_bom_are_parsed() {
    let latin_1 =
        b"# -*- coding: latin-1 -*-\ns = 'caf\xe9'\n\ndef f():\n    return '\xe9t\xe9'  # \xe9\n";
    let index = FunctionIndex::parse(latin_1).unwrap();
    assert_eq!(index.function_at(4), Some("f"));
    assert_eq!(index.functions[0].last_line, 5);
    assert_eq!(
        index.body_digest("f"),
        Some(Digest::of(b"return '\xe9t\xe9'  # \xe9"))
    );
    // A latin-1 identifier is not UTF-8: tree-sitter cannot parse it.
    assert_eq!(
        FunctionIndex::parse(b"# coding: latin-1\ndef caf\xe9():\n    pass\n"),
        Err(FunctionsError::Syntax { line: 2 })
    );

    let bom = b"\xef\xbb\xbfimport os\n\ndef f():\n    return 1\n";
    let index = FunctionIndex::parse(bom).unwrap();
    assert_eq!(index.function_at(3), Some("f"));
    assert_eq!(index.function_at(1), None);
}

#[test]
fn line_endings() {
    let crlf = "import os\r\n\r\ndef f():\r\n    return 1\r\n\r\nx = 1\r\n";
    let index = index(crlf);
    assert_eq!(
        (index.functions[0].first_line, index.functions[0].last_line),
        (3, 4)
    );
    assert_eq!(index.body_digest("f"), Some(Digest::of(b"return 1")));
    // Python counts a lone carriage return as a line break, tree-sitter does not.
    assert_eq!(
        FunctionIndex::parse(b"a = 1\n\rdef f():\r    return 1\r"),
        Err(FunctionsError::LoneCarriageReturn { line: 2 })
    );
}

#[test]
fn newer_syntax_and_compound_statements_are_transparent() {
    let source = "\
type Pair[T] = tuple[T, T]

def first[T](pair: Pair[T]) -> T:
    return pair[0]

match command:
    case 'go':
        def run():
            return 1
    case _:
        pass

with open(path) as handle:
    for line in handle:
        while True:
            class Reader:
                def read(self):
                    return line
            break

class Point[T]:
    @staticmethod
    async def make(*, x: T = ...) -> 'Point[T]':
        return Point()
";
    let index = index(source);
    let names: Vec<(&str, u32)> = index
        .functions
        .iter()
        .map(|f| (f.qualname.as_str(), f.first_line))
        .collect();
    assert_eq!(
        names,
        [
            ("first", 3),
            ("run", 8),
            ("Reader.read", 17),
            ("Point.make", 22)
        ]
    );
    assert_eq!(index.function_at(24), Some("Point.make"));
    assert_eq!(index.function_at(21), None);
}

/// Expressions nested far deeper than Python allows are walked without
/// recursion, so no stack overflow.
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let depth = 20_000;
    let source = format!(
        "if {}1{}:\n    def f():\n        pass\n",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    // Run on a small stack so that a recursive walk would fail.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || FunctionIndex::parse(source.as_bytes()).map(|i| i.functions.len()))
        .unwrap();
    assert_eq!(handle.join().unwrap(), Ok(1));
}

#[test]
fn an_empty_file_has_no_functions() {
    let index = index("");
    assert!(index.functions.is_empty());
    assert_eq!(index.function_at(1), None);
    assert_eq!(index.body_digest("f"), None);
}

/// CPython gives the module's code object line 1 whatever the file starts
/// with; when that is a function, line 1 is the function's (the caller tells
/// `<module>` apart by its name).
#[test]
fn line_1_is_the_first_functions_when_the_file_starts_with_one() {
    let index = index("def f():\n    return 1\n\nX = f()\n");
    assert_eq!(index.function_at(1), Some("f"));
    assert_eq!(index.function_at(4), None);
}
