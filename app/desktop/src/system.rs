//! Settings, troubleshooting and reset: settings.json through the engine's own reader and
//! writer, the doctor's checks, the VM's serial log, and a reset to defaults that deletes the
//! data disk and the settings (the UI warns first).

use berth_engine::settings::{BackendChoice, Settings};
use serde::{Deserialize, Serialize};
use specta::Type;
use tauri::State;

use crate::engine::Engine;
use crate::error::{AppError, ErrorCode};

/// settings.json as the Settings view edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    /// auto, qemu or builtin.
    pub backend: String,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub expose_ports_on_lan: bool,
    /// Host directories containers may bind-mount from.
    pub shared_paths: Vec<String>,
    /// The largest build context accepted (MiB).
    pub build_context_limit_mib: u32,
    /// The most one layer may decompress to (MiB); 0: the disk's free room.
    pub max_layer_mib: u32,
}

impl From<&Settings> for SettingsView {
    fn from(s: &Settings) -> Self {
        SettingsView {
            backend: match s.backend {
                BackendChoice::Auto => "auto",
                BackendChoice::Qemu => "qemu",
                BackendChoice::Builtin => "builtin",
            }
            .into(),
            cpus: s.cpus,
            memory_mib: s.memory_mib,
            disk_gib: s.disk_gib,
            registry_mirrors: s.registry_mirrors.clone(),
            insecure_registries: s.insecure_registries.clone(),
            expose_ports_on_lan: s.expose_ports_on_lan,
            shared_paths: s.shared_paths.clone(),
            build_context_limit_mib: s.build_context_limit_mib,
            max_layer_mib: u32::try_from(s.max_layer_mib).unwrap_or(u32::MAX),
        }
    }
}

impl TryFrom<&SettingsView> for Settings {
    type Error = AppError;
    fn try_from(v: &SettingsView) -> Result<Self, AppError> {
        let backend = match v.backend.as_str() {
            "auto" => BackendChoice::Auto,
            "qemu" => BackendChoice::Qemu,
            "builtin" => BackendChoice::Builtin,
            other => {
                return Err(AppError::new(
                    ErrorCode::InvalidInput,
                    format!("{other}: the backend is auto, qemu or builtin"),
                ));
            }
        };
        let clean = |l: &[String]| -> Vec<String> {
            l.iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let s = Settings {
            backend,
            cpus: v.cpus,
            memory_mib: v.memory_mib,
            disk_gib: v.disk_gib,
            registry_mirrors: clean(&v.registry_mirrors),
            insecure_registries: clean(&v.insecure_registries),
            expose_ports_on_lan: v.expose_ports_on_lan,
            shared_paths: clean(&v.shared_paths),
            build_context_limit_mib: v.build_context_limit_mib,
            max_layer_mib: u64::from(v.max_layer_mib),
        };
        s.validate()
            .map_err(|m| AppError::new(ErrorCode::InvalidInput, m))?;
        Ok(s)
    }
}

fn load(engine: &Engine) -> Result<Settings, AppError> {
    Settings::load(&engine.supervisor().paths().settings())
        .map_err(|e| AppError::new(ErrorCode::InvalidInput, e.to_string()))
}

#[tauri::command]
#[specta::specta]
pub fn get_settings(engine: State<'_, Engine>) -> Result<SettingsView, AppError> {
    Ok(SettingsView::from(&load(&engine)?))
}

/// Saves the settings; returns whether the running VM must restart to apply them (the UI asks
/// before it restarts).
#[tauri::command]
#[specta::specta]
pub fn save_settings(engine: State<'_, Engine>, settings: SettingsView) -> Result<bool, AppError> {
    let new = Settings::try_from(&settings)?;
    let old = load(&engine)?;
    new.save(&engine.supervisor().paths().settings())
        .map_err(AppError::internal)?;
    Ok(new != old && engine.require_running().is_ok())
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    pub warning: bool,
    pub detail: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct DoctorView {
    pub healthy: bool,
    pub backend: Option<String>,
    pub backend_reason: Option<String>,
    pub engine_version: String,
    pub berth_home: String,
    pub checks: Vec<CheckView>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// `berth doctor`'s checks of this machine (without a second boot: the VM may be running).
#[tauri::command]
#[specta::specta]
pub async fn doctor(engine: State<'_, Engine>) -> Result<DoctorView, AppError> {
    let own = engine.supervisor().status();
    let r = berth_engine::doctor::run_beside(engine.supervisor().paths(), false, Some(&own)).await;
    Ok(DoctorView {
        healthy: r.problems.is_empty(),
        backend: r.backend,
        backend_reason: r.backend_reason,
        engine_version: r.engine_version,
        berth_home: r.berth_home,
        checks: r
            .checks
            .into_iter()
            .map(|c| CheckView {
                name: c.name,
                ok: c.ok,
                warning: c.warning,
                detail: c.detail,
                fix: c.fix,
            })
            .collect(),
        problems: r.problems,
        warnings: r.warnings,
    })
}

/// The end of the VM's serial console log (the guest kernel's and init's output).
#[tauri::command]
#[specta::specta]
pub fn serial_log(engine: State<'_, Engine>) -> Result<String, AppError> {
    const TAIL: usize = 64 * 1024;
    let path = engine.supervisor().paths().serial_log();
    match std::fs::metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(AppError::internal(format!("{}: {e}", path.display()))),
    }
    // The end only: a long-running VM's log is sparse at its start (see `vm::logtrim`).
    let bytes = berth_engine::vm::logtrim::tail_bytes(&path, TAIL as u64);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Stops Berth, deletes the data disk (every container, image and volume) and settings.json,
/// and starts again with defaults.
#[tauri::command]
#[specta::specta]
pub async fn reset_to_defaults(engine: State<'_, Engine>) -> Result<(), AppError> {
    engine.stop().await?;
    let paths = engine.supervisor().paths();
    for file in [paths.data_disk(), paths.settings(), paths.ports_off()] {
        match std::fs::remove_file(&file) {
            Ok(()) => tracing::info!("reset: removed {}", file.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AppError::internal(format!("{}: {e}", file.display()))),
        }
    }
    engine.start().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_values_are_refused() {
        let s = Settings::default();
        let mut v = SettingsView::from(&s);
        assert_eq!(Settings::try_from(&v).unwrap(), s);
        v.registry_mirrors = vec![" http://127.0.0.1:5000 ".into(), "".into()];
        assert_eq!(
            Settings::try_from(&v).unwrap().registry_mirrors,
            vec!["http://127.0.0.1:5000".to_string()]
        );
        v.cpus = 0;
        assert_eq!(
            Settings::try_from(&v).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        v.cpus = 2;
        v.backend = "vmware".into();
        assert!(
            Settings::try_from(&v)
                .unwrap_err()
                .message
                .contains("auto, qemu or builtin")
        );
    }
}
