//! The import corpus: every `tests/data/import_corpus/*.py` file scanned,
//! its imports, module strings and fallback pinned as an insta snapshot
//! (`tests/data/import_corpus/snapshots/`). Regenerate with
//! `INSTA_UPDATE=always cargo test --test import_corpus` and review the diff.
//! The same files (and every prefix of them) also pin the fallback scan
//! against the collector: `src/imports/scan/tests.rs`.
//!
//! Also an ignored throughput measurement:
//! `cargo test --release --test import_corpus -- --ignored --nocapture`
//! (set `DRYCI_SCAN_BENCH_DIR` to scan a real tree, such as a Python stdlib).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dryci::imports::scan::{scan, ImportKind, ScanResult};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/import_corpus")
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory is part of the repository")
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "py"))
        .collect();
    files.sort();
    files
}

fn render(result: &ScanResult) -> String {
    let mut text = String::new();
    match &result.fallback {
        Some(fallback) => writeln!(
            text,
            "fallback: line {}: {}",
            fallback.line, fallback.reason
        ),
        None => writeln!(text, "fallback: none"),
    }
    .expect("writing to a String");
    text.push_str("imports:\n");
    for import in &result.imports {
        let kind = match import.kind {
            ImportKind::Import => "import",
            ImportKind::From => "from",
            ImportKind::Dynamic => "dynamic",
        };
        let dots = ".".repeat(import.level as usize);
        write!(text, "  L{} {kind} {dots}{}", import.line, import.module)
            .expect("writing to a String");
        if !import.names.is_empty() {
            write!(text, " [{}]", import.names.join(", ")).expect("writing to a String");
        }
        text.push('\n');
    }
    text.push_str("module strings:\n");
    for string in &result.module_strings {
        writeln!(text, "  L{} {}", string.line, string.value).expect("writing to a String");
    }
    text
}

#[test]
fn corpus_files_yield_their_pinned_imports() {
    let files = corpus_files();
    assert!(files.len() >= 10, "the corpus went missing: {files:?}");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(corpus_dir().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for path in &files {
            let source = std::fs::read(path).expect("readable corpus file");
            let name = path
                .file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            insta::assert_snapshot!(name, render(&scan(&source)));
        }
    });
}

/// Only files named `broken_*` may need the fallback.
#[test]
fn only_broken_corpus_files_fall_back() {
    for path in corpus_files() {
        let source = std::fs::read(&path).expect("readable corpus file");
        let broken = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("broken_"));
        let result = scan(&source);
        assert_eq!(
            result.fallback.is_some(),
            broken,
            "{}: {:?}",
            path.display(),
            result.fallback
        );
    }
}

#[test]
fn every_prefix_of_every_corpus_file_scans_without_panicking() {
    for path in corpus_files() {
        let source = std::fs::read(&path).expect("readable corpus file");
        for end in 0..=source.len() {
            let _ = scan(&source[..end]);
        }
    }
}

fn bench_sources() -> Vec<Vec<u8>> {
    if let Some(root) = std::env::var_os("DRYCI_SCAN_BENCH_DIR") {
        return walkdir::WalkDir::new(root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|entry| {
                entry
                    .path()
                    .extension()
                    .is_some_and(|extension| extension == "py")
            })
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .collect();
    }
    // Without a tree to scan: 10,000 files made of the corpus, repeated.
    let corpus: Vec<Vec<u8>> = corpus_files()
        .iter()
        .map(|path| std::fs::read(path).expect("readable corpus file"))
        .collect();
    (0..10_000)
        .map(|index| corpus[index % corpus.len()].repeat(8))
        .collect()
}

#[test]
#[ignore = "a measurement, not a check: run in release mode with --nocapture"]
fn scan_throughput() {
    let sources = bench_sources();
    let bytes: usize = sources.iter().map(Vec::len).sum();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let found: usize = sources
            .iter()
            .map(|source| {
                let result = scan(source);
                result.imports.len() + result.module_strings.len()
            })
            .sum();
        best = best.min(started.elapsed().as_secs_f64());
        assert!(found > 0);
    }
    println!(
        "scanned {} files, {:.1} MB in {:.3} s on one thread: {:.0} MB/s, {:.0} files/s",
        sources.len(),
        bytes as f64 / 1e6,
        best,
        bytes as f64 / 1e6 / best,
        sources.len() as f64 / best
    );
}
