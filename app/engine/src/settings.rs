//! `settings.json` in `$BERTH_HOME`: the VM's size and backend, and what it shares. Owns reading, validating and
//! atomically writing it; missing keys take defaults, unknown or malformed ones are an error.
//!
//! Only a missing file means "defaults": an unreadable, empty, truncated or invalid one is an
//! error naming the file, never silently replaced by defaults. Writes go through
//! [`crate::paths::write_private_atomic`] (0600, fsync, rename, directory fsync), so a crash
//! leaves the old settings or the new, never a part.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which VM backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Qemu,
    Builtin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    pub backend: BackendChoice,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Apparent size of the sparse data disk; it only grows as the guest writes.
    pub disk_gib: u32,
    /// Mirrors tried first for Docker Hub images, as dockerd's `registry-mirrors`.
    pub registry_mirrors: Vec<String>,
    /// Registries spoken to over plain HTTP, as dockerd's `insecure-registries`
    /// (127.0.0.0/8 always is).
    pub insecure_registries: Vec<String>,
    /// Published ports without a host IP listen on every interface (dockerd's behaviour)
    /// instead of 127.0.0.1 only.
    pub expose_ports_on_lan: bool,
    /// Host directories the VM sees over virtio-fs, so containers can bind-mount paths under
    /// them (Docker Desktop's file-sharing list). Default: the home directory and /tmp.
    pub shared_paths: Vec<String>,
    /// The largest `docker build` context the engine accepts (MiB); a larger one is refused
    /// while it uploads.
    pub build_context_limit_mib: u32,
    /// The most one layer, imported archive or build context may decompress to in the VM
    /// (MiB); 0: only the data disk's free room bounds it (the agent's reserve is never
    /// given up to it).
    pub max_layer_mib: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let host_cpus = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        Settings {
            backend: BackendChoice::Auto,
            cpus: (host_cpus / 2).clamp(1, 8),
            memory_mib: 2048,
            disk_gib: 64,
            registry_mirrors: Vec::new(),
            insecure_registries: Vec::new(),
            expose_ports_on_lan: false,
            shared_paths: std::env::var("HOME")
                .ok()
                .filter(|h| h.starts_with('/'))
                .into_iter()
                .chain(["/tmp".to_owned()])
                .collect(),
            build_context_limit_mib: 2048,
            max_layer_mib: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid settings: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(source) => {
                return Err(SettingsError::Io {
                    path: shown,
                    source,
                });
            }
        };
        let settings: Settings =
            serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
                path: shown.clone(),
                source,
            })?;
        settings
            .validate()
            .map_err(|message| SettingsError::Invalid {
                path: shown,
                message,
            })?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.cpus) {
            return Err(format!("cpus must be 1 to 64, not {}", self.cpus));
        }
        if !(256..=1024 * 1024).contains(&self.memory_mib) {
            return Err(format!(
                "memory-mib must be at least 256, not {}",
                self.memory_mib
            ));
        }
        if !(1..=16 * 1024).contains(&self.disk_gib) {
            return Err(format!(
                "disk-gib must be 1 to 16384, not {}",
                self.disk_gib
            ));
        }
        if self.build_context_limit_mib == 0 {
            return Err("build-context-limit-mib must be at least 1".into());
        }
        if let Some(p) = self.shared_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(format!("shared-paths must be absolute paths, not {p:?}"));
        }
        Ok(())
    }

    /// Validates, then writes atomically and durably, 0600 (see
    /// [`crate::paths::write_private_atomic`]). Invalid settings are refused, not written.
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let shown = path.display().to_string();
        self.validate().map_err(|message| SettingsError::Invalid {
            path: shown.clone(),
            message,
        })?;
        let text = serde_json::to_string_pretty(self).expect("settings serialize");
        crate::paths::write_private_atomic(path, text.as_bytes()).map_err(|source| {
            SettingsError::Write {
                path: shown,
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.disk_gib, 64);
        let changed = Settings {
            cpus: 1,
            registry_mirrors: vec!["http://127.0.0.1:5000".into()],
            ..s
        };
        changed.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), changed);
    }

    #[test]
    fn bad_settings_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, r#"{"cpus": 0}"#).unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("settings.json") && err.contains("cpus"),
            "{err}"
        );
        std::fs::write(&path, r#"{"cpu": 2}"#).unwrap();
        assert!(Settings::load(&path).is_err());
        std::fs::write(&path, "not json").unwrap();
        assert!(Settings::load(&path).is_err());
        // What a crash in a non-atomic write leaves: empty or cut short. Never defaults.
        for torn in ["", r#"{"cpus": 2, "memory-mib""#] {
            std::fs::write(&path, torn).unwrap();
            assert!(
                matches!(Settings::load(&path), Err(SettingsError::Parse { .. })),
                "{torn:?}"
            );
        }
        // A directory (or any unreadable file) in its place is an error too.
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Settings::load(dir.path()),
            Err(SettingsError::Io { .. })
        ));
    }

    #[test]
    fn saves_are_atomic_private_and_validated() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let s = Settings {
            cpus: 2,
            ..Settings::default()
        };
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Invalid settings are refused and the file is left as it was.
        let bad = Settings {
            cpus: 0,
            ..s.clone()
        };
        assert!(matches!(
            bad.save(&path),
            Err(SettingsError::Invalid { .. })
        ));
        assert_eq!(Settings::load(&path).unwrap(), s);
        // A failed write leaves no temporary file behind.
        assert!(matches!(
            s.save(&dir.path().join("missing/settings.json")),
            Err(SettingsError::Write { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
