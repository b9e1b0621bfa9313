//! The desktop app in a real window: `berth-desktop` under Xvfb, driven over WebDriver
//! (tauri-driver in front of WebKitGTK's WebKitWebDriver) with its own `BERTH_HOME`, a real VM
//! and a local registry mirror. It pulls an image by clicking and sees progress, runs a
//! container with a published port and fetches from it, switches the port off and on, reads the
//! container's log, stops and deletes it, and drives the tray's Stop and Start through the
//! command the tray menu calls. Screenshots of each view land in `target/desktop-screenshots`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_tests::registry::{self, free_port};
use berth_tests::{TestHome, desktop, root};
use fantoccini::{Client, Locator};

const LIMIT: Duration = Duration::from_secs(180);

/// Waits until `css` matches an element whose `attr` (or text, for `None`) satisfies `ok`.
async fn wait_for(
    c: &Client,
    css: &str,
    attr: Option<&str>,
    ok: impl Fn(&str) -> bool,
    limit: Duration,
) -> String {
    eprintln!("desktop: wait for {css} {attr:?}");
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    loop {
        if let Ok(els) = c.find_all(Locator::Css(css)).await {
            for el in els {
                let value = match attr {
                    Some(a) => el.attr(a).await.ok().flatten().unwrap_or_default(),
                    None => el.text().await.unwrap_or_default(),
                };
                if ok(&value) {
                    return value;
                }
                last = value;
            }
        }
        if Instant::now() >= deadline {
            // What the page held, for the failure's report.
            let page = c.source().await.unwrap_or_default();
            let dir = root().join("target/desktop-screenshots");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("failure.html"), &page);
            // A script that failed to load says why when imported again.
            let script = c
                .execute_async(
                    "const done = arguments[0]; \
                     const s = document.querySelector('script[type=module]'); \
                     if (!s) { done('no module script'); } else { \
                     import(s.src).then(() => done('the UI script loaded; errors: ' + \
                     JSON.stringify(window.__berthErrors) + ' ready: ' + document.readyState + ' app: ' + \
                     document.getElementById('app').outerHTML.slice(0, 300)), \
                     (e) => done(String(e) + ' ' + (e && e.stack)) ); }",
                    vec![],
                )
                .await
                .map(|v| v.to_string())
                .unwrap_or_else(|e| e.to_string());
            panic!(
                "waited {limit:?} for {css} (last seen: {last:?}); {script}; the page is in {}",
                dir.join("failure.html").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until nothing matches `css` (a dialog closed).
async fn wait_gone(c: &Client, css: &str) {
    eprintln!("desktop: wait for {css} to go");
    let deadline = Instant::now() + LIMIT;
    while c
        .find_all(Locator::Css(css))
        .await
        .is_ok_and(|v| !v.is_empty())
    {
        assert!(Instant::now() < deadline, "{css} is still there");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn click(c: &Client, css: &str) {
    eprintln!("desktop: click {css}");
    c.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn type_into(c: &Client, css: &str, text: &str) {
    eprintln!("desktop: type into {css}");
    let el = c
        .wait()
        .at_most(LIMIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    let dir = root().join("target/desktop-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    // WebKitGTK's snapshot waits for the next paint, which an idle page under Xvfb may never
    // make: nudge one first (and again, if the snapshot still waits).
    for attempt in 1..=3 {
        c.execute(
            "const d = document.createElement('div'); d.textContent = String(Date.now()); \
             document.body.appendChild(d); setTimeout(() => d.remove(), 100); return true;",
            vec![],
        )
        .await
        .unwrap();
        match tokio::time::timeout(Duration::from_secs(15), c.screenshot()).await {
            Ok(png) => {
                std::fs::write(dir.join(format!("{name}.png")), png.expect("screenshot")).unwrap();
                return;
            }
            Err(_) => eprintln!("desktop: screenshot {name}: no paint in 15 s (try {attempt})"),
        }
    }
    panic!("screenshot {name}: the window never painted");
}

/// GET / on the host's port: the body, or None if the connection is refused or says nothing.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

/// Invokes a command as the UI does, without waiting for it (for the tray's verbs, which
/// WebDriver cannot click; Quit never answers).
async fn invoke(c: &Client, cmd: &str, args: serde_json::Value) {
    c.execute(
        "window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1]); return true;",
        vec![cmd.into(), args],
    )
    .await
    .unwrap_or_else(|e| panic!("invoke {cmd}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_app_pulls_runs_publishes_logs_and_stops_by_clicking() {
    let home = TestHome::new();
    let reg = registry::Registry::start();
    reg.push(
        "library/busybox",
        "latest",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    std::fs::write(
        home.path().join("settings.json"),
        serde_json::json!({ "registry-mirrors": [format!("http://{}", reg.host())] }).to_string(),
    )
    .unwrap();
    let session = desktop::start(home.path()).await;
    let c = &session.client;

    // Opening the app starts Berth: the header shows at once, and says so once the VM runs.
    wait_for(
        c,
        "[data-testid=engine-state]",
        None,
        |t| !t.is_empty(),
        Duration::from_secs(60),
    )
    .await;
    wait_for(
        c,
        "[data-testid=engine-state]",
        None,
        |t| t == "Running",
        LIMIT,
    )
    .await;
    let socket = home.paths().docker_socket();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the Docker socket is private");
    screenshot(c, "containers-empty").await;

    // Pull by clicking, with progress.
    click(c, "[data-testid=nav-images]").await;
    type_into(c, "[data-testid=pull-ref]", "busybox").await;
    click(c, "[data-testid=pull-button]").await;
    wait_for(
        c,
        "[data-testid=pull-layer]",
        None,
        |t| !t.is_empty(),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=pull-done]",
        None,
        |t| t == "Pulled busybox",
        LIMIT,
    )
    .await;
    let overall = wait_for(
        c,
        "[data-testid=pull-overall]",
        Some("data-value"),
        |v| !v.is_empty(),
        LIMIT,
    )
    .await;
    assert_eq!(overall, "1.000", "the overall bar ends full");
    wait_for(
        c,
        "[data-testid=image-row]",
        Some("data-tags"),
        |t| t.contains("busybox:latest"),
        LIMIT,
    )
    .await;
    screenshot(c, "images").await;

    // Run it with a published port; the page answers on the host.
    let port = free_port();
    click(c, "[data-testid='run-busybox:latest']").await;
    type_into(c, "[data-testid=run-name]", "web").await;
    type_into(c, "[data-testid=run-ports]", &format!("{port}:80")).await;
    type_into(
        c,
        "[data-testid=run-command]",
        "echo web-started; mkdir -p /www && echo hello-from-the-desktop > /www/index.html && exec httpd -f -p 80 -h /www",
    )
    .await;
    click(c, "[data-testid=run-submit]").await;
    wait_gone(c, "[data-testid=run-form]").await;
    click(c, "[data-testid=nav-containers]").await;
    wait_for(
        c,
        "[data-testid=container-row]",
        Some("data-state"),
        |s| s == "running",
        LIMIT,
    )
    .await;
    let served = |want: bool| {
        let deadline = Instant::now() + LIMIT;
        loop {
            let body = http_get(port);
            if body
                .as_deref()
                .is_some_and(|b| b.contains("hello-from-the-desktop"))
                == want
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "port {port}: wanted served={want}, got {body:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    served(true);

    // The port's switch: off refuses, on serves again.
    let toggle = format!("[data-testid=port-toggle-web-{port}]");
    click(c, &toggle).await;
    wait_for(c, &toggle, Some("data-enabled"), |v| v == "false", LIMIT).await;
    let deadline = Instant::now() + LIMIT;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {port} still listens after switching off"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    click(c, &toggle).await;
    wait_for(c, &toggle, Some("data-enabled"), |v| v == "true", LIMIT).await;
    served(true);
    screenshot(c, "containers").await;

    // The log shows the container's output.
    click(c, "[data-testid=open-web]").await;
    wait_for(
        c,
        "[data-testid=logs]",
        None,
        |t| t.contains("web-started"),
        LIMIT,
    )
    .await;
    screenshot(c, "logs").await;
    // A terminal into the container: a typed command's output shows.
    click(c, "[data-testid=tab-terminal]").await;
    let input = c
        .wait()
        .at_most(LIMIT)
        .for_element(Locator::Css(
            "[data-testid=terminal] .xterm-helper-textarea",
        ))
        .await
        .expect("the terminal's input");
    // Typed only once the shell has drawn its prompt.
    wait_for(
        c,
        "[data-testid=terminal] .xterm-rows",
        None,
        |t| t.contains('#'),
        LIMIT,
    )
    .await;
    input
        .send_keys("echo $((6*7))-from-the-terminal\u{E007}")
        .await
        .unwrap();
    wait_for(
        c,
        "[data-testid=terminal] .xterm-rows",
        None,
        |t| t.contains("42-from-the-terminal"),
        LIMIT,
    )
    .await;
    screenshot(c, "terminal").await;

    // Live stats: the container's memory and processes, and the bytes the HTTP fetches moved.
    click(c, "[data-testid=tab-stats]").await;
    wait_for(
        c,
        "[data-testid=stats-mem]",
        None,
        |t| t.contains("iB / ") && !t.starts_with("0B"),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=stats-pids]",
        None,
        |t| t.parse::<u32>().is_ok_and(|n| n >= 1),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=stats-net]",
        None,
        |t| !t.starts_with("0B"),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=chart-mem] canvas",
        Some("width"),
        |w| w.parse::<u32>().is_ok_and(|w| w > 0),
        LIMIT,
    )
    .await;
    screenshot(c, "stats").await;
    click(c, "[data-testid=detail-close]").await;
    wait_for(
        c,
        "[data-testid=cpu-web]",
        None,
        |t| t.ends_with('%'),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=mem-web]",
        None,
        |t| t.ends_with("iB"),
        LIMIT,
    )
    .await;

    // Pause and resume.
    click(c, "[data-testid=pause-web]").await;
    wait_for(
        c,
        "[data-testid=container-row]",
        Some("data-state"),
        |s| s == "paused",
        LIMIT,
    )
    .await;
    click(c, "[data-testid=resume-web]").await;
    wait_for(
        c,
        "[data-testid=container-row]",
        Some("data-state"),
        |s| s == "running",
        LIMIT,
    )
    .await;

    // Stop, then delete (with confirmation).
    click(c, "[data-testid=stop-web]").await;
    wait_for(
        c,
        "[data-testid=container-row]",
        Some("data-state"),
        |s| s == "exited",
        LIMIT,
    )
    .await;
    click(c, "[data-testid=delete-web]").await;
    click(c, "[data-testid=confirm-yes]").await;
    wait_gone(c, "[data-testid=confirm-yes]").await;
    wait_for(
        c,
        "[data-testid=containers-empty]",
        None,
        |t| !t.is_empty(),
        LIMIT,
    )
    .await;

    // Networks: create one with a subnet, see it in inspect, cancel a delete with Escape, then
    // delete it.
    click(c, "[data-testid=nav-networks]").await;
    wait_for(
        c,
        "[data-testid=network-row]",
        Some("data-name"),
        |n| n == "bridge",
        LIMIT,
    )
    .await;
    type_into(c, "[data-testid=network-name]", "e2e-net").await;
    type_into(c, "[data-testid=network-subnet]", "10.77.0.0/24").await;
    click(c, "[data-testid=network-create]").await;
    wait_for(
        c,
        "[data-testid=network-row]",
        Some("data-name"),
        |n| n == "e2e-net",
        LIMIT,
    )
    .await;
    click(c, "[data-testid=network-inspect-e2e-net]").await;
    wait_for(
        c,
        "[data-testid=network-inspect]",
        None,
        |t| t.contains("10.77.0.0/24"),
        LIMIT,
    )
    .await;
    screenshot(c, "networks").await;
    click(c, "[data-testid=network-delete-e2e-net]").await;
    c.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css("[data-testid=confirm-no]"))
        .await
        .expect("the confirmation");
    c.active_element()
        .await
        .expect("the focused button")
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    wait_gone(c, "[data-testid=confirm-yes]").await;
    assert!(
        !c.find_all(Locator::Css("[data-name=e2e-net]"))
            .await
            .unwrap()
            .is_empty(),
        "Escape must cancel the delete"
    );
    click(c, "[data-testid=network-delete-e2e-net]").await;
    click(c, "[data-testid=confirm-yes]").await;
    wait_gone(c, "[data-testid=confirm-yes]").await;
    wait_gone(c, "[data-name=e2e-net]").await;

    // Volumes: create one with a label; a container using it shows and blocks the delete; once
    // the container is gone, delete it with confirmation.
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env_remove("DOCKER_CONTEXT")
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker {args:?}: {out:?}");
    };
    click(c, "[data-testid=nav-volumes]").await;
    wait_for(
        c,
        "[data-testid=volumes-empty]",
        None,
        |t| !t.is_empty(),
        LIMIT,
    )
    .await;
    type_into(c, "[data-testid=volume-name]", "e2e-vol").await;
    type_into(c, "[data-testid=volume-labels]", "tier=db").await;
    click(c, "[data-testid=volume-create]").await;
    wait_for(
        c,
        "[data-testid=volume-row]",
        Some("data-name"),
        |n| n == "e2e-vol",
        LIMIT,
    )
    .await;
    docker(&[
        "run",
        "--name",
        "vol-user",
        "-v",
        "e2e-vol:/data",
        "busybox",
        "sh",
        "-c",
        "head -c 200000 /dev/zero > /data/blob",
    ]);
    wait_for(
        c,
        "[data-testid=volume-users]",
        None,
        |t| t == "vol-user",
        LIMIT,
    )
    .await;
    let size = c
        .find(Locator::Css("[data-testid=volume-size]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        size.contains("kB") || size.contains("KB"),
        "the 200 kB blob shows: {size}"
    );
    let delete = c
        .find(Locator::Css("[data-testid=volume-delete-e2e-vol]"))
        .await
        .unwrap();
    assert!(
        delete.attr("disabled").await.unwrap().is_some(),
        "a volume in use cannot be deleted"
    );
    click(c, "[data-testid=volume-inspect-e2e-vol]").await;
    wait_for(
        c,
        "[data-testid=volume-inspect]",
        None,
        |t| t.contains("\"tier\": \"db\""),
        LIMIT,
    )
    .await;
    screenshot(c, "volumes").await;
    docker(&["rm", "vol-user"]);
    wait_for(c, "[data-testid=volume-users]", None, |t| t == "–", LIMIT).await;
    click(c, "[data-testid=volume-delete-e2e-vol]").await;
    click(c, "[data-testid=confirm-yes]").await;
    wait_gone(c, "[data-testid=confirm-yes]").await;
    wait_gone(c, "[data-name=e2e-vol]").await;

    // Settings: a change is written to settings.json, and the app says the VM must restart.
    click(c, "[data-testid=nav-settings]").await;
    type_into(c, "[data-testid=settings-memory]", "1536").await;
    click(c, "[data-testid=settings-save]").await;
    wait_for(
        c,
        "[data-testid=confirm-yes]",
        None,
        |t| t == "Restart",
        LIMIT,
    )
    .await;
    screenshot(c, "settings").await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("settings.json")).unwrap()).unwrap();
    assert_eq!(saved["memory-mib"], 1536, "{saved}");
    assert_eq!(
        saved["registry-mirrors"][0],
        format!("http://{}", reg.host())
    );
    click(c, "[data-testid=confirm-no]").await;
    wait_gone(c, "[data-testid=confirm-no]").await;

    // Start at login: the switch writes the session's autostart entry, and removes it.
    let entry = home.path().join("config/autostart/berth.desktop");
    click(c, "[data-testid=settings-login]").await;
    let deadline = Instant::now() + LIMIT;
    while !entry.exists() {
        assert!(Instant::now() < deadline, "no {}", entry.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(
        text.contains(&format!(
            "Exec=\"{}\"",
            desktop::desktop_bin().canonicalize().unwrap().display()
        )),
        "{text}"
    );
    click(c, "[data-testid=settings-login]").await;
    let deadline = Instant::now() + LIMIT;
    while entry.exists() {
        assert!(Instant::now() < deadline, "{} stays", entry.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Troubleshoot: the doctor's checks and the VM's serial log.
    click(c, "[data-testid=nav-troubleshoot]").await;
    wait_for(
        c,
        "[data-testid=doctor-summary]",
        None,
        |t| t.contains("Berth 0."),
        LIMIT,
    )
    .await;
    wait_for(
        c,
        "[data-testid=serial-log]",
        None,
        |t| t.contains("berth-init"),
        LIMIT,
    )
    .await;
    screenshot(c, "troubleshoot").await;
    click(c, "[data-testid=nav-containers]").await;

    // The tray's Stop and Start, through the command its menu items call.
    invoke(c, "tray_action", serde_json::json!({ "item": "stop" })).await;
    wait_for(
        c,
        "[data-testid=engine-state]",
        None,
        |t| t == "Stopped",
        LIMIT,
    )
    .await;
    screenshot(c, "stopped").await;
    invoke(c, "tray_action", serde_json::json!({ "item": "start" })).await;
    wait_for(
        c,
        "[data-testid=engine-state]",
        None,
        |t| t == "Running",
        LIMIT,
    )
    .await;

    // Quit from the tray: the VM goes down and the socket with it.
    invoke(c, "tray_action", serde_json::json!({ "item": "quit" })).await;
    let deadline = Instant::now() + LIMIT;
    while socket.exists() {
        assert!(Instant::now() < deadline, "Quit left the engine running");
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = session.client.clone().close().await;
}
