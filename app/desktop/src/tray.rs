//! The tray icon: the engine's state as the icon and a status line, and Start, Stop, Restart,
//! Open Dashboard and Quit. Menu items call the same [`Engine`] methods as the UI's commands.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};

use crate::dto::EngineState;
use crate::engine::Engine;

const TRAY_ID: &str = "berth";

/// The menu items whose text or enabled state follows the engine.
pub struct TrayItems {
    status: MenuItem<Wry>,
    start: MenuItem<Wry>,
    stop: MenuItem<Wry>,
    restart: MenuItem<Wry>,
}

pub fn status_line(state: EngineState, detail: Option<&str>) -> String {
    match state {
        EngineState::Starting => "Berth is starting…".into(),
        EngineState::Running => "Berth is running".into(),
        EngineState::Stopping => "Berth is stopping…".into(),
        EngineState::Stopped => "Berth is stopped".into(),
        EngineState::Error => format!("Berth failed: {}", detail.unwrap_or("see Troubleshoot")),
    }
}

fn icon(state: EngineState) -> Image<'static> {
    match state {
        EngineState::Running => tauri::include_image!("icons/tray-running.png"),
        EngineState::Starting | EngineState::Stopping => {
            tauri::include_image!("icons/tray-starting.png")
        }
        EngineState::Stopped => tauri::include_image!("icons/tray-stopped.png"),
        EngineState::Error => tauri::include_image!("icons/tray-error.png"),
    }
}

pub fn init(app: &tauri::App) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Berth", false, None::<&str>)?;
    let start = MenuItem::with_id(app, "start", "Start", true, None::<&str>)?;
    let stop = MenuItem::with_id(app, "stop", "Stop", true, None::<&str>)?;
    let restart = MenuItem::with_id(app, "restart", "Restart", true, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open Dashboard", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Berth", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let sep2 = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[&status, &sep, &start, &stop, &restart, &sep2, &open, &quit],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(EngineState::Stopped))
        .tooltip("Berth")
        .menu(&menu)
        .on_menu_event(|app, ev| menu_action(app, ev.id.as_ref()))
        .build(app)?;
    app.manage(TrayItems {
        status,
        start,
        stop,
        restart,
    });
    Ok(())
}

/// What a menu item does; `crate::commands` has the same verbs for the UI.
pub fn menu_action(app: &AppHandle, id: &str) {
    let engine = app.state::<Engine>().inner().clone();
    match id {
        "start" => {
            tauri::async_runtime::spawn(async move { log_err(engine.start().await) });
        }
        "stop" => {
            tauri::async_runtime::spawn(async move { log_err(engine.stop().await) });
        }
        "restart" => {
            tauri::async_runtime::spawn(async move { log_err(engine.restart().await) });
        }
        "open" => crate::show_dashboard(app),
        "quit" => crate::quit(app),
        _ => {}
    }
}

fn log_err(r: Result<(), crate::error::AppError>) {
    if let Err(e) = r {
        tracing::warn!("tray: {e}");
    }
}

/// Shows `state` in the tray: icon, status line, which verbs make sense.
pub fn show_state(app: &AppHandle, state: EngineState, detail: Option<&str>) {
    if let Some(items) = app.try_state::<TrayItems>() {
        let _ = items.status.set_text(status_line(state, detail));
        let busy = matches!(state, EngineState::Starting | EngineState::Stopping);
        let _ = items
            .start
            .set_enabled(matches!(state, EngineState::Stopped | EngineState::Error));
        let _ = items
            .stop
            .set_enabled(!busy && state == EngineState::Running);
        let _ = items
            .restart
            .set_enabled(!busy && state == EngineState::Running);
    }
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let _ = tray.set_icon(Some(icon(state)));
        let _ = tray.set_tooltip(Some(status_line(state, detail)));
    }
}
