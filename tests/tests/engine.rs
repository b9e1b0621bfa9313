//! The engine process itself: `berth context` makes the plain `docker` command reach it, and
//! SIGTERM stops containers and the VM cleanly, after which a new engine on the same home finds
//! every image and stopped container again (the agent, not the engine, keeps them).

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::registry::{Registry, busybox_config, busybox_layers};
use berth_tests::{berth_bin, run_with_limit, spawn_engine};

const LIMIT: Duration = Duration::from_secs(180);

/// `docker` with only the docker config dir set: the context decides where it goes.
fn docker(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT");
    run_with_limit(cmd, LIMIT)
}

fn ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = docker(config, args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn context_reaches_the_engine_and_state_survives_an_engine_restart() {
    let reg = Registry::start();
    reg.push(
        "library/busybox",
        "latest",
        &busybox_layers(),
        busybox_config(),
    );
    let home = tempfile::Builder::new()
        .prefix("berth-r")
        .tempdir_in("/tmp")
        .unwrap();
    let config = home.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let (mut engine, socket) = spawn_engine(home.path(), &reg.host());

    let mut ctx = Command::new(berth_bin());
    ctx.arg("context")
        .env("BERTH_HOME", home.path())
        .env("DOCKER_CONFIG", &config);
    let out = run_with_limit(ctx, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contexts = ok(
        &config,
        &[
            "context",
            "ls",
            "--format",
            "{{.Name}} {{.Current}} {{.DockerEndpoint}}",
        ],
    );
    assert!(
        contexts.contains(&format!("berth true unix://{}", socket.display())),
        "{contexts}"
    );

    ok(&config, &["pull", "busybox"]);
    let run = docker(
        &config,
        &[
            "run",
            "--name",
            "kept",
            "busybox",
            "sh",
            "-c",
            "echo kept-output; exit 6",
        ],
    );
    assert_eq!(run.status.code(), Some(6));
    ok(
        &config,
        &[
            "run",
            "-d",
            "--name",
            "running",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo trapping; while true; do sleep 1; done",
        ],
    );
    // The signal must find the trap in place.
    let start = Instant::now();
    while !ok(&config, &["logs", "running"]).contains("trapping") {
        assert!(
            start.elapsed() < LIMIT,
            "the container never started its loop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM: the running container is stopped (not killed by the VM going away), then the
    // VM, then the engine exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engine.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = engine.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < LIMIT, "engine did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "engine exit: {status}");
    let first_serial =
        std::fs::read_to_string(home.path().join("run/serial.log")).unwrap_or_default();
    let out = docker(&config, &["ps"]);
    assert!(
        !out.status.success(),
        "nothing serves the socket after the engine stopped"
    );

    let (_engine, _) = spawn_engine(home.path(), &reg.host());
    let images = ok(&config, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let ps = ok(&config, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.lines().any(|l| l.starts_with("kept Exited (6)")), "{ps}");
    // Stopped by the engine's shutdown with its stop signal, not killed with the VM.
    assert!(
        ps.lines().any(|l| l.starts_with("running Exited (0)")),
        "{ps}\nengine:\n{}\nserial:\n{}",
        std::fs::read_to_string(home.path().join("engine.out")).unwrap_or_default(),
        first_serial
    );
    assert!(ok(&config, &["logs", "running"]).contains("got TERM"));
    assert_eq!(ok(&config, &["logs", "kept"]), "kept-output\n");
    let again = docker(&config, &["start", "-a", "kept"]);
    assert_eq!(again.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept-output"));
}
