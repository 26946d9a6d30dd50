//! Import scanning: Python source bytes in, imports and module-naming strings out.
//! Pure: no file system, no configuration.

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
pub fn scan(_source: &[u8]) -> ScanResult {
    ScanResult::default()
}
