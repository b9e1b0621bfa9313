//! Containers through the real docker CLI against the Berth engine and its VM: run with output
//! and exit codes, detached containers with logs, stop and rm, exec, env/workdir/user, signals,
//! restart policies, Docker's default security profile, limits, and bad input.

use std::time::{Duration, Instant};

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

/// Polls `docker inspect -f FORMAT NAME` until it prints `want`.
fn wait_inspect(e: &SharedEngine, name: &str, format: &str, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = e.docker(&["inspect", "-f", format, name], LIMIT);
        let got = text(&out.stdout).trim().to_owned();
        if got == want || start.elapsed() > limit {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_rm_prints_both_streams_and_returns_the_exit_code() {
    let e = engine();
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--name",
            "rm-test",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    // --rm: gone afterwards.
    let ps = e.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.lines().any(|l| l == "rm-test"), "{ps}");
}

#[test]
fn detached_container_logs_stop_and_rm() {
    let e = engine();
    let id = e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let ps = e.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("ticker Up"), "{ps}");
    std::thread::sleep(Duration::from_secs(2));
    let logs = e.docker_ok(&["logs", "ticker"]);
    assert!(logs.starts_with("tick 1\ntick 2\n"), "{logs}");
    let tail = e.docker_ok(&["logs", "--tail", "1", "ticker"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let stamped = e.docker_ok(&["logs", "-t", "--tail", "1", "ticker"]);
    assert!(stamped.starts_with("20"), "{stamped}");

    // PID 1 sh ignores SIGTERM: stop kills it after the timeout.
    let start = Instant::now();
    e.docker_ok(&["stop", "-t", "1", "ticker"]);
    assert!(start.elapsed() < Duration::from_secs(30));
    let state = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
        "ticker",
    ]);
    assert_eq!(state.trim(), "exited 137 false");
    // Stopping again is not an error.
    e.docker_ok(&["stop", "ticker"]);
    e.docker_ok(&["rm", "ticker"]);
    let out = e.docker(&["inspect", "ticker"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn logs_follow_ends_when_the_container_exits() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "follow",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.3; done",
    ]);
    let out = e.docker(&["logs", "-f", "follow"], Duration::from_secs(60));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "line 1\nline 2\nline 3\n");
    e.docker_ok(&["rm", "follow"]);
}

#[test]
fn exec_runs_in_the_container_with_its_exit_code() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "exec-target",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = e.docker(
        &[
            "exec",
            "exec-target",
            "sh",
            "-c",
            "echo in exec $FROM_RUN; echo warn >&2; exit 5",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout), "in exec 1\n");
    assert_eq!(text(&out.stderr), "warn\n");
    let out = e.docker_ok(&[
        "exec",
        "-u",
        "1000",
        "-w",
        "/tmp",
        "exec-target",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out, "1000\n/tmp\n");
    // The exec's process runs in the container's PID namespace.
    let ps = e.docker_ok(&["exec", "exec-target", "ps", "-o", "pid,comm"]);
    assert!(ps.lines().any(|l| l.trim() == "1 sleep"), "{ps}");
    // Input reaches the exec'd process; its end is the process's EOF.
    let out = e.docker_with_input(
        &["exec", "-i", "exec-target", "sh", "-c", "cat; echo eof"],
        b"typed in\n",
        LIMIT,
    );
    assert_eq!(
        text(&out.stdout),
        "typed in\neof\n",
        "{}",
        text(&out.stderr)
    );
    e.docker_ok(&["rm", "-f", "exec-target"]);
}

#[test]
fn env_workdir_and_user_are_applied() {
    let e = engine();
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hello",
        "-w",
        "/tmp",
        "-u",
        "app",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u; id -g; id -G; hostname | wc -c",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..4], ["hello", "/tmp", "1000", "1000"], "{out}");
    assert!(
        lines[4].split_whitespace().any(|g| g == "2000"),
        "supplementary group: {out}"
    );
    // The hostname is the short container ID.
    assert_eq!(lines[5].trim(), "13");
}

#[test]
fn kill_sends_the_signal_the_user_names() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got usr1; exit 7' USR1; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    e.docker_ok(&["kill", "-s", "USR1", "trapper"]);
    assert_eq!(
        wait_inspect(
            e,
            "trapper",
            "{{.State.ExitCode}}",
            "7",
            Duration::from_secs(30)
        ),
        "7"
    );
    assert!(e.docker_ok(&["logs", "trapper"]).contains("got usr1"));
    let out = e.docker(&["kill", "trapper"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    e.docker_ok(&["rm", "trapper"]);
}

#[test]
fn on_failure_restart_policy_retries_then_gives_up() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "crasher",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    // The agent counts a restart just before it starts the container again, so "2 exited" can
    // show for a moment before the third run: the end is "2 exited" with three runs logged.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = e.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "crasher",
        ]);
        let runs = e.docker_ok(&["logs", "crasher"]).matches("run").count();
        if state.trim() == "2 exited" && runs == 3 {
            break;
        }
        assert!(runs <= 3, "on-failure:2 ran {runs} times");
        assert!(
            Instant::now() < deadline,
            "still {state:?} after {runs} runs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        e.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "crasher"
        ])
        .trim(),
        "2 exited",
        "no third restart"
    );
    e.docker_ok(&["rm", "crasher"]);
}

#[test]
fn containers_get_dockers_default_security_profile() {
    let e = engine();
    // Docker's 14 default capabilities.
    let caps = e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(
        caps.split_whitespace().nth(1),
        Some("00000000a80425fb"),
        "{caps}"
    );
    // The default seccomp profile refuses unshare and mount; masked paths are hidden.
    let out = e.docker(
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "mount -t tmpfs none /mnt",
        ],
        LIMIT,
    );
    assert!(!out.status.success());
    let kcore = e.docker_ok(&["run", "--rm", "busybox", "sh", "-c", "wc -c < /proc/kcore"]);
    assert_eq!(kcore.trim(), "0");
    let seccomp = e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "Seccomp:",
        "/proc/self/status",
    ]);
    assert!(seccomp.contains('2'), "{seccomp}");
    // --privileged lifts it all.
    let caps = e.docker_ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_ne!(caps.split_whitespace().nth(1), Some("00000000a80425fb"));
    // cap-drop works.
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--cap-drop",
            "CHOWN",
            "busybox",
            "chown",
            "1000",
            "/tmp",
        ],
        LIMIT,
    );
    assert!(!out.status.success());
}

#[test]
fn memory_limit_oom_kills_and_pids_limit_holds() {
    let e = engine();
    let out = e.docker(
        &[
            "run",
            "--name",
            "oom",
            "-m",
            "32m",
            "--memory-swap",
            "32m",
            "busybox",
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ],
        Duration::from_secs(180),
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let state = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "oom",
    ]);
    assert_eq!(state.trim(), "true 137");
    e.docker_ok(&["rm", "oom"]);

    let max = e.docker_ok(&[
        "run",
        "--rm",
        "--pids-limit",
        "8",
        "busybox",
        "cat",
        "/sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(max.trim(), "8");
    // Forking past the limit fails inside the container.
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--pids-limit",
            "8",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 3 & done; wait",
        ],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("fork"), "{}", text(&out.stderr));
}

#[test]
fn bad_input_gets_dockerds_errors() {
    let e = engine();
    let out = e.docker(&["start", "no-such-container"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No such container: no-such-container"),
        "{}",
        text(&out.stderr)
    );

    let out = e.docker(&["run", "--rm", "busybox", "no-such-command"], LIMIT);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{}",
        text(&out.stderr)
    );

    let out = e.docker(
        &["run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NOT_A_CAP"),
        "{}",
        text(&out.stderr)
    );

    e.docker_ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = e.docker(&["create", "--name", "dup", "busybox", "true"], LIMIT);
    assert!(
        text(&out.stderr).contains("is already in use"),
        "{}",
        text(&out.stderr)
    );
    e.docker_ok(&["rm", "dup"]);

    let (code, body) = e.api(
        "POST",
        "/v1.47/containers/create",
        Some(serde_json::json!("not an object")),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = e.api("GET", "/v1.47/containers/nope/json", None);
    assert_eq!(code, 404);
    assert_eq!(body["message"], "No such container: nope");
    let (code, _) = e.api("POST", "/v1.47/containers/nope/wait?condition=bogus", None);
    assert_eq!(code, 400);
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let e = engine();
    let reg = e.registry();
    let mut layers = berth_tests::registry::busybox_layers();
    layers.push(
        berth_tests::registry::Layer::new()
            .file("used", 0o644, b"used")
            .build(),
    );
    reg.push(
        "test/used",
        "v1",
        &layers,
        berth_tests::registry::busybox_config(),
    );
    let name = format!("{}/test/used:v1", reg.host());
    e.docker_ok(&["pull", &name]);
    e.docker_ok(&["create", "--name", "user-of-image", &name, "true"]);
    let out = e.docker(&["rmi", &name], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("must force") && err.contains("is using its referenced image"),
        "{err}"
    );
    // Forced: the name goes, the image stays for the container.
    let out = e.docker_ok(&["rmi", "-f", &name]);
    assert!(out.contains("Untagged"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    e.docker_ok(&["start", "-a", "user-of-image"]);
    e.docker_ok(&["rm", "user-of-image"]);
}

#[test]
fn containers_survive_an_agent_restart() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "busybox",
        "sh",
        "-c",
        "while true; do echo alive; sleep 0.2; done",
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ctx = rt.enter();
    let agent =
        berth_engine::agent::AgentClient::new(e.home.join("run/vm.vsock"), Duration::from_secs(10));
    let before = rt.block_on(agent.info()).unwrap();
    rt.block_on(
        agent
            .debug()
            .crash(berth_agent_proto::v1::CrashRequest { signal: 0 }),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(info) = rt.block_on(agent.info())
            && info.agent_starts > before.agent_starts
        {
            break;
        }
        assert!(Instant::now() < deadline, "the agent did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The shim kept the container: it is still up, still logging, and stops as usual.
    let ps = e.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("survivor Up"), "{ps}");
    let n1 = e.docker_ok(&["logs", "survivor"]).lines().count();
    std::thread::sleep(Duration::from_secs(1));
    let n2 = e.docker_ok(&["logs", "survivor"]).lines().count();
    assert!(n2 > n1, "{n1} then {n2}");
    e.docker_ok(&["rm", "-f", "survivor"]);
}

#[test]
fn run_interactive_feeds_stdin_and_ends_on_eof() {
    let e = engine();
    let out = e.docker_with_input(
        &[
            "run",
            "-i",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "read first; echo got $first; cat; echo done",
        ],
        b"hello\nmore lines\nlast\n",
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got hello\nmore lines\nlast\ndone\n");
}

#[test]
fn images_and_containers_survive_a_vm_restart() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "--name",
        "persisted",
        "busybox",
        "echo",
        "written before the restart",
    ]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "always-up",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "600",
    ]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "graceful",
        "busybox",
        "sh",
        "-c",
        "trap 'echo stopped cleanly; exit 0' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let (code, body) = e.api("POST", "/berth/v1/vm/stop", None);
    assert_eq!(code, 204, "{body}");
    let (code, body) = e.api("POST", "/berth/v1/vm/start", None);
    assert_eq!(code, 200, "{body}");
    let images = e.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == "busybox:latest"), "{images}");
    let state = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "persisted",
    ]);
    assert_eq!(state.trim(), "exited 0");
    assert_eq!(
        e.docker_ok(&["logs", "persisted"]),
        "written before the restart\n"
    );
    // The restart policy brings the other one back up in the new VM.
    assert_eq!(
        wait_inspect(
            e,
            "always-up",
            "{{.State.Status}}",
            "running",
            Duration::from_secs(60)
        ),
        "running"
    );
    // The VM's shutdown stopped containers with their stop signal first.
    let all = e.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(all.contains("graceful Exited (0)"), "{all}");
    let graceful = e.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "graceful"]);
    assert_eq!(graceful.trim(), "0");
    assert!(
        e.docker_ok(&["logs", "graceful"])
            .contains("stopped cleanly")
    );
    e.docker_ok(&["start", "-a", "persisted"]);
    e.docker_ok(&["rm", "-f", "persisted", "always-up", "graceful"]);
}

#[test]
fn stats_report_the_cgroup_counters() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "stats-target",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let out = e.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.MemUsage}}|{{.PIDs}}|{{.CPUPerc}}",
        "stats-target",
    ]);
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields[0], "stats-target", "{out}");
    assert!(fields[1].ends_with("/ 64MiB"), "{out}");
    assert_eq!(fields[2], "1", "{out}");
    let cpu: f64 = fields[3].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 10.0, "a busy loop shows CPU use: {out}");
    e.docker_ok(&["rm", "-f", "stats-target"]);
}

#[test]
fn rename_and_prune() {
    let e = engine();
    e.docker_ok(&["create", "--name", "old-name", "busybox", "true"]);
    e.docker_ok(&["rename", "old-name", "new-name"]);
    let names = e.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        names.lines().any(|l| l == "new-name") && !names.contains("old-name"),
        "{names}"
    );
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keeps-running",
        "busybox",
        "sleep",
        "300",
    ]);
    let out = e.docker_ok(&["container", "prune", "-f"]);
    assert!(out.contains("Deleted Containers"), "{out}");
    let names = e.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.contains("new-name"), "{names}");
    assert!(names.contains("keeps-running"), "{names}");
    e.docker_ok(&["rm", "-f", "keeps-running"]);
}
