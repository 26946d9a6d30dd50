use std::path::Path;

use super::*;
use crate::imports::scan::ImportKind;

fn index(files: &[&str]) -> RepoIndex {
    RepoIndex::from_relative_paths(
        Path::new("/repo"),
        files.iter().map(|s| s.to_string()).collect(),
    )
}

fn names(index: &RepoIndex, resolution: &Resolution) -> Vec<String> {
    match resolution {
        Resolution::Files(files) => {
            let mut out: Vec<String> = files.iter().map(|id| index.path(*id).to_string()).collect();
            out.sort();
            out
        }
        other => vec![format!("{other:?}")],
    }
}

fn import(module: &str, level: u32, names: &[&str]) -> ImportRef {
    ImportRef {
        module: module.to_string(),
        level,
        names: names.iter().map(|s| s.to_string()).collect(),
        line: 1,
        kind: ImportKind::From,
    }
}

const REPO: &[&str] = &[
    "app/__init__.py",
    "app/core/__init__.py",
    "app/core/models.py",
    "app/core/models.pyi",
    "app/fast.pyx",
    "app/fast.pxd",
    "app/fast.c",
    "src/lib/__init__.py",
    "src/lib/util.py",
    "nsroot/part/mod.py",
    "tests/test_a.py",
];

fn resolver(index: &RepoIndex) -> ModuleResolver<'_> {
    let roots = ["app", "lib", "nsroot"].map(String::from);
    ModuleResolver::new(index, &roots, &[String::new(), "src".to_string()])
}

#[test]
fn absolute_module_includes_every_suffix_and_parent_inits() {
    let idx = index(REPO);
    let r = resolver(&idx);
    assert_eq!(
        names(&idx, &r.resolve_absolute("app.core.models")),
        [
            "app/__init__.py",
            "app/core/__init__.py",
            "app/core/models.py",
            "app/core/models.pyi"
        ]
    );
    assert_eq!(
        names(&idx, &r.resolve_absolute("app.fast")),
        [
            "app/__init__.py",
            "app/fast.c",
            "app/fast.pxd",
            "app/fast.pyx"
        ]
    );
}

#[test]
fn src_layout_and_namespace_packages() {
    let idx = index(REPO);
    let r = resolver(&idx);
    assert_eq!(
        names(&idx, &r.resolve_absolute("lib.util")),
        ["src/lib/__init__.py", "src/lib/util.py"]
    );
    assert_eq!(r.resolve_absolute("nsroot.part"), Resolution::Namespace);
    assert_eq!(
        names(&idx, &r.resolve_absolute("nsroot.part.mod")),
        ["nsroot/part/mod.py"]
    );
}

#[test]
fn external_and_missing_are_told_apart() {
    let idx = index(REPO);
    let r = resolver(&idx);
    assert_eq!(r.resolve_absolute("os.path"), Resolution::External);
    assert_eq!(r.resolve_absolute("app.generated_pb2"), Resolution::Missing);
}

#[test]
fn from_package_import_submodule() {
    let idx = index(REPO);
    let r = resolver(&idx);
    let (main, subs) = r.resolve_import(
        "tests/test_a.py",
        &import("app.core", 0, &["models", "helper"]),
    );
    assert_eq!(
        names(&idx, &main),
        ["app/__init__.py", "app/core/__init__.py"]
    );
    let subs: Vec<&str> = subs.iter().map(|id| idx.path(*id)).collect();
    assert!(subs.contains(&"app/core/models.py"));
}

#[test]
fn relative_imports_at_any_depth() {
    let idx = index(REPO);
    let r = resolver(&idx);
    let (main, subs) = r.resolve_import("app/core/models.py", &import("", 1, &["models"]));
    assert_eq!(
        names(&idx, &main),
        ["app/__init__.py", "app/core/__init__.py"]
    );
    assert_eq!(subs.len(), 4);
    let (main, _) = r.resolve_import("app/core/models.py", &import("fast", 2, &["x"]));
    assert_eq!(
        names(&idx, &main),
        [
            "app/__init__.py",
            "app/fast.c",
            "app/fast.pxd",
            "app/fast.pyx"
        ]
    );
    let (beyond, _) = r.resolve_import("app/core/models.py", &import("x", 4, &[]));
    assert_eq!(beyond, Resolution::Missing);
}

#[test]
fn longest_prefix_finds_the_module_of_an_object_path() {
    let idx = index(REPO);
    let r = resolver(&idx);
    let (module, _) = r
        .resolve_longest_prefix("app.core.models.User.save")
        .unwrap();
    assert_eq!(module, "app.core.models");
    assert!(r.resolve_longest_prefix("json.decoder").is_none());
}

#[test]
fn all_submodules_lists_python_files_below_a_package() {
    let idx = index(REPO);
    let r = resolver(&idx);
    let files: Vec<&str> = r
        .all_submodules("app.core")
        .iter()
        .map(|id| idx.path(*id))
        .collect();
    assert_eq!(files, ["app/core/__init__.py", "app/core/models.py"]);
}

#[test]
fn a_test_imports_a_sibling_helper_the_way_pytest_prepend_mode_allows() {
    let idx = index(&[
        "tests/helpers.py",
        "tests/test_a.py",
        "tests/unit/__init__.py",
        "tests/unit/test_b.py",
        "tests/helpers2/__init__.py",
    ]);
    let r = resolver(&idx);
    let (main, _) = r.resolve_import("tests/test_a.py", &import("helpers", 0, &[]));
    assert_eq!(names(&idx, &main), ["tests/helpers.py"]);
    // In a package, the folder above the package is the one on sys.path.
    let (main, _) = r.resolve_import("tests/unit/test_b.py", &import("helpers2", 0, &[]));
    assert_eq!(names(&idx, &main), ["tests/helpers2/__init__.py"]);
    let (third_party, _) = r.resolve_import("tests/test_a.py", &import("requests", 0, &[]));
    assert_eq!(third_party, Resolution::External);
}

#[test]
fn star_import_of_a_package_depends_on_its_direct_submodules() {
    let idx = index(REPO);
    let r = resolver(&idx);
    let (_, subs) = r.resolve_import("tests/test_a.py", &import("app", 0, &["*"]));
    let mut subs: Vec<&str> = subs.iter().map(|id| idx.path(*id)).collect();
    subs.sort();
    assert_eq!(
        subs,
        [
            "app/__init__.py",
            "app/core/__init__.py",
            "app/fast.c",
            "app/fast.pxd",
            "app/fast.pyx"
        ]
    );
    // A star import of a plain module adds nothing more.
    let (_, subs) = r.resolve_import("tests/test_a.py", &import("app.fast", 0, &["*"]));
    assert!(subs.is_empty());
}
