//! A repository written into a temp folder, analysed with the real core.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use dryci::analysis::{analyze, dependency_hashes, Analysis, Request, StateCacheMode};
use dryci::files::FileDigest;
use dryci::hash::Salt;

pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new(files: &[(&str, &str)]) -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for (path, text) in files {
            repo.write(path, text);
        }
        repo
    }

    pub fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).expect("canonical root")
    }

    pub fn write(&self, rel: &str, text: &str) {
        self.write_bytes(rel, text.as_bytes());
    }

    pub fn write_bytes(&self, rel: &str, bytes: &[u8]) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    pub fn request(&self, inputs: Option<&[&str]>) -> Request {
        Request {
            root: self.root(),
            config_path: None,
            inputs: inputs.map(|list| list.iter().map(PathBuf::from).collect()),
            salt: Salt::new("test", None),
            state_cache: StateCacheMode::Off,
            function_level: None,
        }
    }

    pub fn analyze(&self, inputs: Option<&[&str]>) -> Analysis {
        analyze(&self.request(inputs)).expect("analysis")
    }

    /// input -> sorted closure (existing files only).
    pub fn closures(&self, inputs: Option<&[&str]>) -> BTreeMap<String, Vec<String>> {
        let analysis = self.analyze(inputs);
        closures_of(&analysis)
    }

    /// Hashes from a full analysis, with no cache of any kind.
    pub fn hashes(&self, inputs: Option<&[&str]>) -> BTreeMap<String, Option<String>> {
        let analysis = self.analyze(inputs);
        analysis
            .inputs
            .iter()
            .map(|i| (i.path.clone(), i.hash().map(|h| h.to_string())))
            .collect()
    }

    /// Hashes the way the plugin gets them: through `.dryci/`'s state cache,
    /// visit cache and hash memo. Also says whether they were replayed.
    pub fn cached_hashes(
        &self,
        inputs: Option<&[&str]>,
    ) -> (BTreeMap<String, Option<String>>, bool) {
        let mut request = self.request(inputs);
        request.state_cache = StateCacheMode::Default;
        let run = dependency_hashes(&request).expect("hashes");
        let hashes = run
            .inputs
            .iter()
            .map(|i| (i.path.clone(), i.hash().map(|h| h.to_string())))
            .collect();
        (hashes, run.remembered)
    }

    /// Every file of the repo (relative paths), for soundness sweeps.
    pub fn all_files(&self) -> Vec<String> {
        let root = self.root();
        walkdir::WalkDir::new(&root)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| dryci::walk::relative(&root, e.path()))
            .filter(|p| !p.starts_with(".dryci/"))
            .collect()
    }

    pub fn append(&self, rel: &str, extra: &str) {
        let path = self.dir.path().join(rel);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(extra.as_bytes());
        std::fs::write(path, bytes).expect("write");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

pub fn closures_of(analysis: &Analysis) -> BTreeMap<String, Vec<String>> {
    analysis
        .inputs
        .iter()
        .map(|input| {
            let files = analysis
                .closure(input)
                .iter()
                .map(|n| &analysis.graph.nodes[*n as usize])
                .filter(|n| n.digest != FileDigest::Absent)
                .map(|n| n.path.clone())
                .collect();
            (input.path.clone(), files)
        })
        .collect()
}

/// Direct relations (existing targets only), as `dryci graph --out-relations` prints them.
pub fn relations(analysis: &Analysis) -> BTreeMap<String, Vec<String>> {
    let graph = &analysis.graph;
    graph
        .nodes
        .iter()
        .filter(|n| n.digest != FileDigest::Absent)
        .map(|n| {
            let deps = n
                .edges
                .iter()
                .filter(|e| graph.nodes[e.to as usize].digest != FileDigest::Absent)
                .map(|e| graph.path(e.to).to_string())
                .collect();
            (n.path.clone(), deps)
        })
        .collect()
}

/// Soundness: changing any file in an input's closure changes its hash;
/// changing a file outside it does not. After every change, the hashes
/// obtained through the caches under `.dryci/` equal the uncached ones.
pub fn assert_sound(repo: &Repo, inputs: Option<&[&str]>) {
    let before_analysis = repo.analyze(inputs);
    let (cached, _) = repo.cached_hashes(inputs);
    let closures = closures_of(&before_analysis);
    let before: BTreeMap<String, Option<String>> = before_analysis
        .inputs
        .iter()
        .map(|i| (i.path.clone(), i.hash().map(|h| h.to_string())))
        .collect();
    assert_eq!(cached, before, "cached and uncached hashes differ");
    for file in repo.all_files() {
        let original = std::fs::read(repo.path(&file)).expect("read");
        repo.append(&file, "\n# changed\n");
        let after = repo.hashes(inputs);
        let (cached, _) = repo.cached_hashes(inputs);
        assert_eq!(
            cached, after,
            "editing {file}: cached and uncached hashes differ"
        );
        for (input, closure) in &closures {
            let changed = before[input] != after[input];
            let inside = closure.contains(&file);
            assert_eq!(
                changed, inside,
                "editing {file}: hash of {input} changed={changed}, but {file} in its closure={inside}"
            );
        }
        std::fs::write(repo.path(&file), original).expect("restore");
    }
    assert_eq!(
        repo.hashes(inputs),
        before,
        "restoring every file restores every hash"
    );
    let (cached, _) = repo.cached_hashes(inputs);
    assert_eq!(
        cached, before,
        "restoring every file restores every cached hash"
    );
    let (again, remembered) = repo.cached_hashes(inputs);
    assert_eq!(again, before);
    assert!(remembered, "a run with nothing changed replays its hashes");
}
