//! The docker CLI's everyday tools against Berth: terminals (`run -it`, `exec -it`, resize)
//! driven through a real pseudo-terminal, `top`, `cp` both ways, `export`, `events`,
//! `system df`, `image prune` and `login` against a registry that asks for credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_tests::registry::{Registry, busybox_config, busybox_layers};
use berth_tests::{SharedEngine, shared_engine};

const LIMIT: Duration = Duration::from_secs(120);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn run_it_gets_the_users_terminal_size_and_follows_resizes() {
    let e = engine();
    let mut t = e.docker_pty(
        &["run", "-it", "--rm", "--name", "tty-run", "busybox", "sh"],
        40,
        132,
    );
    t.expect("# ", LIMIT);
    t.send(b"stty size; tty\r");
    t.expect("40 132", LIMIT);
    t.expect("/dev/pts/", LIMIT);
    // The docker CLI sends the new size on SIGWINCH; keep asking until it lands.
    t.resize(50, 100);
    let start = std::time::Instant::now();
    while !t.output().contains("50 100") {
        assert!(
            start.elapsed() < LIMIT,
            "resize never reached the container:\n{}",
            t.output()
        );
        t.send(b"stty size\r");
        std::thread::sleep(Duration::from_millis(500));
    }
    t.send(b"exit 5\r");
    assert_eq!(t.wait(LIMIT), Some(5), "{}", t.output());
}

#[test]
fn exec_it_runs_on_a_terminal_and_without_t_on_pipes() {
    let e = engine();
    e.docker_ok(&["run", "-d", "--name", "tty-exec", "busybox", "sleep", "300"]);
    let mut t = e.docker_pty(
        &[
            "exec",
            "-it",
            "tty-exec",
            "sh",
            "-c",
            "stty size; tty; read line; echo typed:$line; exit 7",
        ],
        30,
        90,
    );
    t.expect("30 90", LIMIT);
    t.expect("/dev/pts/", LIMIT);
    t.send(b"hello\r");
    t.expect("typed:hello", LIMIT);
    assert_eq!(t.wait(LIMIT), Some(7), "{}", t.output());
    let out = e.docker(&["exec", "tty-exec", "tty"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("not a tty"),
        "{}",
        text(&out.stdout)
    );
    e.docker_ok(&["rm", "-f", "tty-exec"]);
}

#[test]
fn top_lists_the_containers_processes() {
    let e = engine();
    e.docker_ok(&["run", "-d", "--name", "top-box", "busybox", "sleep", "321"]);
    e.docker_ok(&["exec", "-d", "top-box", "sleep", "654"]);
    let start = std::time::Instant::now();
    let out = loop {
        let out = e.docker_ok(&["top", "top-box"]);
        if out.contains("sleep 654") || start.elapsed() > LIMIT {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let header = out.lines().next().unwrap_or("");
    for col in ["UID", "PID", "PPID", "CMD"] {
        assert!(header.contains(col), "{out}");
    }
    assert!(out.contains("sleep 321"), "{out}");
    assert!(out.contains("sleep 654"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("root")), "{out}");
    e.docker_ok(&["stop", "-t", "0", "top-box"]);
    let out = e.docker(&["top", "top-box"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    e.docker_ok(&["rm", "top-box"]);
}

#[test]
fn cp_copies_both_ways_inside_the_container_and_export_tars_it() {
    let e = engine();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    std::fs::write(h.join("a.txt"), b"from the host\n").unwrap();
    std::fs::create_dir_all(h.join("tree/sub")).unwrap();
    std::fs::write(h.join("tree/sub/b.txt"), b"deep\n").unwrap();
    e.docker_ok(&["run", "-d", "--name", "cp-box", "busybox", "sleep", "300"]);

    let hs = |p: &str| h.join(p).display().to_string();
    e.docker_ok(&["cp", &hs("a.txt"), "cp-box:/tmp/"]);
    e.docker_ok(&["cp", &hs("tree"), "cp-box:/tmp/"]);
    assert_eq!(
        e.docker_ok(&["exec", "cp-box", "cat", "/tmp/a.txt", "/tmp/tree/sub/b.txt"]),
        "from the host\ndeep\n"
    );
    // Files copied in belong to the container's root, not the host user.
    assert_eq!(
        e.docker_ok(&["exec", "cp-box", "stat", "-c", "%u:%g", "/tmp/a.txt"]),
        "0:0\n"
    );

    e.docker_ok(&[
        "exec",
        "cp-box",
        "sh",
        "-c",
        "mkdir /out && echo made inside > /out/x && ln -s x /out/lnk && ln -s /../../../etc /tmp/up",
    ]);
    e.docker_ok(&["cp", "cp-box:/out", &hs("out")]);
    assert_eq!(std::fs::read(h.join("out/x")).unwrap(), b"made inside\n");
    assert_eq!(
        std::fs::read_link(h.join("out/lnk")).unwrap(),
        std::path::Path::new("x")
    );
    // A link pointing above the root resolves inside the container, as in the container.
    e.docker_ok(&["cp", &hs("a.txt"), "cp-box:/tmp/up/"]);
    assert_eq!(
        e.docker_ok(&["exec", "cp-box", "cat", "/etc/a.txt"]),
        "from the host\n"
    );

    let out = e.docker(&["cp", "cp-box:/nope", &hs("nope")], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Could not find the file /nope in container cp-box"),
        "{}",
        text(&out.stderr)
    );
    let out = e.docker(&["cp", &hs("a.txt"), "cp-box:/hello.txt/"], LIMIT);
    assert!(!out.status.success(), "copying into a file as a directory");

    // A container that never ran: its filesystem is there to copy from.
    e.docker_ok(&["create", "--name", "cp-created", "busybox"]);
    e.docker_ok(&["cp", "cp-created:/hello.txt", &hs("hello.txt")]);
    assert_eq!(
        std::fs::read(h.join("hello.txt")).unwrap(),
        b"hello from layer three\n"
    );

    e.docker_ok(&["export", "-o", &hs("fs.tar"), "cp-box"]);
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(h.join("fs.tar")).unwrap());
    for entry in ar.entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    for want in [
        "bin/busybox",
        "hello.txt",
        "tmp/a.txt",
        "out/x",
        "etc/passwd",
    ] {
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == want),
            "{want} not in {names:?}"
        );
    }
    e.docker_ok(&["rm", "-f", "cp-box", "cp-created"]);
}

#[test]
fn events_tell_what_happened_in_order_and_filter() {
    let e = engine();
    // The events carry the guest's clock: a margin keeps a loaded machine's skew out of the
    // window (the filter keeps other containers' events out).
    let since = format!("{:.3}", unix_now() - 5.0);
    let out = e.docker(
        &["run", "--name", "ev-box", "busybox", "sh", "-c", "exit 4"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    e.docker_ok(&["rm", "ev-box"]);
    std::thread::sleep(Duration::from_millis(500));
    let until = format!("{:.3}", unix_now() + 2.0);
    let out = e.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=ev-box",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    ]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let pos = |want: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("no {want:?} event in:\n{out}"))
    };
    let (create, start, die, destroy) = (
        pos("container create ev-box"),
        pos("container start ev-box"),
        pos("container die ev-box 4"),
        pos("container destroy ev-box"),
    );
    assert!(create < start && start < die && die < destroy, "{out}");
    let only_die = e.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=die",
        "--filter",
        "container=ev-box",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(only_die.trim(), "die", "{only_die}");

    // Live: a follower sees a container start while it listens.
    let mut follower = std::process::Command::new("docker")
        .args([
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DOCKER_CONFIG", &e.docker_config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    e.docker_ok(&["run", "--rm", "--name", "ev-live", "busybox", "true"]);
    std::thread::sleep(Duration::from_secs(1));
    follower.kill().unwrap();
    let seen = follower.wait_with_output().unwrap();
    assert!(
        text(&seen.stdout).contains("ev-live"),
        "{}",
        text(&seen.stdout)
    );
}

#[test]
fn system_df_counts_and_image_prune_removes_dangling_images() {
    let e = engine();
    let reg = e.registry();
    let mut config = busybox_config();
    let mut layers = busybox_layers();
    layers.truncate(2);
    reg.push("prune-me", "latest", &layers, config.clone());
    let first = format!("{}/prune-me:latest", reg.host());
    e.docker_ok(&["pull", &first]);
    let old_id = e
        .docker_ok(&["images", "-q", "--no-trunc", &first])
        .trim()
        .to_owned();
    // A new image under the same tag leaves the old one dangling.
    config["Env"] = serde_json::json!(["V=2"]);
    reg.push("prune-me", "latest", &layers, config);
    e.docker_ok(&["pull", &first]);
    let all = e.docker_ok(&["images", "-a", "-q", "--no-trunc"]);
    assert!(
        all.contains(&old_id),
        "the old image is dangling, not gone: {all}"
    );

    let df = e.docker_ok(&["system", "df"]);
    let images_row = df.lines().find(|l| l.starts_with("Images")).unwrap_or("");
    assert!(
        images_row
            .split_whitespace()
            .nth(1)
            .is_some_and(|n| n.parse::<u32>().unwrap_or(0) >= 2),
        "{df}"
    );
    assert!(df.lines().any(|l| l.starts_with("Containers")), "{df}");

    let out = e.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&old_id), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    let all = e.docker_ok(&["images", "-a", "-q", "--no-trunc"]);
    assert!(!all.contains(&old_id), "{all}");
    // Tagged images stay.
    assert!(!e.docker_ok(&["images", "-q", &first]).trim().is_empty());
    assert!(!e.docker_ok(&["images", "-q", "busybox"]).trim().is_empty());
    e.docker_ok(&["rmi", &first]);
}

#[test]
fn login_checks_credentials_and_pulls_use_them() {
    let e = engine();
    let open = Registry::start();
    let locked = Registry::with_auth(&open, "berth", "s3cret");
    open.push("private/app", "1", &busybox_layers(), busybox_config());
    let image = format!("{}/private/app:1", locked.host());

    let out = e.docker(&["pull", &image], LIMIT);
    assert!(!out.status.success(), "pulled without credentials");

    let out = e.docker(
        &["login", &locked.host(), "-u", "berth", "-p", "wrong"],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("401 Unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let ok = e.docker_ok(&["login", &locked.host(), "-u", "berth", "-p", "s3cret"]);
    assert!(ok.contains("Login Succeeded"), "{ok}");
    e.docker_ok(&["pull", &image]);
    assert_eq!(
        e.docker_ok(&["run", "--rm", &image, "cat", "/hello.txt"]),
        "hello from layer three\n"
    );
    e.docker_ok(&["logout", &locked.host()]);
    e.docker_ok(&["rmi", &image]);
    // A registry that asks for nothing accepts a login, as with dockerd.
    let ok = e.docker_ok(&["login", &open.host(), "-u", "anyone", "-p", "x"]);
    assert!(ok.contains("Login Succeeded"), "{ok}");
}
