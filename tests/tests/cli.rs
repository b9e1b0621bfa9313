//! The `berth` client verbs against the real engine and VM, side by side with the docker CLI on
//! the same engine: the same tables, the same exit codes, the same messages for refused
//! requests, and docker's style for bad flags and a missing engine.

use std::process::Output;
use std::time::Duration;

use berth_tests::{SharedEngine, berth_bin, registry, shared_engine};

const LIMIT: Duration = Duration::from_secs(180);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn berth_ok(e: &SharedEngine, args: &[&str]) -> String {
    let out = e.berth(args, LIMIT);
    assert!(
        out.status.success(),
        "berth {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Both clients print the same for `args`; the CREATED column can tick between the two runs,
/// so a difference is retried a few times before it fails.
fn same_as_docker(e: &SharedEngine, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..4 {
        let ours = berth_ok(e, args);
        let theirs = e.docker_ok(args);
        if ours == theirs {
            return ours;
        }
        last = (ours, theirs);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "berth {args:?} differs from docker:\n--- berth\n{}--- docker\n{}",
        last.0, last.1
    );
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn pull_images_and_ps_match_the_docker_cli() {
    let e = engine();
    e.registry().push(
        "library/busybox",
        "cli",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let pulled = berth_ok(e, &["pull", "busybox:cli"]);
    assert!(
        pulled.contains("Status: ") && pulled.ends_with("docker.io/library/busybox:cli\n"),
        "{pulled}"
    );
    let images = same_as_docker(e, &["images"]);
    assert!(
        images.starts_with("REPOSITORY ") && images.contains(" TAG "),
        "{images}"
    );
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("busybox ") && l.contains(" cli ")),
        "{images}"
    );
    same_as_docker(e, &["images", "-q"]);
    same_as_docker(
        e,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"],
    );

    let id = berth_ok(
        e,
        &[
            "run",
            "-d",
            "--name",
            "cli-web",
            "-p",
            "127.0.0.1::80",
            "-e",
            "MODE=cli",
            "busybox",
            "sh",
            "-c",
            "echo started; exec sleep 300",
        ],
    );
    assert!(
        id.trim().len() == 64 && id.trim().chars().all(|c| c.is_ascii_hexdigit()),
        "run -d prints the full ID: {id}"
    );
    berth_ok(e, &["run", "--name", "cli-done", "busybox", "true"]);
    let ps = same_as_docker(e, &["ps"]);
    assert!(ps.starts_with("CONTAINER ID   IMAGE "), "{ps}");
    assert!(
        ps.contains("\"sh -c echo started;…\"") && ps.contains("127.0.0.1:"),
        "{ps}"
    );
    same_as_docker(e, &["ps", "-a"]);
    same_as_docker(e, &["ps", "-a", "-q"]);
    same_as_docker(e, &["ps", "-a", "--no-trunc"]);
    same_as_docker(
        e,
        &[
            "ps",
            "-a",
            "--filter",
            "name=cli-",
            "--format",
            "{{.Names}}\\t{{.State}}",
        ],
    );
    same_as_docker(e, &["ps", "--format", "table {{.Names}}\\t{{.Ports}}"]);

    let logs = berth_ok(e, &["logs", "cli-web"]);
    assert_eq!(logs, "started\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&berth_ok(e, &["inspect", "cli-web"])).unwrap();
    assert_eq!(inspect[0]["Name"], "/cli-web");
    assert!(
        inspect[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "MODE=cli"),
        "{inspect}"
    );
    assert_eq!(berth_ok(e, &["stop", "-t", "1", "cli-web"]), "cli-web\n");
    assert_eq!(
        berth_ok(e, &["rm", "cli-web", "cli-done"]),
        "cli-web\ncli-done\n"
    );
    let untagged = berth_ok(e, &["rmi", "busybox:cli"]);
    assert!(untagged.contains("Untagged: busybox:cli"), "{untagged}");
}

#[test]
fn run_exec_and_exit_codes_match_the_docker_cli() {
    let e = engine();
    let out = e.berth(
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        LIMIT,
    );
    assert_eq!(code(&out), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    // --rm removed it.
    assert!(
        !e.docker_ok(&["ps", "-a", "--format", "{{.Image}} {{.Command}}"])
            .contains("exit 3")
    );

    berth_ok(
        e,
        &["run", "-d", "--name", "cli-exec", "busybox", "sleep", "300"],
    );
    let out = e.berth(
        &["exec", "cli-exec", "sh", "-c", "echo in-$HOSTNAME; exit 4"],
        LIMIT,
    );
    assert_eq!(code(&out), Some(4));
    assert!(
        text(&out.stdout).starts_with("in-"),
        "{}",
        text(&out.stdout)
    );

    // A refused request: the daemon's message and exit 1, as docker prints them.
    for args in [
        &["stop", "cli-nosuch"][..],
        &["rm", "cli-nosuch"],
        &["logs", "cli-nosuch"],
    ] {
        let ours = e.berth(args, LIMIT);
        let theirs = e.docker(args, LIMIT);
        assert_eq!(code(&ours), code(&theirs), "{args:?}");
        assert_eq!(text(&ours.stderr), text(&theirs.stderr), "{args:?}");
    }
    // A command that is not in the image: 127, as docker run.
    let ours = e.berth(&["run", "--rm", "busybox", "/no/such/binary"], LIMIT);
    let theirs = e.docker(&["run", "--rm", "busybox", "/no/such/binary"], LIMIT);
    assert_eq!(code(&ours), code(&theirs), "{}", text(&ours.stderr));
    // A bad flag and a bad value: docker's message style, exit 125.
    let out = e.berth(&["run", "--bogus", "busybox", "true"], LIMIT);
    assert_eq!(code(&out), Some(125));
    assert_eq!(
        text(&out.stderr),
        "unknown flag: --bogus\nSee 'berth run --help'.\n"
    );
    let out = e.berth(&["run", "-p", "x:80", "busybox", "true"], LIMIT);
    assert_eq!(code(&out), Some(125), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("invalid hostPort: x"),
        "{}",
        text(&out.stderr)
    );
    berth_ok(e, &["rm", "-f", "cli-exec"]);
}

#[test]
fn a_missing_engine_gets_a_one_line_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let out = std::process::Command::new(berth_bin())
        .args(["-H", &format!("unix://{}", socket.display()), "ps"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("is Berth running? try `berth engine`"),
        "{err}"
    );
    let out = std::process::Command::new(berth_bin())
        .args(["-H", "ftp://nowhere", "ps"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(125), "{}", text(&out.stderr));
}

#[test]
fn run_it_is_a_terminal_that_resizes_detaches_and_exits_with_the_code() {
    let e = engine();
    let mut pty = e.berth_pty(&["run", "-it", "--rm", "busybox", "sh"], 24, 80);
    pty.expect("# ", LIMIT);
    pty.send(b"stty size\r");
    pty.expect("24 80", LIMIT);
    pty.resize(30, 100);
    // SIGWINCH reaches berth, which resizes the container's terminal.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        pty.send(b"stty size\r");
        std::thread::sleep(Duration::from_millis(500));
        if pty.output().contains("30 100") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", pty.output());
    }
    pty.send(b"exit 7\r");
    assert_eq!(pty.wait(LIMIT), Some(7), "{}", pty.output());

    // Ctrl-P Ctrl-Q leaves the container running.
    let mut pty = e.berth_pty(
        &["run", "-it", "--name", "cli-detach", "busybox", "sh"],
        24,
        80,
    );
    pty.expect("# ", LIMIT);
    pty.send(b"\x10\x11");
    assert_eq!(pty.wait(LIMIT), Some(0), "{}", pty.output());
    let state = e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "cli-detach"]);
    assert_eq!(state.trim(), "running");
    // exec -it into it: a TTY, and the exit code comes back.
    let mut pty = e.berth_pty(&["exec", "-it", "cli-detach", "sh"], 24, 80);
    pty.expect("# ", LIMIT);
    pty.send(b"tty; exit 5\r");
    pty.expect("/dev/pts/", LIMIT);
    assert_eq!(pty.wait(LIMIT), Some(5), "{}", pty.output());
    berth_ok(e, &["rm", "-f", "cli-detach"]);
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for (shell, marker) in [
        ("bash", "complete -F _berth"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let out = std::process::Command::new(berth_bin())
            .args(["completion", shell])
            .output()
            .unwrap();
        let script = text(&out.stdout);
        assert!(
            out.status.success() && script.contains(marker),
            "{shell}: {script}"
        );
        assert!(
            script.contains("ps") && script.contains("no-trunc"),
            "{shell}"
        );
    }
    let out = std::process::Command::new(berth_bin())
        .arg("man")
        .output()
        .unwrap();
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") && page.contains(".TH berth 1"),
        "{page}"
    );
    // bash accepts the script (from a file: it is longer than one argument may be).
    let script = tempfile::NamedTempFile::new().unwrap();
    let made = std::process::Command::new(berth_bin())
        .args(["completion", "bash"])
        .stdout(script.reopen().unwrap())
        .status()
        .unwrap();
    assert!(made.success());
    let bash = std::process::Command::new("bash")
        .arg("-n")
        .arg(script.path())
        .status()
        .unwrap();
    assert!(bash.success());
}

#[test]
fn contexts_made_by_either_client_serve_the_other() {
    let e = engine();
    let config = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", e.socket.display());
    let run = |program: std::path::PathBuf, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CONFIG", config.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let docker = || std::path::PathBuf::from("docker");
    run(
        berth_bin(),
        &[
            "context",
            "create",
            "from-berth",
            "--docker",
            &format!("host={host}"),
            "--description",
            "made by berth",
        ],
    );
    run(
        docker(),
        &[
            "context",
            "create",
            "from-docker",
            "--docker",
            &format!("host={host}"),
        ],
    );
    let listed = run(
        docker(),
        &["context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}"],
    );
    assert!(listed.contains(&format!("from-berth {host}")), "{listed}");
    let listed = run(berth_bin(), &["context", "ls"]);
    assert!(
        listed.contains("from-docker") && listed.contains("made by berth"),
        "{listed}"
    );
    // Each client reaches the engine through the other's context.
    run(docker(), &["--context", "from-berth", "ps"]);
    run(berth_bin(), &["--context", "from-docker", "ps"]);
    // `use` by one is the other's current context.
    run(berth_bin(), &["context", "use", "from-docker"]);
    assert_eq!(run(docker(), &["context", "show"]).trim(), "from-docker");
    assert_eq!(run(berth_bin(), &["context", "show"]).trim(), "from-docker");
    // With no -H and no DOCKER_HOST, berth follows the current context.
    run(berth_bin(), &["ps"]);
    run(docker(), &["context", "use", "default"]);
    run(berth_bin(), &["context", "rm", "from-berth"]);
    let listed = run(docker(), &["context", "ls", "-q"]);
    assert!(!listed.contains("from-berth"), "{listed}");
}

#[test]
fn ssh_hosts_reach_the_engine_through_a_local_sshd() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keygen = |name: &str| {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    keygen("host_key");
    keygen("user_key");
    std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
    let port = registry::free_port();
    // The other side's berth is this build's; its engine is the test engine.
    let bin_dir = berth_bin().parent().unwrap().to_owned();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile \
             {d}/authorized_keys\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM \
             no\nPidFile {d}/sshd.pid\nSetEnv DOCKER_HOST=unix://{sock} PATH={bin}:/usr/bin:/bin\n",
            d = d.display(),
            sock = e.socket.display(),
            bin = bin_dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd = std::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
        .spawn()
        .expect("/usr/sbin/sshd (scripts/setup.sh installs openssh-server)");
    let _sshd = berth_tests::desktop::Kill(sshd);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "sshd never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ssh_command = format!(
        "ssh -F /dev/null -i {}/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o BatchMode=yes -o LogLevel=ERROR",
        d.display()
    );
    let berth_ssh = |args: &[&str]| {
        std::process::Command::new(berth_bin())
            .arg("-H")
            .arg(format!("ssh://root@127.0.0.1:{port}"))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env("BERTH_SSH_COMMAND", &ssh_command)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // The far side runs this build's `berth system dial-stdio`, not docker's.
    let mut ssh = ssh_command.split_whitespace();
    let far = std::process::Command::new(ssh.next().unwrap())
        .args(ssh)
        .args([
            "-p",
            &port.to_string(),
            "root@127.0.0.1",
            "command -v berth",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        text(&far.stdout).trim(),
        bin_dir.join("berth").to_string_lossy(),
        "{}",
        text(&far.stderr)
    );
    berth_ok(
        e,
        &[
            "run",
            "-d",
            "--name",
            "cli-over-ssh",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let out = berth_ssh(&["ps", "--format", "{{.Names}}"]);
    assert!(
        out.status.success() && text(&out.stdout).lines().any(|l| l == "cli-over-ssh"),
        "{}{}\nsshd: {}",
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
    );
    let out = berth_ssh(&["logs", "cli-over-ssh"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = berth_ssh(&["version"]);
    assert!(
        text(&out.stdout).contains("Server: Berth"),
        "{}",
        text(&out.stderr)
    );
    berth_ok(e, &["rm", "-f", "cli-over-ssh"]);
}

#[test]
fn stats_top_and_network_verbs_match_the_docker_cli() {
    let e = engine();
    berth_ok(
        e,
        &[
            "run", "-d", "--name", "cli-mon", "-m", "64m", "busybox", "sleep", "300",
        ],
    );
    same_as_docker(e, &["top", "cli-mon"]);
    same_as_docker(
        e,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.PIDs}}",
            "cli-mon",
        ],
    );
    let ours = berth_ok(e, &["stats", "--no-stream", "cli-mon"]);
    let theirs = e.docker_ok(&["stats", "--no-stream", "cli-mon"]);
    assert_eq!(ours.lines().next(), theirs.lines().next(), "the header");
    assert!(ours.contains(" / 64MiB "), "{ours}");

    let id = berth_ok(
        e,
        &["network", "create", "--subnet", "10.88.0.0/24", "cli-net"],
    );
    assert_eq!(id.trim().len(), 64, "{id}");
    let subnet = e.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "cli-net",
    ]);
    assert_eq!(subnet.trim(), "10.88.0.0/24");
    same_as_docker(e, &["network", "ls"]);
    same_as_docker(e, &["network", "ls", "-q"]);
    same_as_docker(
        e,
        &[
            "network",
            "ls",
            "--filter",
            "name=cli-",
            "--format",
            "{{.Name}} {{.Driver}}",
        ],
    );
    berth_ok(e, &["network", "connect", "cli-net", "cli-mon"]);
    let nets = e.docker_ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        "cli-mon",
    ]);
    assert!(nets.contains("cli-net"), "{nets}");
    berth_ok(e, &["network", "disconnect", "cli-net", "cli-mon"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&berth_ok(e, &["network", "inspect", "cli-net"])).unwrap();
    assert_eq!(inspect[0]["Name"], "cli-net");
    assert_eq!(berth_ok(e, &["network", "rm", "cli-net"]), "cli-net\n");
    let ours = e.berth(&["network", "rm", "cli-net"], LIMIT);
    let theirs = e.docker(&["network", "rm", "cli-net"], LIMIT);
    assert_eq!(code(&ours), code(&theirs));
    berth_ok(e, &["rm", "-f", "cli-mon"]);
}

#[test]
fn login_is_shared_with_the_docker_cli_and_pulls_use_it() {
    let e = engine();
    let open = registry::Registry::start();
    let locked = registry::Registry::with_auth(&open, "berth", "s3cret");
    open.push(
        "private/cli",
        "1",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let image = format!("{}/private/cli:1", locked.host());
    let out = e.berth(&["pull", &image], LIMIT);
    assert!(!out.status.success(), "pulled without credentials");
    let out = e.berth(
        &["login", "-u", "berth", "-p", "wrong", &locked.host()],
        LIMIT,
    );
    assert_eq!(code(&out), Some(1));
    assert!(
        text(&out.stderr).contains("Error response from daemon"),
        "{}",
        text(&out.stderr)
    );
    let ok = berth_ok(e, &["login", "-u", "berth", "-p", "s3cret", &locked.host()]);
    assert_eq!(ok, "Login Succeeded\n");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.docker_config.join("config.json")).unwrap())
            .unwrap();
    assert!(cfg["auths"][locked.host()]["auth"].is_string(), "{cfg}");
    // berth's pull sends the login; so does the docker CLI's, from the same file.
    berth_ok(e, &["pull", &image]);
    berth_ok(e, &["rmi", &image]);
    assert_eq!(berth_ok(e, &["pull", "-q", &image]), format!("{image}\n"));
    berth_ok(e, &["rmi", &image]);
    e.docker_ok(&["pull", &image]);
    e.docker_ok(&["rmi", &image]);
    let out = berth_ok(e, &["logout", &locked.host()]);
    assert!(out.starts_with("Removing login credentials"), "{out}");
    let out = e.berth(&["pull", &image], LIMIT);
    assert!(!out.status.success(), "pulled after logout");
}

#[test]
fn system_df_and_prune_match_the_docker_cli() {
    let e = engine();
    berth_ok(e, &["run", "--name", "cli-df-done", "busybox", "true"]);
    berth_ok(
        e,
        &[
            "run",
            "-d",
            "--name",
            "cli-df-up",
            "busybox",
            "sleep",
            "300",
        ],
    );
    let df = same_as_docker(e, &["system", "df"]);
    assert!(df.starts_with("TYPE ") && df.contains("\nImages "), "{df}");
    berth_ok(e, &["network", "create", "cli-unused"]);
    let pruned = berth_ok(e, &["system", "prune", "-f"]);
    assert!(
        pruned.contains("Deleted Containers:") && pruned.contains("Deleted Networks:\ncli-unused"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    let left = e.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        left.contains("cli-df-up") && !left.contains("cli-df-done"),
        "{left}"
    );
    berth_ok(e, &["rm", "-f", "cli-df-up"]);
}

#[test]
fn volume_verbs_and_mounts_match_the_docker_cli() {
    let e = engine();
    assert_eq!(
        berth_ok(e, &["volume", "create", "--label", "tier=db", "cli-vol"]),
        "cli-vol\n"
    );
    e.docker_ok(&["volume", "create", "cli-vol2"]);
    same_as_docker(e, &["volume", "ls"]);
    same_as_docker(e, &["volume", "ls", "-q", "--filter", "label=tier"]);
    same_as_docker(
        e,
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
        ],
    );

    // -v, --mount and --tmpfs through berth run.
    let out = berth_ok(
        e,
        &[
            "run",
            "--rm",
            "-v",
            "cli-vol:/data",
            "--mount",
            "type=volume,src=cli-vol2,dst=/ro,readonly",
            "--tmpfs",
            "/scratch:size=1m",
            "busybox",
            "sh",
            "-c",
            "echo hi > /data/f; touch /ro/x 2>/dev/null || echo ro; df -k /scratch | tail -1 | awk '{print $2}'",
        ],
    );
    assert_eq!(out, "ro\n1024\n");
    let read = e.docker_ok(&["run", "--rm", "-v", "cli-vol:/d", "busybox", "cat", "/d/f"]);
    assert_eq!(read, "hi\n");
    let inspect = berth_ok(e, &["volume", "inspect", "cli-vol"]);
    let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(doc[0]["Labels"]["tier"], "db", "{inspect}");
    assert_eq!(doc[0]["Driver"], "local", "{inspect}");

    // Removing a missing volume: the same message and exit code as docker.
    let ours = e.berth(&["volume", "rm", "cli-missing"], LIMIT);
    let theirs = e.docker(&["volume", "rm", "cli-missing"], LIMIT);
    assert_eq!(code(&ours), code(&theirs));
    assert_eq!(text(&ours.stderr), text(&theirs.stderr));
    let out = e.berth(
        &[
            "run",
            "--rm",
            "--mount",
            "dst=/x,bogus=1",
            "busybox",
            "true",
        ],
        LIMIT,
    );
    assert_eq!(code(&out), Some(125), "{}", text(&out.stderr));

    assert_eq!(
        berth_ok(e, &["volume", "rm", "cli-vol", "cli-vol2"]),
        "cli-vol\ncli-vol2\n"
    );
    let pruned = berth_ok(e, &["volume", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
}

#[test]
fn info_counts_what_the_engine_holds() {
    let e = engine();
    let count = |client: &str| -> (i64, i64) {
        let out = if client == "docker" {
            e.docker_ok(&["info", "--format", "{{.Containers}} {{.Images}}"])
        } else {
            let doc: serde_json::Value =
                serde_json::from_str(&berth_ok(e, &["info", "--format", "{{json .}}"])).unwrap();
            format!("{} {}", doc["Containers"], doc["Images"])
        };
        let mut it = out.split_whitespace().map(|n| n.parse::<i64>().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let (before, images) = count("berth");
    assert_eq!(count("docker"), (before, images));
    assert!(images >= 1, "busybox is there");
    berth_ok(e, &["run", "--name", "cli-info", "busybox", "true"]);
    assert_eq!(count("berth").0, before + 1);
    let text = berth_ok(e, &["info"]);
    assert!(
        text.contains(&format!(" Containers: {}", before + 1)),
        "{text}"
    );
    assert!(text.contains(" Stopped: "), "{text}");
    berth_ok(e, &["rm", "cli-info"]);
}

#[test]
fn tag_push_save_load_and_import_match_the_docker_cli() {
    let e = engine();
    let reg = e.registry();
    let name = format!("{}/cli/pushed:1", reg.host());
    berth_ok(e, &["tag", "busybox", &name]);
    let ours = berth_ok(e, &["push", &name]);
    assert!(
        ours.contains(&format!(
            "The push refers to repository [{}/cli/pushed]",
            reg.host()
        )),
        "{ours}"
    );
    let digest_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("1: digest: sha256:"))
            .unwrap_or_else(|| panic!("no digest in:\n{out}"))
            .to_owned()
    };
    // A line per layer, as the docker CLI prints them.
    assert!(
        ours.lines()
            .any(|l| l.len() > 14 && l.ends_with(": Pushed")),
        "{ours}"
    );
    let theirs = e.docker_ok(&["push", &name]);
    assert_eq!(digest_line(&ours), digest_line(&theirs));
    assert!(theirs.contains("Layer already exists"), "{theirs}");
    assert_eq!(berth_ok(e, &["push", "-q", &name]), format!("{name}\n"));
    let out = e.berth(&["push", "-a", &name], LIMIT);
    assert_eq!(code(&out), Some(125));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cli.tar");
    let file = file.to_str().unwrap();
    berth_ok(e, &["tag", "busybox", "cli-saved:1"]);
    berth_ok(e, &["save", "-o", file, "cli-saved:1"]);
    berth_ok(e, &["rmi", "cli-saved:1"]);
    assert_eq!(
        same_as_docker(e, &["load", "-i", file]),
        "Loaded image: cli-saved:1\n"
    );
    let out = e.berth(&["load", "-i", "/nonexistent.tar"], LIMIT);
    assert_eq!(code(&out), Some(1));

    let rootfs = dir.path().join("rootfs.tar");
    berth_ok(e, &["run", "--name", "cli-import", "busybox", "true"]);
    e.docker_ok(&["export", "-o", rootfs.to_str().unwrap(), "cli-import"]);
    berth_ok(e, &["rm", "cli-import"]);
    let id = berth_ok(
        e,
        &[
            "import",
            "-c",
            "CMD [\"echo\", \"from-import\"]",
            "-m",
            "imported by berth",
            rootfs.to_str().unwrap(),
            "cli-imported:1",
        ],
    );
    assert!(id.starts_with("sha256:"), "{id}");
    let comment = e.docker_ok(&["history", "--format", "{{.Comment}}", "cli-imported:1"]);
    assert_eq!(comment.trim(), "imported by berth");
    // Through a pipe, streamed as it is read.
    let saved = dir.path().join("imported.tar");
    e.docker_ok(&["save", "-o", saved.to_str().unwrap(), "cli-imported:1"]);
    let mut cmd = std::process::Command::new(berth_bin());
    cmd.args(["load", "-q"])
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DOCKER_CONFIG", &e.docker_config);
    let loaded = berth_tests::run_with_input(cmd, &std::fs::read(&saved).unwrap(), LIMIT);
    assert_eq!(
        text(&loaded.stdout),
        "Loaded image: cli-imported:1\n",
        "{}",
        text(&loaded.stderr)
    );
    assert_eq!(
        berth_ok(e, &["run", "--rm", "cli-imported:1"]),
        "from-import\n"
    );
    berth_ok(e, &["rmi", "cli-imported:1", "cli-saved:1", &name]);
}

#[test]
fn cp_port_and_json_listings_match_the_docker_cli() {
    let e = engine();
    let _ = e.docker(&["rm", "-f", "cli-cp"], LIMIT);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "cli-cp",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::53/udp",
        "busybox",
        "sleep",
        "600",
    ]);
    let all = same_as_docker(e, &["port", "cli-cp"]);
    assert_eq!(all.lines().count(), 2, "{all}");
    assert!(all.starts_with("53/udp -> 127.0.0.1:"), "{all}");
    let one = same_as_docker(e, &["port", "cli-cp", "80/tcp"]);
    assert!(one.starts_with("127.0.0.1:"), "{one}");
    let (ours, theirs) = (
        e.berth(&["port", "cli-cp", "81"], LIMIT),
        e.docker(&["port", "cli-cp", "81"], LIMIT),
    );
    assert_eq!(code(&ours), Some(1));
    assert_eq!(code(&ours), code(&theirs));
    assert_eq!(text(&ours.stderr), text(&theirs.stderr));

    // Host to container: a tree into a directory, a file under a new name.
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("sub/f"), b"from-host\n").unwrap();
    berth_ok(e, &["cp", tree.to_str().unwrap(), "cli-cp:/tmp/"]);
    assert_eq!(
        e.docker_ok(&["exec", "cli-cp", "cat", "/tmp/tree/sub/f"]),
        "from-host\n"
    );
    berth_ok(
        e,
        &[
            "cp",
            tree.join("sub/f").to_str().unwrap(),
            "cli-cp:/tmp/renamed",
        ],
    );
    assert_eq!(
        e.docker_ok(&["exec", "cli-cp", "cat", "/tmp/renamed"]),
        "from-host\n"
    );

    // -a keeps the host file's owner; without it the copy belongs to root.
    let owned = dir.path().join("owned");
    std::fs::write(&owned, "mine\n").unwrap();
    std::os::unix::fs::chown(&owned, Some(1234), Some(1234)).unwrap();
    berth_ok(
        e,
        &[
            "cp",
            "-a",
            owned.to_str().unwrap(),
            "cli-cp:/tmp/kept-owner",
        ],
    );
    berth_ok(
        e,
        &["cp", owned.to_str().unwrap(), "cli-cp:/tmp/root-owner"],
    );
    assert_eq!(
        e.docker_ok(&[
            "exec",
            "cli-cp",
            "stat",
            "-c",
            "%u:%g",
            "/tmp/kept-owner",
            "/tmp/root-owner"
        ]),
        "1234:1234\n0:0\n"
    );

    // Container to host: as a new name, and into an existing directory.
    e.docker_ok(&[
        "exec",
        "cli-cp",
        "sh",
        "-c",
        "echo made-inside > /tmp/tree/inside",
    ]);
    let fresh = dir.path().join("fresh");
    berth_ok(e, &["cp", "cli-cp:/tmp/tree", fresh.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(fresh.join("inside")).unwrap(),
        "made-inside\n"
    );
    assert_eq!(
        std::fs::read_to_string(fresh.join("sub/f")).unwrap(),
        "from-host\n"
    );
    berth_ok(e, &["cp", "cli-cp:/tmp/renamed", fresh.to_str().unwrap()]);
    assert!(fresh.join("renamed").is_file());
    // `-` is a tar on stdout, the one docker gets.
    let names = |tar: &[u8]| -> Vec<String> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let ours = e.berth(&["cp", "cli-cp:/tmp/tree", "-"], LIMIT);
    let theirs = e.docker(&["cp", "cli-cp:/tmp/tree", "-"], LIMIT);
    assert_eq!(names(&ours.stdout), names(&theirs.stdout));
    assert!(names(&ours.stdout).contains(&"tree/sub/f".to_owned()));

    // Refusals: a missing path (the daemon's words), two host paths.
    let (ours, theirs) = (
        e.berth(
            &["cp", "cli-cp:/nonexistent", dir.path().to_str().unwrap()],
            LIMIT,
        ),
        e.docker(
            &["cp", "cli-cp:/nonexistent", dir.path().to_str().unwrap()],
            LIMIT,
        ),
    );
    assert_eq!(code(&ours), Some(1));
    assert_eq!(code(&ours), code(&theirs));
    assert!(
        text(&ours.stderr).contains("Could not find the file"),
        "{}",
        text(&ours.stderr)
    );
    let out = e.berth(&["cp", "/etc/hostname", "/tmp/x"], LIMIT);
    assert_eq!(code(&out), Some(1));

    // `--json`: the engine's documents, for scripts.
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        serde_json::from_str(&berth_ok(e, args)).expect("a JSON array")
    };
    let ps = json(&["ps", "--json"]);
    assert!(ps.iter().any(|c| c["Names"][0] == "/cli-cp"), "{ps:?}");
    let images = json(&["images", "--json"]);
    assert!(
        images
            .iter()
            .any(|i| i["RepoTags"].to_string().contains("busybox:latest")),
        "{images:?}"
    );
    let networks = json(&["network", "ls", "--json"]);
    assert!(
        networks.iter().any(|n| n["Name"] == "bridge"),
        "{networks:?}"
    );
    assert!(
        json(&["volume", "ls", "--json"])
            .iter()
            .all(|v| v["Name"].is_string())
    );
    let out = e.berth(&["ps", "--json", "-q"], LIMIT);
    assert_eq!(code(&out), Some(125));
    e.docker_ok(&["rm", "-f", "cli-cp"]);
}

/// A credential helper as the docker CLI runs them (`docker-credential-NAME get|store|erase`),
/// keeping one JSON file per server in `$BERTH_TEST_CREDS`.
const HELPER: &str = r#"#!/bin/sh
file() { printf '%s' "$BERTH_TEST_CREDS/$(printf '%s' "$1" | tr '/:' '__')"; }
case "$1" in
store)
  doc=$(cat)
  server=$(printf '%s' "$doc" | sed -n 's/.*"ServerURL":"\([^"]*\)".*/\1/p')
  printf '%s' "$doc" > "$(file "$server")" ;;
get)
  read -r server
  if [ -f "$(file "$server")" ]; then cat "$(file "$server")"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase)
  read -r server
  rm "$(file "$server")" ;;
esac
"#;

#[test]
fn a_credential_helper_keeps_the_login_for_both_clients() {
    use std::os::unix::fs::PermissionsExt;
    let e = engine();
    let open = registry::Registry::start();
    let locked = registry::Registry::with_auth(&open, "helper", "h3lper");
    open.push(
        "private/helper",
        "1",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let image = format!("{}/private/helper:1", locked.host());
    let dir = tempfile::tempdir().unwrap();
    let (bin, creds, config) = (
        dir.path().join("bin"),
        dir.path().join("creds"),
        dir.path().join("config"),
    );
    for d in [&bin, &creds, &config] {
        std::fs::create_dir_all(d).unwrap();
    }
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(&helper, HELPER).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(config.join("config.json"), r#"{"credsStore":"berthtest"}"#).unwrap();
    let run = |program: &std::path::Path, args: &[&str]| -> Output {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
            .env("DOCKER_CONFIG", &config)
            .env("BERTH_TEST_CREDS", &creds)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env_remove("DOCKER_CONTEXT")
            .stdin(std::process::Stdio::null());
        berth_tests::run_with_limit(cmd, LIMIT)
    };
    let berth = berth_bin();
    let docker = std::path::Path::new("docker");
    let out = run(
        &berth,
        &["login", "-u", "helper", "-p", "h3lper", &locked.host()],
    );
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    // The secret is with the helper; config.json only names the registry.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["auths"][locked.host()], serde_json::json!({}), "{cfg}");
    assert!(!cfg.to_string().contains("h3lper"), "{cfg}");
    let kept: Vec<String> = std::fs::read_dir(&creds)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(kept.len() == 1 && kept[0].contains("h3lper"), "{kept:?}");
    // Both clients pull with it.
    let out = run(docker, &["pull", &image]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    run(docker, &["rmi", &image]);
    let out = run(&berth, &["pull", &image]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    run(&berth, &["rmi", &image]);
    // Logout erases it from the helper too.
    let out = run(&berth, &["logout", &locked.host()]);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&creds).unwrap().count(), 0);
    let out = run(&berth, &["pull", &image]);
    assert!(!out.status.success(), "pulled after logout");
}
