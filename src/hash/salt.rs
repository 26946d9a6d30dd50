//! The salt of every dependency hash: what besides the files decides a
//! test's outcome. The user's salt (`DRYCI_SALT`), the platform (OS,
//! distribution and its version, CPU architecture, read with sysinfo) and,
//! when the caller passes it, a fingerprint of the Python interpreter and
//! its installed distributions.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub distribution: String,
    pub os_version: String,
    pub arch: String,
}

impl Platform {
    /// The machine this process runs on. The kernel version is left out on
    /// purpose: CI images update it constantly and it rarely changes results.
    pub fn current() -> Self {
        let unknown = || "unknown".to_string();
        Platform {
            os: std::env::consts::OS.to_string(),
            distribution: sysinfo::System::distribution_id(),
            os_version: sysinfo::System::os_version().unwrap_or_else(|_| unknown()),
            arch: sysinfo::System::cpu_arch(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Salt {
    pub user: String,
    pub platform: Platform,
    /// A fingerprint of the Python environment, from the plugin.
    pub python: Option<String>,
}

impl Salt {
    pub fn new(user: impl Into<String>, python: Option<String>) -> Self {
        Salt {
            user: user.into(),
            platform: Platform::current(),
            python,
        }
    }

    /// blake3 of the salt's canonical JSON.
    pub fn digest(&self) -> [u8; 32] {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        *blake3::hash(&canonical).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_changes_the_digest() {
        let base = Salt::new("", None);
        assert_eq!(base.digest(), Salt::new("", None).digest());
        assert_ne!(base.digest(), Salt::new("x", None).digest());
        assert_ne!(base.digest(), Salt::new("", Some("py3.11".into())).digest());
        let mut other_arch = base.clone();
        other_arch.platform.arch = "riscv64".into();
        assert_ne!(base.digest(), other_arch.digest());
        assert_eq!(base.platform.os, std::env::consts::OS);
    }
}
