//! What a test file's key covered when its tests last passed on this
//! machine, so that `explain` can name what changed since: the graph's
//! files with their digests (a snapshot, stored once however many test
//! files share it) and the parts of the salt. Kept in the local store
//! only, with plain paths: they never leave the machine.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::files::Digest;
use crate::hash::{DependencyHash, Salt};

/// Every file of the graph with its digest, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot(pub Vec<(String, Digest)>);

impl Snapshot {
    pub fn new(mut files: Vec<(String, Digest)>) -> Self {
        files.sort_unstable();
        files.dedup();
        Snapshot(files)
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// What it is stored under: blake3 of its encoding, hex.
    pub fn id(&self, encoded: &[u8]) -> String {
        blake3::hash(encoded).to_hex().to_string()
    }
}

/// The salt of a key, part by part, so a change can be named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaltParts {
    /// `DRYCI_SALT` and the outcome-relevant options.
    pub user: String,
    pub python: Option<String>,
    pub platform: String,
    /// The configuration's fingerprint.
    pub config: String,
}

impl SaltParts {
    pub fn of(salt: &Salt, config_fingerprint: &str) -> Self {
        SaltParts {
            user: salt.user.clone(),
            python: salt.python.clone(),
            platform: serde_json::to_string(&salt.platform).unwrap_or_default(),
            config: config_fingerprint.to_string(),
        }
    }

    /// The first part that differs from `now`, in words.
    pub fn change_to(&self, now: &SaltParts) -> Option<&'static str> {
        if self.config != now.config {
            Some("the DryCI configuration changed")
        } else if self.python != now.python {
            Some("the Python environment changed (interpreter or installed distributions)")
        } else if self.user != now.user {
            Some(user_salt_change(&self.user, &now.user))
        } else if self.platform != now.platform {
            Some("the platform changed")
        } else {
            None
        }
    }
}

/// The user salt as pytest_dryci.decisions builds it: `DRYCI_SALT` (any
/// text), the options' fingerprint (32 hex digits), whether observation is
/// on, and under function-level keys the files keyed whole. The last match
/// is the plugin's: `DRYCI_SALT` may hold anything, a file path no newline.
static USER_SALT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)\A(.*)\noptions:([0-9a-f]{32})\nobserve:(on|off)(\nprecision:.*)?\z")
        .expect("a valid pattern")
});

/// Which part of two different user salts differs, in words.
fn user_salt_change(before: &str, now: &str) -> &'static str {
    const UNKNOWN: &str = "an outcome-relevant pytest option or DRYCI_SALT changed";
    let parts = |salt| {
        USER_SALT
            .captures(salt)
            .map(|c| [1, 2, 3, 4].map(|i| c.get(i).map_or("", |m| m.as_str())))
    };
    let (Some(before), Some(now)) = (parts(before), parts(now)) else {
        return UNKNOWN; // a record from before these sections
    };
    const REASONS: [&str; 4] = [
        "DRYCI_SALT changed",
        "an outcome-relevant pytest option changed",
        "observation was switched on or off",
        "the repository files imported before DryCI's function profiler started \
         (keyed by their whole content) changed, or the keys' precision",
    ];
    (0..4)
        .find(|&i| before[i] != now[i])
        .map_or(UNKNOWN, |i| REASONS[i])
}

/// One test file's record: the key its tests last passed under here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHistory {
    pub dependency_hash: DependencyHash,
    pub snapshot: String,
    pub salt: SaltParts,
}

impl FileHistory {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// How many changed files a reason names before "and N more".
const NAMED_FILES: usize = 3;

/// Why a test file's key differs from the one its tests last passed under:
/// the files of its closure now (`closure`, with current digests) against
/// the snapshot, then the salt.
pub fn what_changed(
    closure: &[(String, Option<Digest>)],
    before: &Snapshot,
    salt_before: &SaltParts,
    salt_now: &SaltParts,
) -> String {
    let known: HashMap<&str, Digest> = before.0.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (path, digest) in closure {
        match (known.get(path.as_str()), digest) {
            (Some(old), Some(new)) if old == new => {}
            (Some(_), _) => changed.push(path.as_str()),
            (None, Some(_)) => added.push(path.as_str()),
            (None, None) => {}
        }
    }
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!(
            "changed since its tests last passed here: {}",
            named(&changed)
        ));
    }
    if !added.is_empty() {
        parts.push(format!("new dependencies: {}", named(&added)));
    }
    if parts.is_empty() {
        return salt_before
            .change_to(salt_now)
            .unwrap_or("its key changed, not its files (another DryCI version, or the file moved)")
            .to_string();
    }
    parts.join("; ")
}

fn named(paths: &[&str]) -> String {
    let mut text = paths
        .iter()
        .take(NAMED_FILES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > NAMED_FILES {
        text.push_str(&format!(" and {} more", paths.len() - NAMED_FILES));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn salt(user: &str) -> SaltParts {
        SaltParts {
            user: user.into(),
            python: Some("py".into()),
            platform: "linux".into(),
            config: "c".into(),
        }
    }

    #[test]
    fn names_the_part_of_the_user_salt_that_changed() {
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        let user = |salt: &str, options: &str, observe: &str, precision: &str| {
            format!("{salt}\noptions:{options}\nobserve:{observe}{precision}")
        };
        let files = "\nprecision:function\na.py";
        let precision = "the repository files imported before DryCI's function profiler \
                         started (keyed by their whole content) changed, or the keys' precision";
        // DRYCI_SALT values that hold the markers, or the whole shape, are told apart too.
        let odd_salts = [
            "s",
            "x\nprecision:y",
            "x\noptions:y",
            &user("z", &b, "off", files),
        ];
        for salt in odd_salts {
            let base = user(salt, &a, "on", files);
            let cases = [
                (user("t", &a, "on", files), "DRYCI_SALT changed"),
                (
                    user(salt, &b, "on", files),
                    "an outcome-relevant pytest option changed",
                ),
                (
                    user(salt, &a, "off", files),
                    "observation was switched on or off",
                ),
                (
                    user(salt, &a, "on", "\nprecision:function\na.py\nb.py"),
                    precision,
                ),
                (user(salt, &a, "on", ""), precision),
            ];
            for (now, reason) in cases {
                assert_eq!(user_salt_change(&base, &now), reason, "{base:?} -> {now:?}");
            }
            let without = user(salt, &a, "on", "");
            assert_eq!(
                user_salt_change(&without, &user(salt, &b, "on", "")),
                "an outcome-relevant pytest option changed",
                "{salt:?}"
            );
        }
        // A record from before the sections: no guess.
        assert_eq!(
            user_salt_change(&format!("s\noptions:{a}"), &user("s", &a, "on", "")),
            "an outcome-relevant pytest option or DRYCI_SALT changed"
        );
    }

    #[test]
    fn names_changed_and_new_files_then_the_salt() {
        let d = |b: u8| Digest([b; 32]);
        let before = Snapshot::new(vec![("a.py".into(), d(1)), ("b.py".into(), d(2))]);
        let now = vec![
            ("a.py".to_string(), Some(d(1))),
            ("b.py".to_string(), Some(d(9))),
            ("c.py".to_string(), Some(d(3))),
        ];
        assert_eq!(
            what_changed(&now, &before, &salt("x"), &salt("x")),
            "changed since its tests last passed here: b.py; new dependencies: c.py"
        );
        let same = vec![("a.py".to_string(), Some(d(1)))];
        assert_eq!(
            what_changed(&same, &before, &salt("x"), &salt("y")),
            "an outcome-relevant pytest option or DRYCI_SALT changed"
        );
        let many: Vec<(String, Option<Digest>)> =
            (0..5).map(|i| (format!("m{i}.py"), Some(d(i)))).collect();
        assert!(what_changed(&many, &before, &salt("x"), &salt("x")).ends_with("and 2 more"));
        let encoded = before.encode();
        assert_eq!(Snapshot::decode(&encoded), Some(before));
    }
}
