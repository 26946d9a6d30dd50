//! Table-driven tests of the scanner: each case is a source and the exact
//! imports (and, where the case is about them, module strings) it must yield.

use super::*;

/// `L3 from ..p.q [r, s]`, `L1 import a.b`, `L2 dynamic pkg.b`.
fn render_import(import: &ImportRef) -> String {
    let kind = match import.kind {
        ImportKind::Import => "import",
        ImportKind::From => "from",
        ImportKind::Dynamic => "dynamic",
    };
    let dots = ".".repeat(import.level as usize);
    let mut text = format!("L{} {kind} {dots}{}", import.line, import.module);
    if !import.names.is_empty() {
        text.push_str(&format!(" [{}]", import.names.join(", ")));
    }
    text
}

fn rendered_imports(source: &str) -> Vec<String> {
    let result = scan(source.as_bytes());
    assert_eq!(result.fallback, None, "unexpected fallback for {source:?}");
    result.imports.iter().map(render_import).collect()
}

fn rendered_strings(source: &[u8]) -> Vec<String> {
    let result = scan(source);
    assert_eq!(result.fallback, None, "unexpected fallback for {source:?}");
    result
        .module_strings
        .iter()
        .map(|string| format!("L{} {}", string.line, string.value))
        .collect()
}

/// (what the case is about, source, imports it must yield)
const IMPORT_CASES: &[(&str, &str, &[&str])] = &[
    ("plain import", "import os\n", &["L1 import os"]),
    (
        "import list with alias",
        "import a, b as c\n",
        &["L1 import a", "L1 import b"],
    ),
    (
        "dotted import with alias",
        "import a.b.c as d\n",
        &["L1 import a.b.c"],
    ),
    ("spaces around dots", "import a . b\n", &["L1 import a.b"]),
    ("from import", "from x import y\n", &["L1 from x [y]"]),
    (
        "parenthesized names across lines with trailing comma",
        "from x import (\n    a,\n    b as c,\n)\n",
        &["L1 from x [a, b]"],
    ),
    (
        "backslash continuation in import list",
        "import a, \\\n    b\n",
        &["L1 import a", "L1 import b"],
    ),
    (
        "backslash continuation in from header",
        "from \\\n  x import \\\n y\n",
        &["L1 from x [y]"],
    ),
    (
        "crlf line ends",
        "import a\r\nimport b\r\n",
        &["L1 import a", "L2 import b"],
    ),
    (
        "lone cr line ends",
        "import a\rimport b\r",
        &["L1 import a", "L2 import b"],
    ),
    (
        "tabs",
        "if x:\n\timport a\n\tfrom\tb\timport\tc\n",
        &["L2 import a", "L3 from b [c]"],
    ),
    (
        "semicolons",
        "import a; import b;from c import d\n",
        &["L1 import a", "L1 import b", "L1 from c [d]"],
    ),
    (
        "after a colon on one line",
        "if x: import a\nelse: from b import c\n",
        &["L1 import a", "L2 from b [c]"],
    ),
    (
        "nested in a function",
        "def f():\n    import a\n    return a\n",
        &["L2 import a"],
    ),
    (
        "nested in a class and a method",
        "class C:\n    from a import b\n    def m(self):\n        import c.d\n",
        &["L2 from a [b]", "L4 import c.d"],
    ),
    (
        "try / except ImportError",
        "try:\n    import ujson as json\nexcept ImportError:\n    import json\n",
        &["L2 import ujson", "L4 import json"],
    ),
    (
        "if TYPE_CHECKING still imports",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.types import T\n",
        &["L1 from typing [TYPE_CHECKING]", "L3 from pkg.types [T]"],
    ),
    (
        "relative: from . import x",
        "from . import x\n",
        &["L1 from . [x]"],
    ),
    (
        "relative two levels with module",
        "from ..p.q import r\n",
        &["L1 from ..p.q [r]"],
    ),
    (
        "relative with module",
        "from .sibling import name\n",
        &["L1 from .sibling [name]"],
    ),
    (
        "relative written as ellipsis",
        "from ... import x\n",
        &["L1 from ... [x]"],
    ),
    (
        "relative four levels spaced",
        "from .. .. import x\n",
        &["L1 from .... [x]"],
    ),
    ("star import", "from a.b import *\n", &["L1 from a.b [*]"]),
    (
        "relative star import",
        "from . import *\n",
        &["L1 from . [*]"],
    ),
    (
        "lazy import (3.15)",
        "lazy import a.b\n",
        &["L1 import a.b"],
    ),
    (
        "lazy from import (3.15)",
        "lazy from x import y\n",
        &["L1 from x [y]"],
    ),
    ("lazy as an ordinary name", "lazy = 1\nprint(lazy)\n", &[]),
    (
        "future import",
        "from __future__ import annotations\n",
        &["L1 from __future__ [annotations]"],
    ),
    (
        "importlib.import_module literal",
        "import importlib\nm = importlib.import_module(\"a.b\")\n",
        &["L1 import importlib", "L2 dynamic a.b"],
    ),
    (
        "bare import_module",
        "from importlib import import_module\nimport_module('a.b')\n",
        &["L1 from importlib [import_module]", "L2 dynamic a.b"],
    ),
    (
        "import_module with name keyword",
        "importlib.import_module(name='a')\n",
        &["L1 dynamic a"],
    ),
    (
        "import_module relative with package",
        "importlib.import_module('.b', 'pkg')\n",
        &["L1 dynamic pkg.b"],
    ),
    (
        "import_module relative with package keyword",
        "importlib.import_module(\"..b.c\", package=\"pkg.sub\")\n",
        &["L1 dynamic pkg.b.c"],
    ),
    (
        "import_module relative without literal package",
        "importlib.import_module('.b', __package__)\n",
        &["L1 dynamic .b"],
    ),
    (
        "import_module with a variable",
        "importlib.import_module(name)\n",
        &[],
    ),
    (
        "import_module with an f-string",
        "importlib.import_module(f'plugins.{name}')\n",
        &[],
    ),
    (
        "import_module with a concatenation",
        "importlib.import_module('plugins.' + name)\n",
        &[],
    ),
    (
        "import_module spread over lines",
        "importlib.import_module(\n    'a.b',\n)\n",
        &["L1 dynamic a.b"],
    ),
    (
        "dunder import",
        "__import__(\"a.b\")\n",
        &["L1 dynamic a.b"],
    ),
    (
        "dunder import with fromlist and level",
        "__import__('m', globals(), locals(), ['x', 'y'], 2)\n",
        &["L1 dynamic ..m [x, y]"],
    ),
    (
        "dunder import fromlist keyword",
        "__import__('pkg', fromlist=('sub',))\n",
        &["L1 dynamic pkg [sub]"],
    ),
    (
        "def import_module is not a call",
        "def import_module(name):\n    pass\n",
        &[],
    ),
    (
        "call inside an f-string field",
        "x = f\"{__import__('os').sep}\"\n",
        &["L1 dynamic os"],
    ),
    ("comment", "# import os\nx = 1  # from a import b\n", &[]),
    ("string", "s = 'import os'\nt = \"from a import b\"\n", &[]),
    (
        "print of an import statement",
        "print(\"from x import y\")\n",
        &[],
    ),
    (
        "docstring",
        "def f():\n    \"\"\"Use it like this:\n\n    import os\n    from a import b\n    \"\"\"\n",
        &[],
    ),
    (
        "raw and bytes strings",
        "r'import a'\nb'import b'\nrb\"\"\"import c\"\"\"\n",
        &[],
    ),
    (
        "attribute named like import",
        "x.import_thing()\ny = obj.importer\nimport_thing = 1\n",
        &[],
    ),
    (
        "keyword argument named like import",
        "f(imports=1, import_=2)\n",
        &[],
    ),
    (
        "yield from and raise from",
        "def g():\n    yield from h()\n    raise E from err\n",
        &[],
    ),
    (
        "yield from in a compound statement header",
        "if (yield from g()): import a\nfor x in (yield from g()): from b import c\n",
        &["L1 import a", "L2 from b [c]"],
    ),
    (
        "cython cimport",
        "cimport numpy as cnp\nfrom libc.stdlib cimport malloc, free\n",
        &["L1 import numpy", "L2 from libc.stdlib [malloc, free]"],
    ),
    (
        "cimport as an ordinary name",
        "cimport = 1\nprint(cimport, x)\n",
        &[],
    ),
    (
        "escaped quotes",
        "s = 'it\\'s import a'\nimport b\n",
        &["L2 import b"],
    ),
    (
        "triple-quoted string containing the other quote",
        "s = '''a \" import x \" '''\nimport b\n",
        &["L2 import b"],
    ),
    (
        "f-string with nested same quotes (3.12)",
        "x = f\"{d[\"import a\"]} {f\"{'import b'}\"}\"\nimport c\n",
        &["L2 import c"],
    ),
    (
        "f-string with format spec and conversion",
        "x = f'{a!r:>{width}} {b=}'\nimport c\n",
        &["L2 import c"],
    ),
    (
        "f-string braces escaped",
        "x = f'{{import a}}'\nimport b\n",
        &["L2 import b"],
    ),
    (
        "raw f-string with backslash before a field",
        "x = rf'\\{y}'\nimport b\n",
        &["L2 import b"],
    ),
    (
        "t-string (3.14)",
        "x = t'{a} import y'\nimport b\n",
        &["L2 import b"],
    ),
    (
        "line numbers after a multi-line string",
        "s = '''\n\n'''\nimport a\n",
        &["L4 import a"],
    ),
    (
        "line numbers inside brackets",
        "x = [\n1,\n2]\nimport a\n",
        &["L4 import a"],
    ),
    ("byte order mark", "\u{feff}import a\n", &["L1 import a"]),
    ("no trailing newline", "import a", &["L1 import a"]),
    (
        "non-ascii identifiers",
        "import café\n",
        &["L1 import café"],
    ),
];

#[test]
fn every_import_case_yields_exactly_its_imports() {
    let mut failures = Vec::new();
    for &(about, source, expected) in IMPORT_CASES {
        let expected: Vec<String> = expected.iter().map(|line| (*line).to_owned()).collect();
        let actual = rendered_imports(source);
        if actual != expected {
            failures.push(format!("{about}:\n  source:   {source:?}\n  expected: {expected:?}\n  actual:   {actual:?}"));
        }
    }
    assert!(IMPORT_CASES.len() >= 40);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// (what the case is about, source, module strings it must yield)
const MODULE_STRING_CASES: &[(&str, &[u8], &[&str])] = &[
    ("dotted name", b"x = 'pkg.mod'\n", &["L1 pkg.mod"]),
    ("single identifier", b"x = \"plugin\"\n", &["L1 plugin"]),
    ("entry-point spec", b"x = 'pkg.mod:main'\n", &["L1 pkg.mod"]),
    (
        "entry-point spec with dotted attribute",
        b"x = 'pkg.mod:Class.method'\n",
        &["L1 pkg.mod"],
    ),
    (
        "every quote form",
        b"a = '''p.a'''\nb = \"\"\"p.b\"\"\"\nc = r'p.c'\nd = u\"p.d\"\ne = R'p.e'\n",
        &["L1 p.a", "L2 p.b", "L3 p.c", "L4 p.d", "L5 p.e"],
    ),
    (
        "f-string without fields",
        b"x = f'pkg.mod'\n",
        &["L1 pkg.mod"],
    ),
    ("f-string with a field", b"x = f'pkg.{name}'\n", &[]),
    (
        "string nested in an f-string field",
        b"x = f\"{load('pkg.plugin')}\"\n",
        &["L1 pkg.plugin"],
    ),
    ("bytes", b"x = b'pkg.mod'\ny = rb'pkg.mod'\n", &[]),
    ("t-string", b"x = t'pkg.mod'\n", &[]),
    (
        "not names",
        b"['a-b', 'a..b', '.a', 'a.', 'a:b:c', '1abc', '', 'a b', 'pkg.mod:']\n",
        &[],
    ),
    ("comment", b"# 'pkg.mod'\n", &[]),
    (
        "docstring that is a name",
        b"\"\"\"pkg.mod\"\"\"\n",
        &["L1 pkg.mod"],
    ),
    (
        "line continuation inside a string",
        b"x = 'pkg.\\\nmod'\n",
        &["L1 pkg.mod"],
    ),
    ("other escapes are skipped", b"x = 'pkg\\x2emod'\n", &[]),
    (
        "implicit concatenation: each part alone",
        b"x = ('pkg' '.mod')\n",
        &["L1 pkg"],
    ),
    (
        "entry points in a setup call",
        b"setup(entry_points={'console_scripts': ['tool = pkg.cli:main']})\n",
        &["L1 console_scripts"],
    ),
    (
        "non-ascii utf-8",
        "x = 'pkg.modül'\n".as_bytes(),
        &["L1 pkg.modül"],
    ),
    (
        "latin-1 with a coding cookie",
        b"# -*- coding: latin-1 -*-\nx = 'pkg.mod\xfcl'\n",
        &["L2 pkg.modül"],
    ),
];

#[test]
fn every_module_string_case_yields_exactly_its_strings() {
    let mut failures = Vec::new();
    for &(about, source, expected) in MODULE_STRING_CASES {
        let actual = rendered_strings(source);
        if actual != expected {
            failures.push(format!(
                "{about}:\n  expected: {expected:?}\n  actual:   {actual:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn strings_longer_than_the_limit_are_skipped() {
    let long_name = "a".repeat(MAX_MODULE_STRING_BYTES + 1);
    let exact_name = "b".repeat(MAX_MODULE_STRING_BYTES);
    let source = format!("x = '{long_name}'\ny = '{exact_name}'\n");
    assert_eq!(
        rendered_strings(source.as_bytes()),
        vec![format!("L2 {exact_name}")]
    );
}

#[test]
fn latin1_import_names_are_decoded_with_the_cookie() {
    let result = scan(b"# coding=iso-8859-1\nimport caf\xe9\n");
    assert_eq!(result.fallback, None);
    assert_eq!(result.imports[0].module, "café");
}

#[test]
fn coding_cookie_only_counts_on_the_first_two_lines() {
    assert_eq!(
        coding_cookie(b"#!/usr/bin/python\n# vim: set fileencoding=latin-1 :\n").as_deref(),
        Some("latin-1")
    );
    assert_eq!(
        coding_cookie(b"\n# coding: latin_1\n").as_deref(),
        Some("latin-1")
    );
    assert_eq!(coding_cookie(b"import os\n# coding: latin-1\n"), None);
    assert_eq!(coding_cookie(b"#\n#\n# coding: latin-1\n"), None);
}

fn fallback_of(source: &str) -> ScanResult {
    let result = scan(source.as_bytes());
    assert!(
        result.fallback.is_some(),
        "expected a fallback for {source:?}"
    );
    result
}

fn rendered(result: &ScanResult) -> Vec<String> {
    result.imports.iter().map(render_import).collect()
}

fn has_module_string(result: &ScanResult, value: &str) -> bool {
    result
        .module_strings
        .iter()
        .any(|string| string.value == value)
}

#[test]
fn unterminated_triple_quoted_string_falls_back_to_a_superset() {
    let source = "import a\ns = \"\"\"\nimport b\nfrom .c import (d,\n    e as f)\nnot_imported = 'pkg.mod'\n";
    let result = fallback_of(source);
    assert_eq!(
        result.fallback,
        Some(ScanFallback {
            line: 2,
            reason: "unterminated string literal".to_owned()
        })
    );
    assert_eq!(
        rendered(&result),
        ["L1 import a", "L3 import b", "L4 from .c [d, e]"]
    );
    assert!(has_module_string(&result, "pkg.mod"));
    assert!(has_module_string(&result, "not_imported"));
}

#[test]
fn unterminated_single_quoted_string_falls_back() {
    let result = fallback_of("s = 'abc\nimport a\n");
    assert_eq!(
        result.fallback.as_ref().map(|fallback| fallback.line),
        Some(1)
    );
    assert_eq!(rendered(&result), ["L2 import a"]);
}

#[test]
fn unclosed_bracket_at_end_of_file_falls_back() {
    let result = fallback_of("import a\nx = (\n1,\nimport b\n");
    assert_eq!(
        result.fallback,
        Some(ScanFallback {
            line: 2,
            reason: "bracket opened here is never closed".to_owned()
        })
    );
    assert_eq!(rendered(&result), ["L1 import a", "L4 import b"]);
}

#[test]
fn unmatched_closing_bracket_falls_back() {
    let result = fallback_of("x = 1)\nimport a\n");
    assert_eq!(
        result.fallback.as_ref().map(|fallback| fallback.line),
        Some(1)
    );
    assert_eq!(rendered(&result), ["L2 import a"]);
}

#[test]
fn fallback_reads_imports_inside_strings_and_comments() {
    let result = fallback_of("# import a\ns = 'from b import c'\nx = (\n");
    assert_eq!(rendered(&result), ["L1 import a", "L2 from b [c]"]);
}

#[test]
fn fallback_finds_literal_dynamic_imports() {
    let source = "x = '''\nimportlib.import_module(\".b\", package=\"pkg\")\nimport_module( 'a.b' )\n__import__('c')\n";
    let result = fallback_of(source);
    assert_eq!(
        rendered(&result),
        ["L2 dynamic pkg.b", "L3 dynamic a.b", "L4 dynamic c"]
    );
}

#[test]
fn fallback_does_not_swallow_an_import_after_yield_from() {
    let result = fallback_of("def g():\n    yield from h\nimport os\nx = (\n");
    assert_eq!(rendered(&result), ["L3 import os"]);
}

#[test]
fn fallback_reads_dynamic_call_arguments_as_the_precise_pass_does() {
    let result = fallback_of(
        "x = (\n__import__('p', fromlist=['q'], level=1)\nimportlib.import_module(name='a')\n",
    );
    assert_eq!(rendered(&result), ["L2 dynamic .p [q]", "L3 dynamic a"]);
}

#[test]
fn fallback_keeps_what_the_precise_pass_found_first_without_duplicates() {
    let found_first = ImportRef {
        module: "only.precise".to_owned(),
        level: 0,
        names: Vec::new(),
        line: 1,
        kind: ImportKind::Dynamic,
    };
    let also_found_by_fallback = ImportRef {
        module: "a".to_owned(),
        level: 0,
        names: Vec::new(),
        line: 1,
        kind: ImportKind::Import,
    };
    let source = b"import a\nx = (\n";
    let (imports, _) = fallback::conservative_scan(
        source,
        TextDecoder::for_source(source),
        vec![found_first.clone(), also_found_by_fallback.clone()],
        Vec::new(),
    );
    assert_eq!(imports, vec![also_found_by_fallback, found_first]);
}

/// A broken file is often a good file cut short (an editor mid-save, a
/// merge in progress): the same pin on every prefix of every test input.
#[test]
fn fallback_reports_a_superset_of_the_collector_on_every_prefix() {
    let mut gaps = Vec::new();
    for (label, source) in every_test_input() {
        for end in 0..source.len() {
            gaps.extend(fallback_gaps(&format!("{label} [..{end}]"), &source[..end]));
        }
    }
    assert!(gaps.is_empty(), "the fallback under-reports: {gaps:#?}");
}

/// Regression: the fallback reads comments as code, and stopped a
/// parenthesized name list at the first comment word, losing `b` and `d`.
#[test]
fn fallback_keeps_the_names_after_a_comment_in_a_parenthesized_list() {
    let result =
        fallback_of("s = '\nfrom x import (\n    a,  # the first\n    b as c,\n    d,\n)\n");
    assert_eq!(rendered(&result), ["L2 from x [a, the, first, b, d]"]);
}

/// Regression: a name list left open must not swallow the import after it.
#[test]
fn fallback_ends_an_unclosed_name_list_at_the_next_import() {
    let result = fallback_of("from x import (a,\nimport y\nimport_module('z')\n");
    assert_eq!(
        rendered(&result),
        ["L1 from x [a]", "L2 import y", "L3 dynamic z"]
    );
}

/// Regression: a continuation inside a string is deleted from its value,
/// so `'pkg.\` + newline + `mod'` names `pkg.mod`, which the fallback missed.
#[test]
fn fallback_joins_dotted_words_across_a_continuation() {
    let result = fallback_of("x = 'pkg.\\\nmod.\\\r\nsub'\ny = (\n");
    assert!(has_module_string(&result, "pkg.mod.sub"));
    assert!(has_module_string(&result, "pkg"));
}

/// The fallback must find at least what the precise scan finds on source
/// that tokenizes, or it would under-report on the same text once broken.
#[test]
fn fallback_never_under_reports_on_the_import_cases() {
    for &(about, source, _) in IMPORT_CASES {
        let precise = scan(source.as_bytes());
        let (conservative, strings) = fallback::conservative_scan(
            source.as_bytes(),
            TextDecoder::for_source(source.as_bytes()),
            Vec::new(),
            Vec::new(),
        );
        for import in &precise.imports {
            let covered = conservative.iter().any(|candidate| {
                candidate.module == import.module
                    && candidate.level == import.level
                    && candidate.kind == import.kind
                    && import.names.iter().all(|name| {
                        candidate.names.contains(name) || import.kind == ImportKind::Dynamic
                    })
            });
            assert!(
                covered,
                "{about}: fallback misses {import:?}; it found {conservative:?}"
            );
        }
        for string in &precise.module_strings {
            let value = &string.value;
            let covered = strings.iter().any(|candidate| candidate.value == *value);
            assert!(covered, "{about}: fallback misses module string {value:?}");
        }
    }
}

/// Every input the scanner is tested on: the unit cases above and each file
/// of the import corpus (`tests/data/import_corpus/*.py`), as (label, bytes).
fn every_test_input() -> Vec<(String, Vec<u8>)> {
    let mut inputs: Vec<(String, Vec<u8>)> = IMPORT_CASES
        .iter()
        .map(|&(about, source, _)| (format!("import case: {about}"), source.as_bytes().to_vec()))
        .chain(
            MODULE_STRING_CASES.iter().map(|&(about, source, _)| {
                (format!("module string case: {about}"), source.to_vec())
            }),
        )
        .collect();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the import corpus is part of the repository")
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "py"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus went missing: {files:?}");
    for path in files {
        let name = path.file_name().expect("a file name").to_string_lossy();
        let source = std::fs::read(&path).expect("readable corpus file");
        inputs.push((format!("corpus: {name}"), source));
    }
    inputs
}

/// What the collector finds on its own: the token-stream path, including the
/// partial results of a file that stops tokenizing.
fn collector_path(source: &[u8]) -> (Vec<ImportRef>, Vec<ModuleString>) {
    let mut collector = collector::Collector::new(source, TextDecoder::for_source(source));
    let _ = lexer::tokenize(source, &mut collector);
    collector.into_results()
}

/// What the fallback finds on its own, without the collector's partial
/// results merged in (which would make any superset check trivially pass).
fn fallback_path(source: &[u8]) -> (Vec<ImportRef>, Vec<ModuleString>) {
    fallback::conservative_scan(
        source,
        TextDecoder::for_source(source),
        Vec::new(),
        Vec::new(),
    )
}

/// The fallback reports an import at least as wide as `import`: same kind,
/// module, level and line, and every name `import` lists.
///
/// One difference is allowed, by rule: an import keyword taken as a name.
/// The collector takes any name token after `import`, so a file cut inside
/// `import_module` gives `from importlib import import`; Python has no such
/// name, and the fallback refuses it so that an unclosed list hands the
/// keyword back to start the next import
/// (`fallback_ends_an_unclosed_name_list_at_the_next_import`).
fn fallback_covers(fallback_imports: &[ImportRef], import: &ImportRef) -> bool {
    let wanted_names: Vec<&String> = import
        .names
        .iter()
        .filter(|name| !matches!(name.as_str(), "import" | "cimport" | "from"))
        .collect();
    fallback_imports.iter().any(|candidate| {
        candidate.kind == import.kind
            && candidate.module == import.module
            && candidate.level == import.level
            && candidate.line == import.line
            && wanted_names
                .iter()
                .all(|name| candidate.names.contains(name))
    })
}

/// The gaps between the two paths on `source`, as (label, rendered item).
fn fallback_gaps(label: &str, source: &[u8]) -> Vec<(String, String)> {
    let (precise_imports, precise_strings) = collector_path(source);
    let (fallback_imports, fallback_strings) = fallback_path(source);
    let mut gaps = Vec::new();
    for import in &precise_imports {
        if !fallback_covers(&fallback_imports, import) {
            gaps.push((label.to_owned(), render_import(import)));
        }
    }
    // The fallback records each distinct word once, at its first line:
    // module strings are compared by value.
    for string in &precise_strings {
        if !fallback_strings
            .iter()
            .any(|candidate| candidate.value == string.value)
        {
            gaps.push((
                label.to_owned(),
                format!("L{} string {}", string.line, string.value),
            ));
        }
    }
    gaps
}

/// Where the fallback knowingly reports less than the collector, as
/// (input label, what the collector reports that the fallback does not).
/// Each entry needs a reason here; the test fails if one goes away, so the
/// list stays exact.
const KNOWN_FALLBACK_GAPS: &[(&str, &str)] = &[];

/// Pins the two grammars against each other: on every test input, the
/// fallback (which reads everything as code) reports a superset of what the
/// collector reports from the token stream. A miss here is an under-report
/// waiting for the day that file stops tokenizing.
#[test]
fn fallback_reports_a_superset_of_the_collector_on_every_test_input() {
    let inputs = every_test_input();
    assert!(inputs.len() >= IMPORT_CASES.len() + MODULE_STRING_CASES.len() + 10);
    let gaps: Vec<(String, String)> = inputs
        .iter()
        .flat_map(|(label, source)| fallback_gaps(label, source))
        .collect();
    let expected: Vec<(String, String)> = KNOWN_FALLBACK_GAPS
        .iter()
        .map(|&(label, gap)| (label.to_owned(), gap.to_owned()))
        .collect();
    assert_eq!(
        gaps, expected,
        "the fallback's gaps against the collector changed (left: found, right: KNOWN_FALLBACK_GAPS)"
    );
}

/// A small deterministic xorshift generator: no dev-dependency needed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Random sources over an alphabet rich in what the lexer treats specially,
/// plus arbitrary bytes: the scan must never panic, whatever it returns.
#[test]
fn random_bytes_never_panic() {
    const PIECES: &[&[u8]] = &[
        b"import ",
        b"from ",
        b" as ",
        b".",
        b"..",
        b",",
        b"(",
        b")",
        b"[",
        b"]",
        b"{",
        b"}",
        b"'",
        b"\"",
        b"'''",
        b"\"\"\"",
        b"f'",
        b"rf\"",
        b"b'",
        b"t'",
        b"\\",
        b"\\\n",
        b"\n",
        b"\r",
        b"\r\n",
        b"#",
        b":",
        b"!r",
        b"=",
        b"*",
        b";",
        b"lazy ",
        b"import_module(",
        b"__import__(",
        b"package=",
        b"fromlist=",
        b"\xff",
        b"\xef\xbb\xbf",
        b"\0",
        b"a",
        b"pkg.mod",
        b"1e+5",
        b"\t",
        b"\\N{",
        b"{{",
        b"}}",
    ];
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut source = Vec::new();
        for _ in 0..random.below(40) {
            if random.below(8) == 0 {
                source.push(random.next() as u8);
            } else {
                source.extend_from_slice(PIECES[random.below(PIECES.len())]);
            }
        }
        let _ = scan(&source);
    }
}

#[test]
fn every_prefix_of_every_case_never_panics() {
    let sources = IMPORT_CASES
        .iter()
        .map(|case| case.1.as_bytes())
        .chain(MODULE_STRING_CASES.iter().map(|case| case.1));
    for source in sources {
        for end in 0..=source.len() {
            let _ = scan(&source[..end]);
        }
    }
}

#[test]
fn deeply_nested_f_strings_fall_back_instead_of_overflowing_the_stack() {
    let depth = 10_000;
    let mut source = String::new();
    for level in 0..depth {
        source.push_str(if level % 2 == 0 { "f'{" } else { "f\"{" });
    }
    let result = scan(source.as_bytes());
    assert!(result.fallback.is_some());
}
