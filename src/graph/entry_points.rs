//! The project's own declared entry points (pyproject `[project.scripts]`,
//! `[project.gui-scripts]`, `[project.entry-points.*]`, setup.cfg
//! `[options.entry_points]`, setup.py `entry_points=`). Code loads them by
//! name, so without these edges the modules they name escape the graph.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    /// e.g. `pytest11`, `console_scripts`.
    pub group: String,
    /// `module:attr` as declared.
    pub spec: String,
    /// The module part of `spec`.
    pub module: String,
    /// The file that declares it, relative to the repo root.
    pub declared_in: String,
}

/// The declared entry points the configuration asks to follow (none when
/// its entry point policy is off).
pub fn for_config(config: &crate::config::Config) -> Vec<EntryPoint> {
    match config.rules.entry_points {
        crate::config::EntryPointPolicy::Off => Vec::new(),
        _ => declared(&config.root),
    }
}

/// Entry points declared in the project files at `root`; unreadable or
/// malformed files yield nothing here (they are global dependencies anyway).
pub fn declared(root: &Path) -> Vec<EntryPoint> {
    let mut found = Vec::new();
    if let Ok(text) = std::fs::read_to_string(root.join("pyproject.toml")) {
        from_pyproject(&text, &mut found);
    }
    if let Ok(text) = std::fs::read_to_string(root.join("setup.cfg")) {
        from_setup_cfg(&text, &mut found);
    }
    if let Ok(text) = std::fs::read_to_string(root.join("setup.py")) {
        from_setup_py(&text, &mut found);
    }
    found
}

fn push(found: &mut Vec<EntryPoint>, group: &str, spec: &str, declared_in: &str) {
    let spec = spec.trim();
    // `module:attr [extra]` -> `module`
    let module = spec.split([':', ' ', '[']).next().unwrap_or("").trim();
    if crate::config::is_dotted_name(module) {
        found.push(EntryPoint {
            group: group.to_string(),
            spec: spec.to_string(),
            module: module.to_string(),
            declared_in: declared_in.to_string(),
        });
    }
}

fn from_pyproject(text: &str, found: &mut Vec<EntryPoint>) {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return;
    };
    let Some(project) = doc.get("project").and_then(|p| p.as_table()) else {
        return;
    };
    let mut groups: Vec<(String, &toml::Table)> = Vec::new();
    for (key, group) in [
        ("scripts", "console_scripts"),
        ("gui-scripts", "gui_scripts"),
    ] {
        if let Some(table) = project.get(key).and_then(|t| t.as_table()) {
            groups.push((group.to_string(), table));
        }
    }
    if let Some(eps) = project.get("entry-points").and_then(|t| t.as_table()) {
        for (group, table) in eps {
            if let Some(table) = table.as_table() {
                groups.push((group.clone(), table));
            }
        }
    }
    for (group, table) in groups {
        for spec in table.values().filter_map(|v| v.as_str()) {
            push(found, &group, spec, "pyproject.toml");
        }
    }
}

fn from_setup_cfg(text: &str, found: &mut Vec<EntryPoint>) {
    let mut in_section = false;
    let mut group = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_section = trimmed == "[options.entry_points]";
            continue;
        }
        if !in_section || trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';')
        {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        if indented {
            push(found, &group, value, "setup.cfg");
        } else {
            // `console_scripts =` opens a group; its entries follow, indented.
            group = key.trim().to_string();
            if let Some((_, spec)) = value.split_once('=') {
                push(found, &group, spec, "setup.cfg");
            }
        }
    }
}

/// setup.py is code; entry points there are string literals `"name = mod:attr"`.
fn from_setup_py(text: &str, found: &mut Vec<EntryPoint>) {
    let Some(start) = text.find("entry_points") else {
        return;
    };
    let literal = regex::Regex::new(
        r#"["']\s*[\w.\-]+\s*=\s*([A-Za-z_][\w.]*\s*(?::\s*[\w.]+)?)\s*(?:\[[^\]]*\])?\s*["']"#,
    );
    let Ok(literal) = literal else { return };
    for captures in literal.captures_iter(&text[start..]) {
        if let Some(spec) = captures.get(1) {
            push(found, "setup.py", spec.as_str(), "setup.py");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_declaration_style() {
        let mut found = Vec::new();
        from_pyproject(
            "[project]\nname='x'\n[project.scripts]\nx = \"app.cli:main\"\n[project.entry-points.pytest11]\np = \"app.plugin\"\n",
            &mut found,
        );
        from_setup_cfg("[metadata]\nname = x\n[options.entry_points]\nconsole_scripts =\n    y = app.tool:run\n", &mut found);
        from_setup_py(
            "setup(entry_points={'console_scripts': ['z = app.z:main [extra]']})",
            &mut found,
        );
        let modules: Vec<(&str, &str)> = found
            .iter()
            .map(|e| (e.group.as_str(), e.module.as_str()))
            .collect();
        assert_eq!(
            modules,
            [
                ("console_scripts", "app.cli"),
                ("pytest11", "app.plugin"),
                ("console_scripts", "app.tool"),
                ("setup.py", "app.z")
            ]
        );
    }
}
