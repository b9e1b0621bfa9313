//! The desktop app under WebDriver, for the desktop suite and bench: an X server of its own,
//! a session bus, tauri-driver in front of WebKitGTK's WebKitWebDriver, and a WebDriver session
//! (which launches `target/release/berth-desktop`) with a Berth home of the caller's.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

use crate::registry::free_port;
use crate::{guest_dir, root};

pub fn desktop_bin() -> PathBuf {
    let bin = root().join("target/release/berth-desktop");
    assert!(
        bin.exists(),
        "{} is missing: run `make build`",
        bin.display()
    );
    bin
}

/// A child process killed when the test ends, however it ends.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child in a process group of its own, which dies whole when the test ends: tauri-driver,
/// the WebKitWebDriver it starts, the app that one starts, and the app's VM.
pub struct KillGroup(pub Child);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this test created; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// An X server of our own (on a display it picks and reports once it is ready), and a session
/// bus for the webview and the tray.
pub fn display() -> (Kill, Kill, String, String) {
    let mut xvfb = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (Debian's xvfb, installed by make setup)");
    let mut n = String::new();
    std::io::BufReader::new(xvfb.stdout.take().unwrap())
        .read_line(&mut n)
        .unwrap();
    assert!(!n.trim().is_empty(), "Xvfb did not start");
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon");
    let mut addr = String::new();
    std::io::BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut addr)
        .unwrap();
    (
        Kill(xvfb),
        Kill(bus),
        format!(":{}", n.trim()),
        addr.trim().to_owned(),
    )
}

pub fn tauri_driver() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    PathBuf::from(home).join("bin/tauri-driver")
}

pub async fn connect(port: u16, app: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": app }),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // tauri-driver answers before WebKitWebDriver behind it is up: retry.
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "no WebDriver session: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Everything one app session needs, torn down (app, VM and all) on drop.
pub struct Session {
    pub client: Client,
    _driver: KillGroup,
    _bus: Kill,
    _xvfb: Kill,
}

/// Starts X, a bus and tauri-driver, then a session that launches the app with `home` as
/// `BERTH_HOME`; the driver's output goes to `home/desktop.log`.
pub async fn start(home: &Path) -> Session {
    let (xvfb, bus, display, bus_addr) = display();
    let driver_port = free_port();
    let log = std::fs::File::create(home.join("desktop.log")).unwrap();
    let mut driver = Command::new(tauri_driver());
    driver
        .args([
            "--port",
            &driver_port.to_string(),
            "--native-port",
            &free_port().to_string(),
            "--native-driver",
            "/usr/bin/WebKitWebDriver",
        ])
        .env("DISPLAY", &display)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus_addr)
        .env("NO_AT_BRIDGE", "1")
        .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
        .env("BERTH_HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("BERTH_GUEST_DIR", guest_dir())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut driver, 0);
    let driver = KillGroup(
        driver
            .spawn()
            .expect("tauri-driver (cargo-installed by make setup)"),
    );
    let client = connect(driver_port, &desktop_bin()).await;
    Session {
        client,
        _driver: driver,
        _bus: bus,
        _xvfb: xvfb,
    }
}
