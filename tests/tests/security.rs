//! The VM is the boundary: each test performs an attack from a real container or build against
//! a real VM (the qemu backend) and asserts that the host is untouched. One test per finding
//! of the security review; what cannot be attacked from outside is covered by unit tests
//! beside the code (the CLI's archive extraction, file modes, the share resolver).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::{
    SharedEngine, host_http, processes_naming, registry, run_with_limit, shared_engine,
    spawn_engine_with,
};

const LIMIT: Duration = Duration::from_secs(300);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A directory under /tmp (shared with the VM by default), outside the engine's home.
fn shared_dir(name: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(&format!("berth-sec-{name}-"))
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    std::fs::canonicalize(dir).unwrap()
}

fn build(e: &SharedEngine, dir: &Path, tag: &str) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(["build", "-t", tag])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DOCKER_CONFIG", &e.docker_config)
        .env_remove("DOCKER_CONTEXT");
    run_with_limit(cmd, LIMIT)
}

/// The docker CLI against the engine of another home (`socket`), with `config` as its
/// configuration directory.
fn docker_at(socket: &Path, config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT");
    run_with_limit(cmd, LIMIT)
}

/// Item 1: a RUN step plants a link to a host directory (as the VM sees it); a later COPY must
/// write inside the image, never through the link to the host.
#[test]
fn build_copy_never_writes_through_a_planted_link() {
    let e = engine();
    let canary = shared_dir("copy-canary");
    std::fs::write(canary.join(".bashrc"), "original\n").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("d/x")).unwrap();
    std::fs::write(ctx.path().join("d/x/.bashrc"), "evil\n").unwrap();
    std::fs::write(ctx.path().join("f"), "evil\n").unwrap();
    let guest = format!("/mnt/host{}", canary.display());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM busybox\n\
             RUN mkdir /app && ln -s {guest} /app/x && ln -s {guest} /dest && ln -s {guest}/.bashrc /app/f\n\
             COPY d /app/\n\
             COPY d /dest/\n\
             COPY f /app/f\n"
        ),
    )
    .unwrap();
    let out = build(e, ctx.path(), "sec-copy");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(canary.join(".bashrc")).unwrap(),
        "original\n",
        "the host file was written through the link"
    );
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
    // The writes went into the image, as they would inside a container.
    let inside = e.docker_ok(&[
        "run",
        "--rm",
        "sec-copy",
        "cat",
        "/app/x/.bashrc",
        "/app/f",
        &format!("{guest}/x/.bashrc"),
    ]);
    assert_eq!(inside, "evil\nevil\nevil\n");
    let _ = std::fs::remove_dir_all(&canary);
}

/// Item 2: Berth's own state is not reachable through a share, even by root in the VM; shares
/// are nosuid,nodev; virtiofsd runs in its namespace sandbox.
#[test]
fn berth_state_is_never_reachable_through_a_share() {
    let e = engine();
    let home = std::fs::canonicalize(&e.home).unwrap();
    // Paths as the container sees them, through `-v /tmp:/h`.
    let in_h = |p: &Path| format!("/h/{}", p.strip_prefix("/tmp").unwrap().display());
    let settings = home.join("settings.json");
    let before = std::fs::read(&settings).ok();
    // The share itself works: a file beside the home is read and written through it.
    let beside = shared_dir("beside");
    std::fs::write(beside.join("note"), "host\n").unwrap();
    // The whole /tmp share, which holds this engine's home.
    let script = format!(
        "cat {beside}/note && echo guest > {beside}/note; ls -A {home}; echo '{{\"cpus\": 1}}' > {home}/settings.json; \
         rm -f {home}/data.img; touch {home}/planted; \
         grep ' /h ' /proc/self/mountinfo",
        home = in_h(&home),
        beside = in_h(&beside)
    );
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--privileged",
            "-v",
            "/tmp:/h",
            "busybox",
            "sh",
            "-c",
            &script,
        ],
        LIMIT,
    );
    let said = text(&out);
    assert!(
        said.starts_with("host\n"),
        "the share does not work: {said}"
    );
    assert_eq!(
        std::fs::read_to_string(beside.join("note")).unwrap(),
        "guest\n"
    );
    let _ = std::fs::remove_dir_all(&beside);
    assert_eq!(
        std::fs::read(&settings).ok(),
        before,
        "settings changed: {said}"
    );
    assert!(home.join("data.img").exists(), "the data disk went: {said}");
    assert!(!home.join("planted").exists(), "{said}");
    let mountinfo = said
        .lines()
        .find(|l| l.contains(" /h "))
        .unwrap_or_default();
    assert!(
        mountinfo.contains("nosuid") && mountinfo.contains("nodev"),
        "the share is mounted without nosuid,nodev: {said}"
    );
    // Binding the home itself (or inside it) is refused at create, in words.
    for source in [home.clone(), home.join("run")] {
        let out = e.docker(
            &[
                "run",
                "--rm",
                "-v",
                &format!("{}:/x", source.display()),
                "busybox",
                "true",
            ],
            LIMIT,
        );
        assert!(!out.status.success());
        assert!(text(&out).contains("Berth's own state"), "{}", text(&out));
    }
    let served: Vec<String> = processes_naming("virtiofsd")
        .into_iter()
        .map(|(_, cmdline)| cmdline)
        .filter(|c| c.contains("--shared-dir /tmp "))
        .collect();
    assert!(!served.is_empty(), "no virtiofsd serves /tmp");
    for c in served {
        assert!(c.contains("--sandbox namespace"), "{c}");
    }
}

/// Items 3 and 4: a container swaps a bind source for a link to `/` between starts; the next
/// start must not get the VM's root. A `..` path must make nothing outside the shares.
#[test]
fn bind_sources_are_resolved_again_at_every_start() {
    let e = engine();
    let dir = shared_dir("bind");
    std::fs::create_dir(dir.join("sub")).unwrap();
    let bind = format!("{}/sub:/x", dir.display());
    e.docker_ok(&[
        "create",
        "--name",
        "sec-victim",
        "-v",
        &bind,
        "busybox",
        "ls",
        "/x/run/berth",
    ]);
    // Another container, which may write the share, plants the link.
    e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/d", dir.display()),
        "busybox",
        "sh",
        "-c",
        "rm -rf /d/sub && ln -s / /d/sub",
    ]);
    let out = e.docker(&["start", "-a", "sec-victim"], LIMIT);
    let said = text(&out);
    assert!(
        !said.contains("exec") && !said.contains("init-problems"),
        "the VM's /run/berth was visible: {said}"
    );
    assert!(!out.status.success(), "{said}");
    e.docker_ok(&["rm", "-f", "sec-victim"]);

    let outside = format!("/srv/berth-sec-{}", std::process::id());
    let climb = format!("{}/new/../../..{outside}:/x", dir.display());
    let out = e.docker(&["run", "--rm", "-v", &climb, "busybox", "true"], LIMIT);
    assert!(!out.status.success());
    assert!(text(&out).contains("not shared"), "{}", text(&out));
    assert!(
        !Path::new(&outside).exists(),
        "{outside} was made on the host"
    );
    assert!(!dir.join("new").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A static 32-bit x86 program: `socketcall(SYS_SOCKET, [AF_VSOCK, SOCK_STREAM, 0])`, then
/// `exit(100)` if it got a socket, else `exit(errno)`.
fn vsock32_elf() -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 40] = [
        0x6a, 0x00,                   // push 0 (protocol)
        0x6a, 0x01,                   // push 1 (SOCK_STREAM)
        0x6a, 0x28,                   // push 40 (AF_VSOCK)
        0x89, 0xe1,                   // mov ecx, esp
        0xbb, 0x01, 0x00, 0x00, 0x00, // mov ebx, 1 (SYS_SOCKET)
        0xb8, 0x66, 0x00, 0x00, 0x00, // mov eax, 102 (socketcall)
        0xcd, 0x80,                   // int 0x80
        0x89, 0xc3,                   // mov ebx, eax
        0xf7, 0xdb,                   // neg ebx
        0x85, 0xc0,                   // test eax, eax
        0x78, 0x05,                   // js +5
        0xbb, 0x64, 0x00, 0x00, 0x00, // mov ebx, 100
        0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1 (exit)
        0xcd, 0x80,                   // int 0x80
    ];
    let base: u32 = 0x0804_8000;
    let total = (52 + 32 + code.len()) as u32;
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(base + 84).to_le_bytes()); // entry
    elf.extend_from_slice(&52u32.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    elf.extend_from_slice(&52u16.to_le_bytes()); // ehsize
    elf.extend_from_slice(&32u16.to_le_bytes()); // phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // phnum
    elf.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    for v in [1, 0, base, base, total, total, 5, 0x1000] {
        elf.extend_from_slice(&u32::to_le_bytes(v)); // PT_LOAD, R+X
    }
    elf.extend_from_slice(&code);
    elf
}

/// Item 6: a 32-bit binary cannot open AF_VSOCK through socketcall.
#[test]
fn a_32_bit_binary_cannot_open_vsock() {
    let e = engine();
    let mut layers = registry::busybox_layers();
    layers.push(
        registry::Layer::new()
            .file("bin/vsock32", 0o755, &vsock32_elf())
            .build(),
    );
    e.registry().push(
        "library/vsock32",
        "latest",
        &layers,
        registry::busybox_config(),
    );
    e.docker_ok(&["pull", "vsock32"]);
    let out = e.docker(&["run", "--rm", "vsock32", "/bin/vsock32"], LIMIT);
    assert_ne!(
        out.status.code(),
        Some(100),
        "a 32-bit program opened vsock"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "EPERM from the seccomp profile: {}",
        text(&out)
    );
    // Without the profile the same program does get its socket: the test can fail.
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "vsock32",
            "/bin/vsock32",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(100), "{}", text(&out));
}

/// Item 9: `--insecure-tcp` on loopback serves the host, but not the containers that reach the
/// host's loopback through the VM's gateway (the CVE-2025-9074 pattern).
#[test]
fn the_plain_tcp_api_is_not_reachable_from_containers() {
    let reg = registry::Registry::start();
    reg.push(
        "library/busybox",
        "latest",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let home = tempfile::Builder::new()
        .prefix("berth-tcp")
        .tempdir_in("/tmp")
        .unwrap();
    let port = registry::free_port();
    let api = format!("127.0.0.1:{port}");
    let (mut engine, socket) =
        spawn_engine_with(home.path(), &reg.host(), &["--tcp", &api, "--insecure-tcp"]);
    let docker = |host: &str, args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(host)
            .args(args)
            .env("DOCKER_CONFIG", home.path())
            .env_remove("DOCKER_CONTEXT");
        run_with_limit(cmd, LIMIT)
    };
    let unix = format!("unix://{}", socket.display());
    let out = docker(
        &format!("tcp://{api}"),
        &["version", "-f", "{{.Server.Os}}"],
    );
    assert_eq!(text(&out).trim(), "linux", "the host is served");
    // The same path to any other loopback service works: only the API is closed to the VM.
    let other = host_http("host service\n");
    let probe = format!(
        "timeout 10 wget -qO- http://host.docker.internal:{other}/; \
         timeout 10 wget -qO- http://host.docker.internal:{port}/version && echo API-REACHED; true"
    );
    let out = docker(&unix, &["run", "--rm", "busybox", "sh", "-c", &probe]);
    let said = text(&out);
    assert!(
        said.contains("host service"),
        "the gateway does not work: {said}"
    );
    assert!(
        !said.contains("API-REACHED"),
        "a container drove the engine: {said}"
    );
    assert!(!said.contains("ApiVersion"), "{said}");
    let log = std::fs::read_to_string(home.path().join("engine.out")).unwrap();
    assert!(log.contains("refused a TCP API connection"), "{log}");
    let _ = engine.kill();
    let _ = engine.wait();
}

/// Item 14: a flood of connections to a published port and to the API socket, held at once;
/// each is served, and normal service goes on when the flood ends. `BERTH_SOAK=1` (`make
/// soak`) runs the full size: 2,000 and 500.
#[test]
fn a_flood_of_connections_is_served_and_service_goes_on() {
    let e = engine();
    e.echo_image();
    let soak = std::env::var_os("BERTH_SOAK").is_some();
    // Past the guest's old 1024-descriptor limit (two descriptors per forwarded connection).
    let (ports, apis) = if soak { (2000, 500) } else { (600, 200) };
    let port = registry::free_port();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flood",
        "-p",
        &format!("127.0.0.1:{port}:7"),
        "echo",
        "echo-server",
        "7",
    ]);
    let _ = berth_engine::limits::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = e.socket.clone();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The server may still be starting.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while echo_once(port).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the echo port never answered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let started = std::time::Instant::now();
        let mut held = Vec::new();
        for i in 0..ports {
            held.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let msg = format!("flood {i}\n");
                s.write_all(msg.as_bytes()).await?;
                let mut got = vec![0u8; msg.len()];
                tokio::time::timeout(Duration::from_secs(120), s.read_exact(&mut got))
                    .await
                    .map_err(|_| std::io::Error::other("no echo in 120 s"))??;
                assert_eq!(got, msg.as_bytes());
                Ok::<_, std::io::Error>(s)
            }));
        }
        let mut api_held = Vec::new();
        for _ in 0..apis {
            let socket = socket.clone();
            api_held.push(tokio::spawn(async move {
                let mut s = tokio::net::UnixStream::connect(&socket).await?;
                s.write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\n\r\n")
                    .await?;
                let mut buf = [0u8; 512];
                let n = tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf))
                    .await
                    .map_err(|_| std::io::Error::other("no answer in 120 s"))??;
                assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
                Ok::<_, std::io::Error>(s)
            }));
        }
        let (mut streams, mut sockets, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for h in held {
            match h.await.unwrap() {
                Ok(s) => streams.push(s),
                Err(e) => failed.push(e.to_string()),
            }
        }
        for h in api_held {
            match h.await.unwrap() {
                Ok(s) => sockets.push(s),
                Err(e) => failed.push(e.to_string()),
            }
        }
        println!(
            "held {} published-port and {} API connections at once ({} failed) in {:.1} s",
            ports,
            apis,
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            failed.is_empty(),
            "{} failed, first: {}",
            failed.len(),
            failed[0]
        );
        drop(streams);
        drop(sockets);
        let ended = std::time::Instant::now();
        while echo_once(port).await.is_err() {
            assert!(
                ended.elapsed() < Duration::from_secs(30),
                "no service after the flood"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "normal service {} ms after the flood ended",
            ended.elapsed().as_millis()
        );
    });
    let out = e.docker(&["version", "-f", "{{.Server.Os}}"], LIMIT);
    assert_eq!(text(&out).trim(), "linux");
    e.docker_ok(&["rm", "-f", "flood"]);
}

/// One round trip through the echo server on `port`.
async fn echo_once(port: u16) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"once\n").await?;
    let mut got = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    Ok(())
}

/// Item 16: a container's log rotates as json-file's `max-size`/`max-file` say (and is bounded
/// without them), `logs --tail` reads from the end, and a bad option is refused at create.
#[test]
fn logs_rotate_and_tails_come_from_the_end() {
    let e = engine();
    // Detached: 20,000 lines are more than the test's unread pipe holds.
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=100k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    assert_eq!(e.docker_ok(&["wait", "chatty"]).trim(), "0");
    assert_eq!(
        e.docker_ok(&["logs", "--tail", "1", "chatty"]),
        "line-19999\n"
    );
    let all = e.docker_ok(&["logs", "chatty"]);
    let lines: Vec<&str> = all.lines().collect();
    // About 80 bytes of JSON an entry: two files of 100 kB keep some 2,500 of 20,000 lines.
    assert!(lines.len() < 5000, "{} lines kept", lines.len());
    assert_eq!(lines.last(), Some(&"line-19999"));
    let first: usize = lines[0].trim_start_matches("line-").parse().unwrap();
    assert!(first > 10_000, "the oldest lines are gone: {}", lines[0]);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            *l,
            format!("line-{}", first + i),
            "kept lines are whole and in order"
        );
    }
    e.docker_ok(&["rm", "chatty"]);
    let out = e.docker(&["create", "--log-opt", "max-size=ten", "busybox"], LIMIT);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("max-size") || text(&out).contains("invalid size"),
        "{}",
        text(&out)
    );
}

/// Item 18: the guest's entropy seed is on no command line (the host's process list, the
/// guest's `/proc/cmdline` that containers read); it rides in a private per-boot initramfs.
#[test]
fn the_entropy_seed_is_on_no_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let e = engine();
    let cmdline = e.docker_ok(&["run", "--rm", "busybox", "cat", "/proc/cmdline"]);
    assert!(
        cmdline.contains("berth.dns="),
        "not the guest's command line: {cmdline}"
    );
    assert!(!cmdline.contains("seed"), "{cmdline}");
    let home = e.home.display().to_string();
    let vm: Vec<(u32, String)> = processes_naming(&home);
    assert!(!vm.is_empty());
    for (pid, c) in vm {
        assert!(!c.contains("seed"), "{pid}: {c}");
    }
    let initrd = e.home.join("run/initramfs-boot");
    let mode = std::fs::metadata(&initrd).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "{} is readable by others",
        initrd.display()
    );
}

/// Item 7: the host's registry proxy serves the agent alone. Root in a privileged container
/// that dials the proxy's vsock port gets a challenge it cannot answer, and a host-network
/// container that uses the agent's forwarder on the VM's loopback is turned away: neither
/// makes the host connect anywhere. (Every pull in these tests is the other half: the agent
/// itself still goes through.)
#[test]
fn only_the_agent_can_use_the_registry_proxy() {
    let e = engine();
    e.vsockprobe_image();
    // A service on the host's loopback that nothing in the VM may reach through the proxy.
    let canary = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    canary.set_nonblocking(true).unwrap();
    let port = canary.local_addr().unwrap().port();
    let request =
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n");
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--privileged",
            "vsockprobe",
            "/bin/vsockprobe",
            "dial",
            "2",
            "1025",
            &request,
        ],
        LIMIT,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    // What it gets is the 32-byte challenge, then the end of the stream.
    assert!(said.contains("received 32 bytes"), "{said}");
    assert!(!said.contains("HTTP/1.1"), "the proxy answered: {said}");
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "-e",
            "http_proxy=http://127.0.0.1:3128",
            "busybox",
            "sh",
            "-c",
            &format!("timeout 30 wget -q -O- http://127.0.0.1:{port}/; echo rc=$?"),
        ],
        LIMIT,
    );
    let said = text(&out);
    assert!(said.contains("rc=") && !said.contains("rc=0"), "{said}");
    match canary.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host's loopback was reached through the proxy: {other:?}"),
    }
}

/// Item 8: a process that takes the agent's port while the agent restarts learns nothing from
/// the engine: the engine sends its challenge, gets no proof, and sends nothing else (no gRPC,
/// so no credentials). The agent takes its port back once the squatter leaves.
#[test]
fn a_process_squatting_the_agent_port_gets_nothing_from_the_engine() {
    let e = engine();
    e.vsockprobe_image();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "squatter",
        "--privileged",
        "--pid",
        "host",
        "vsockprobe",
        "/bin/vsockprobe",
        "squat",
        "1024",
        "40",
    ]);
    std::thread::sleep(Duration::from_secs(5));
    // The engine meets the squatter: its calls fail rather than talk to it.
    let out = e.docker(&["ps", "-a"], LIMIT);
    assert!(
        !out.status.success(),
        "the engine was answered while the agent's port was squatted: {}",
        text(&out)
    );
    // The squatter leaves after 40 s; the agent comes back.
    let start = std::time::Instant::now();
    loop {
        if e.docker(&["ps", "-a"], LIMIT).status.success() {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the agent never came back after the squatter left"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let logs = e.docker_ok(&["logs", "squatter"]);
    e.docker_ok(&["rm", "-f", "squatter"]);
    assert!(logs.contains("squatting port 1024"), "{logs}");
    let connections: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("connection:"))
        .collect();
    assert!(!connections.is_empty(), "the engine never dialed: {logs}");
    for c in connections {
        assert_eq!(c, "connection: 32 bytes, grpc=false", "{logs}");
    }
}

/// Items 7 and 8: the agent key is in no file, argument or environment a container can read.
#[test]
fn the_agent_key_is_nowhere_a_container_can_read() {
    let e = engine();
    let key = std::fs::read(e.home.join("run/agent.key")).expect("the key beside the socket");
    assert_eq!(key.len(), 32);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "--privileged",
        "--pid",
        "host",
        "busybox",
        "sh",
        "-c",
        "ls /proc/1/root/berth-key 2>&1; \
         for p in /proc/[0-9]*; do \
           if [ \"$(tr '\\0' ' ' < $p/cmdline)\" = '/init serve ' ]; then \
             echo agent=${p#/proc/}; tr '\\0' '\\n' < $p/environ; \
           fi; \
         done; \
         od -An -tx1 /proc/cmdline | tr -d ' \\n'",
    ]);
    assert!(out.contains("No such file"), "{out}");
    assert!(out.contains("agent="), "the agent was not found: {out}");
    assert!(out.contains("BERTH_KEY_FD=3"), "{out}");
    assert!(!out.contains(&hex), "the key is readable in the VM: {out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(e.home.join("run/agent.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0);
}

/// Item 11: a RUN step has a network namespace of its own on the default bridge and copies of
/// the `/etc` files: it sees no bridge of the VM, and what it writes to its `resolv.conf` and
/// `hosts` reaches no container. Its network still works (the bridge's gateway answers).
#[test]
fn build_steps_run_in_their_own_network_namespace() {
    let e = engine();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\n\
         RUN echo interfaces: $(sed 1,2d /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ' ')\n\
         RUN ping -c 1 -W 5 $(ip route | awk '/default/ {print $3}') >/dev/null && echo gateway answers\n\
         RUN echo 'nameserver 6.6.6.6' > /etc/resolv.conf && echo '6.6.6.6 evil.example' >> /etc/hosts\n",
    )
    .unwrap();
    let out = build(e, ctx.path(), "sec-netns");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("interfaces: eth0 lo"), "{said}");
    assert!(
        !said.contains("berth0"),
        "a step saw the VM's bridge: {said}"
    );
    assert!(said.contains("gateway answers"), "{said}");
    let seen = e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "cat",
        "/etc/resolv.conf",
        "/etc/hosts",
    ]);
    assert!(
        !seen.contains("6.6.6.6"),
        "a build step rewrote the VM's resolver: {seen}"
    );
    e.docker_ok(&["rmi", "sec-netns"]);
}

/// Item 13: a layer that decompresses to more than the disk can take, or than the user's
/// `max-layer-mib` allows, is stopped while it unpacks; the pull fails with the reason, and
/// nothing of it is left on the disk. The agent's own records still get written.
#[test]
fn a_decompression_bomb_is_stopped_and_leaves_nothing() {
    let reg = registry::Registry::start();
    reg.push(
        "library/busybox",
        "latest",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    // 64 MiB of zeros: a few hundred KiB as gzip.
    let mut layers = registry::busybox_layers();
    layers.push(
        registry::Layer::new()
            .file("zeros", 0o644, &vec![0u8; 64 << 20])
            .build(),
    );
    reg.push(
        "library/bomb",
        "latest",
        &layers,
        registry::busybox_config(),
    );
    let home = tempfile::Builder::new()
        .prefix("berth-bomb")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(
        home.path().join("settings.json"),
        r#"{"max-layer-mib": 16}"#,
    )
    .unwrap();
    let (mut engine, socket) = spawn_engine_with(home.path(), &reg.host(), &[]);
    let docker = |args: &[&str]| docker_at(&socket, home.path(), args);
    let out = docker(&["pull", "bomb"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("too large"), "{said}");
    let out = docker(&["images", "-q", "bomb"]);
    assert!(text(&out).trim().is_empty(), "{}", text(&out));
    // The agent's scratch space holds nothing of it; the engine still works.
    let out = docker(&["pull", "busybox"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = docker(&[
        "run",
        "--rm",
        "--privileged",
        "--pid",
        "host",
        "busybox",
        "sh",
        "-c",
        "cd /proc/1/root/var/lib/berth/images/tmp && ls -A | wc -l; \
         grep -o 'resuid=[0-9]*' /proc/1/mountinfo | head -1",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let mut lines = said.lines();
    assert_eq!(lines.next(), Some("0"), "left behind: {said}");
    // The disk keeps a reserve that containers' root cannot use.
    assert_eq!(lines.next(), Some("resuid=2147483646"), "{said}");
    let _ = engine.kill();
    let _ = engine.wait();
}

/// Item 15: the VM is killed (`SIGKILL` of the engine, which takes its VM with it) at several
/// moments of a pull; after each new boot the image is there whole or not at all, and a pull
/// then completes it. `BERTH_CRASH_ROUNDS` sets how many moments (`make soak`: 12).
#[test]
fn a_pull_killed_at_any_moment_leaves_the_image_whole_or_absent() {
    let rounds: usize = std::env::var("BERTH_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let reg = registry::Registry::start();
    // Four layers of data that does not compress, so the pull takes a while.
    let mut layers = registry::busybox_layers();
    let mut sums = Vec::new();
    let mut x = 0x2545_f491_u32;
    for i in 0..4 {
        let mut data = vec![0u8; 6 << 20];
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        use sha2::Digest;
        sums.push(format!("{:x}  /data/{i}", sha2::Sha256::digest(&data)));
        layers.push(
            registry::Layer::new()
                .dir("data", 0o755)
                .file(&format!("data/{i}"), 0o644, &data)
                .build(),
        );
    }
    reg.push(
        "library/crashy",
        "latest",
        &layers,
        registry::busybox_config(),
    );
    let home = tempfile::Builder::new()
        .prefix("berth-crash")
        .tempdir_in("/tmp")
        .unwrap();
    let docker = |socket: &Path, args: &[&str]| docker_at(socket, home.path(), args);
    let expected = sums.join("\n");
    let check = |socket: &Path, round: usize| -> bool {
        let out = docker(socket, &["images", "-q", "crashy"]);
        if text(&out).trim().is_empty() {
            println!("boot {round}: the image is absent");
            return false;
        }
        println!("boot {round}: the image is there; checking it is whole");
        let out = docker(
            socket,
            &["run", "--rm", "crashy", "sh", "-c", "sha256sum /data/*"],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "round {round}: the image is listed but not whole: {}",
            text(&out)
        );
        true
    };
    for round in 0..rounds {
        let (mut engine, socket) = spawn_engine_with(home.path(), &reg.host(), &[]);
        check(&socket, round);
        let _ = docker(&socket, &["rmi", "-f", "crashy"]);
        let mut cmd = Command::new("docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["pull", "-q", "crashy"])
            .env("DOCKER_CONFIG", home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut pull = cmd.spawn().unwrap();
        // Moments spread over the pull: early (the download), middle, late (the unpack).
        std::thread::sleep(Duration::from_millis(700 + 1900 * (round as u64 % 5)));
        let _ = engine.kill();
        let _ = engine.wait();
        let _ = pull.kill();
        let _ = pull.wait();
    }
    let (mut engine, socket) = spawn_engine_with(home.path(), &reg.host(), &[]);
    check(&socket, rounds);
    let out = docker(&socket, &["pull", "crashy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(check(&socket, rounds + 1));
    let _ = engine.kill();
    let _ = engine.wait();
}

/// Item 16: an exec's output reaches a plain (not upgraded) client as it is written, not held
/// whole in the engine until the exec ends: the first line arrives while the exec still runs.
#[test]
fn exec_output_streams_to_a_plain_client() {
    use std::io::{Read, Write};
    let e = engine();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "exec-stream",
        "busybox",
        "sleep",
        "300",
    ]);
    let (status, created) = e.api(
        "POST",
        "/containers/exec-stream/exec",
        Some(serde_json::json!({
            "AttachStdout": true, "AttachStderr": true,
            "Cmd": ["sh", "-c", "echo first; sleep 30; echo second"],
        })),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["Id"].as_str().unwrap().to_owned();
    let mut s = std::os::unix::net::UnixStream::connect(&e.socket).unwrap();
    let body = r#"{"Detach":false,"Tty":false}"#;
    write!(
        s,
        "POST /exec/{id}/start HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the response ended: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&got).into_owned();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        !seen.contains("second"),
        "the output came whole, after the exec ended: {seen}"
    );
    e.docker_ok(&["rm", "-f", "exec-stream"]);
}
