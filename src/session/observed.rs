//! A session's view of observed inputs: whether the requirement sets of the
//! recorded passes still hold (checking each set and each input once), and
//! the sets this run's passes establish. Module requirements need the
//! current dependency hash of each module file, which one more analysis of
//! just those files gives (a memo hit when nothing changed).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::analysis::{dependency_hashes, state_cache};
use crate::cache::local::{LocalBatch, StoredPass};
use crate::cache::Cache;
use crate::files::state::StateCache;
use crate::hash::DependencyHash;
use crate::requirements::{stored_path, Observed, Probe, Requirement, RequirementSet};

use super::SessionSettings;

/// The state cache, loaded on first need.
fn load_state<'s>(state: &'s mut Option<StateCache>, context: &Context<'_>) -> &'s StateCache {
    state.get_or_insert_with(|| state_cache(&context.settings.state_cache, context.root))
}

/// What checking and establishing need of the session.
pub(super) struct Context<'a> {
    pub settings: &'a SessionSettings,
    /// The repository root the configuration settled on: stored paths are relative to it.
    pub root: &'a Path,
}

#[derive(Default)]
pub(super) struct Inputs {
    /// Loaded on first need: most runs have no requirement to check.
    state: Option<StateCache>,
    /// Module file (relative to the root) -> its current dependency hash.
    module_hashes: HashMap<String, DependencyHash>,
    /// Module files no analysis could hash (their requirements fail).
    unhashed_modules: HashSet<String>,
    warnings: Vec<String>,
}

impl Inputs {
    /// The requirement sets named in `answers` that do not hold now, or that
    /// cannot be read (a record that cannot be checked is no record: its
    /// test runs): set id -> why, for reports.
    pub fn unmet_sets(
        &mut self,
        cache: &Cache,
        context: &Context<'_>,
        answers: &[Vec<StoredPass>],
        warnings: &mut Vec<String>,
    ) -> HashMap<String, String> {
        let mut ids: Vec<&str> = answers
            .iter()
            .flatten()
            .filter_map(|pass| pass.requirements.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return HashMap::new();
        }
        let (found, read_warnings) = cache.requirement_sets(&ids);
        warnings.extend(read_warnings);
        let mut sets = HashMap::new();
        let mut corrupt = 0;
        for (id, body) in found {
            match RequirementSet::decode_stored(&id, &body) {
                Some(set) => {
                    sets.insert(id, set);
                }
                None => corrupt += 1,
            }
        }
        if corrupt > 0 {
            warnings.push(format!(
                "{corrupt} stored requirement sets could not be read; their tests run"
            ));
        }
        let modules: Vec<String> = sets
            .values()
            .flat_map(|set| &set.0)
            .filter_map(|requirement| match requirement {
                Requirement::Module { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        self.hash_modules(context, modules);
        warnings.append(&mut self.warnings);
        let state = load_state(&mut self.state, context);
        let mut probe = Probe::new(context.root, state, &self.module_hashes);
        let mut unmet = HashMap::new();
        for id in ids {
            let why = match sets.get(id) {
                None => Some("its record of observed inputs could not be read".to_string()),
                Some(set) => probe.first_unmet(set),
            };
            if let Some(why) = why {
                unmet.insert(id.to_string(), why);
            }
        }
        unmet
    }

    /// Establishes the requirements `observed` makes, adds the set (and the
    /// modules it names) to `batch`, and returns the set's id; or the input
    /// that cannot be established.
    pub fn establish(
        &mut self,
        context: &Context<'_>,
        observed: &Observed,
        code: &BTreeMap<String, BTreeSet<String>>,
        batch: &mut LocalBatch,
    ) -> Result<String, String> {
        let root = context.root;
        let stored: Vec<String> = observed
            .modules
            .iter()
            .map(|path| stored_path(root, path))
            .collect();
        self.hash_modules(context, stored.clone());
        let state = load_state(&mut self.state, context);
        let set = Probe::new(root, state, &self.module_hashes).establish(observed, code)?;
        let id = set.id();
        batch
            .requirement_sets
            .entry(id.clone())
            .or_insert_with(|| set.encode());
        batch.observed_modules.extend(stored);
        batch.observed_modules.sort_unstable();
        batch.observed_modules.dedup();
        Ok(id)
    }

    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Hashes the module files (relative to the root) not hashed yet, in one analysis.
    fn hash_modules(&mut self, context: &Context<'_>, modules: Vec<String>) {
        let mut missing: Vec<String> = modules
            .into_iter()
            .filter(|path| {
                !self.module_hashes.contains_key(path) && !self.unhashed_modules.contains(path)
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        let settings = context.settings;
        let request = settings.request(Some(
            missing.iter().map(|path| context.root.join(path)).collect(),
        ));
        match dependency_hashes(&request) {
            Ok(run) => {
                for (path, input) in missing.iter().zip(run.inputs) {
                    match input.outcome {
                        Ok(hash) => {
                            self.module_hashes.insert(path.clone(), hash);
                        }
                        Err(_) => {
                            self.unhashed_modules.insert(path.clone());
                        }
                    }
                }
            }
            Err(err) => {
                self.warnings
                    .push(format!("cannot hash modules imported at run time: {err}"));
                self.unhashed_modules.extend(missing);
            }
        }
    }
}
