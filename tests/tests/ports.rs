//! Published ports: `docker run -p` makes a container's TCP port reachable on the host while it
//! runs, on 127.0.0.1 unless the user names an address; a host port in use fails the start
//! with dockerd's message and leaves nothing running; `docker port` and `ps` show the binding.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_tests::registry::free_port;
use berth_tests::{SharedEngine, shared_engine};

const LIMIT: Duration = Duration::from_secs(120);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

/// GET / over a fresh connection; None when nothing answers.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

/// A busybox httpd serving `body` on port 80.
fn web(e: &SharedEngine, name: &str, publish: &str, body: &str) -> std::process::Output {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    e.docker(
        &[
            "run", "-d", "--name", name, "-p", publish, "busybox", "sh", "-c", &script,
        ],
        LIMIT,
    )
}

#[test]
fn a_published_port_serves_while_the_container_runs() {
    let e = engine();
    let port = free_port();
    let out = web(e, "web-1", &format!("{port}:80"), "served-by-berth");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    let page = loop {
        if let Some(p) = http_get(port).filter(|p| p.contains("served-by-berth")) {
            break p;
        }
        assert!(start.elapsed() < LIMIT, "nothing served on {port}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    // Several connections at once.
    let pages: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || http_get(port)))
        .collect();
    for p in pages {
        assert!(
            p.join()
                .unwrap()
                .unwrap_or_default()
                .contains("served-by-berth")
        );
    }
    // Secure default: loopback only.
    assert_eq!(
        e.docker_ok(&["port", "web-1", "80/tcp"]).trim(),
        format!("127.0.0.1:{port}")
    );
    let ps = e.docker_ok(&["ps", "--filter", "name=web-1", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // Stopped: the host port closes.
    e.docker_ok(&["stop", "-t", "1", "web-1"]);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(start.elapsed() < LIMIT, "port {port} still open after stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Started again: served again.
    e.docker_ok(&["start", "web-1"]);
    let start = Instant::now();
    while !http_get(port)
        .unwrap_or_default()
        .contains("served-by-berth")
    {
        assert!(start.elapsed() < LIMIT, "not served after restart");
        std::thread::sleep(Duration::from_millis(200));
    }
    e.docker_ok(&["rm", "-f", "web-1"]);
}

#[test]
fn a_host_port_in_use_fails_the_start_and_nothing_runs() {
    let e = engine();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = web(e, "web-busy", &format!("{port}:80"), "x");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    let state = e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "web-busy"]);
    assert_eq!(state.trim(), "created");
    e.docker_ok(&["rm", "web-busy"]);
}

#[test]
fn publish_all_gives_exposed_ports_free_host_ports() {
    let e = engine();
    let script =
        "mkdir -p /www && echo random-port > /www/index.html && exec httpd -f -p 80 -h /www";
    e.docker_ok(&[
        "run", "-d", "--name", "web-all", "-P", "--expose", "80", "busybox", "sh", "-c", script,
    ]);
    let bound = e.docker_ok(&["port", "web-all", "80/tcp"]);
    let port: u16 = bound
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a loopback binding: {bound}"));
    let start = Instant::now();
    while !http_get(port).unwrap_or_default().contains("random-port") {
        assert!(start.elapsed() < LIMIT, "nothing served on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    e.docker_ok(&["rm", "-f", "web-all"]);
}

/// `berth port` against the shared engine.
fn berth_port(e: &SharedEngine, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(berth_tests::berth_bin());
    cmd.arg("port")
        .args(args)
        .env("BERTH_HOME", &e.home)
        .env_remove("BERTH_RUNTIME_DIR");
    berth_tests::run_with_limit(cmd, LIMIT)
}

#[test]
fn berth_port_switches_a_listener_off_and_on_without_touching_the_container() {
    let e = engine();
    let port = free_port();
    let out = web(e, "web-toggle", &format!("{port}:80"), "toggled");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while !http_get(port).unwrap_or_default().contains("toggled") {
        assert!(start.elapsed() < LIMIT, "nothing served on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let off = berth_port(e, &["off", "web-toggle", "80"]);
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
    let list = berth_port(e, &["list", "--json"]);
    let views: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let view = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web-toggle")
        .cloned()
        .unwrap_or_default();
    assert_eq!(view["enabled"], false, "{views}");
    assert_eq!(view["host_port"], port, "{views}");
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.Running}}", "web-toggle"])
            .trim(),
        "true"
    );
    let on = berth_port(e, &["on", "web-toggle", "80/tcp"]);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert!(http_get(port).unwrap_or_default().contains("toggled"));
    let missing = berth_port(e, &["off", "web-toggle", "81"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("publishes no port 81/tcp"));
    e.docker_ok(&["rm", "-f", "web-toggle"]);
}

#[test]
fn port_forward_reaches_a_port_never_published_until_interrupted() {
    let e = engine();
    let script =
        "mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 8000 -h /www";
    e.docker_ok(&[
        "run", "-d", "--name", "web-fwd", "busybox", "sh", "-c", script,
    ]);
    let port = free_port();
    let mut fwd = std::process::Command::new(berth_tests::berth_bin())
        .args(["port-forward", "web-fwd", &format!("{port}:8000")])
        .env("BERTH_HOME", &e.home)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !http_get(port).unwrap_or_default().contains("forwarded") {
        assert!(start.elapsed() < LIMIT, "nothing forwarded on {port}");
        std::thread::sleep(Duration::from_millis(200));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fwd.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(fwd.wait().unwrap().success());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    e.docker_ok(&["rm", "-f", "web-fwd"]);
}
