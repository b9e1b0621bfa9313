//! Start at login: an XDG autostart entry (`$XDG_CONFIG_HOME/autostart/berth.desktop`, by
//! default under `~/.config`) that desktop sessions on Linux run when the user logs in. Its
//! presence is the setting; it is not part of the engine's settings.json.

use std::path::{Path, PathBuf};

use tauri::State;

use crate::engine::Engine;
use crate::error::AppError;

/// Where the entry lives for this user.
pub fn entry_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(config.join("autostart/berth.desktop"))
}

/// The program to start: the AppImage itself when running from one, else this executable.
fn program() -> Result<PathBuf, AppError> {
    if let Some(image) = std::env::var_os("APPIMAGE") {
        return Ok(image.into());
    }
    std::env::current_exe().map_err(AppError::internal)
}

/// The entry's text. `Exec` quotes the path as the desktop entry spec asks.
fn entry(program: &Path) -> String {
    let quoted = program
        .to_string_lossy()
        .replace('\\', "\\\\\\\\")
        .replace('"', "\\\"")
        .replace('`', "\\`")
        .replace('$', "\\$");
    format!(
        "[Desktop Entry]\nType=Application\nName=Berth\nComment=Containers on a lightweight VM\n\
         Exec=\"{quoted}\"\nIcon=berth\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
    )
}

fn set_at(path: &Path, on: bool, program: &Path) -> std::io::Result<()> {
    if on {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        let tmp = path.with_extension("desktop.tmp");
        std::fs::write(&tmp, entry(program))?;
        std::fs::rename(tmp, path)
    } else {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether Berth starts when the user logs in.
#[tauri::command]
#[specta::specta]
pub fn get_start_at_login(_engine: State<'_, Engine>) -> bool {
    entry_path().is_some_and(|p| p.exists())
}

#[tauri::command]
#[specta::specta]
pub fn set_start_at_login(_engine: State<'_, Engine>, on: bool) -> Result<(), AppError> {
    let path = entry_path()
        .ok_or_else(|| AppError::internal("neither XDG_CONFIG_HOME nor HOME is set"))?;
    set_at(&path, on, &program()?)
        .map_err(|e| AppError::internal(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_removes_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("autostart/berth.desktop");
        set_at(&path, true, Path::new("/opt/Berth $1/berth-desktop")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[Desktop Entry]\n"), "{text}");
        assert!(
            text.contains("Exec=\"/opt/Berth \\$1/berth-desktop\"\n"),
            "{text}"
        );
        assert!(!dir.path().join("autostart/berth.desktop.tmp").exists());
        set_at(&path, false, Path::new("/x")).unwrap();
        assert!(!path.exists());
        // Off twice is fine.
        set_at(&path, false, Path::new("/x")).unwrap();
    }
}
