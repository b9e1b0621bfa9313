//! Container networks through the real docker CLI and a real VM: containers reach the host (and
//! through it the outside) via passt; user-defined networks resolve names and aliases and stay
//! apart from each other; the network verbs answer as dockerd's; UDP ports publish; a published
//! port carries many connections at once with their bytes intact, and bad or half-open
//! connections do not stop it.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use berth_tests::registry::free_port;
use berth_tests::{SharedEngine, host_http, shared_engine};

// `timeout CMD` as a container's PID 1 (or as the last word of `sh -c`, which busybox execs)
// makes CMD PID 1, deaf to timeout's SIGTERM: the tests keep a shell in front of it.

const LIMIT: Duration = Duration::from_secs(120);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn container_ip(e: &SharedEngine, name: &str) -> String {
    e.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ])
    .trim()
    .to_owned()
}

#[test]
fn a_container_reaches_the_hosts_loopback_and_outside_names() {
    let e = engine();
    let port = host_http("hello-from-the-host");
    let url = format!("http://host.docker.internal:{port}/");
    let page = e.docker_ok(&["run", "--rm", "busybox", "wget", "-qO-", &url]);
    assert_eq!(page.trim(), "hello-from-the-host");
    // The same from a user-defined network, where the embedded DNS server answers the name.
    e.docker_ok(&["network", "create", "reach-out"]);
    let page = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "reach-out",
        "busybox",
        "wget",
        "-qO-",
        &url,
    ]);
    assert_eq!(page.trim(), "hello-from-the-host");
    // Outside names resolve through the host's resolver (when the host resolves them at all).
    let name = "deb.debian.org";
    use std::net::ToSocketAddrs;
    if (name, 80)
        .to_socket_addrs()
        .is_ok_and(|mut a| a.next().is_some())
    {
        for net in ["bridge", "reach-out"] {
            let out = e.docker_ok(&["run", "--rm", "--network", net, "busybox", "nslookup", name]);
            assert!(out.contains("Address"), "{net}: {out}");
            assert!(
                out.lines().filter(|l| l.contains("Address")).count() >= 2,
                "{net}: no answer for {name}: {out}"
            );
        }
    } else {
        eprintln!("the host cannot resolve {name}: outside-name lookups left unchecked");
    }
    // An internal network has no way out, not even to the host.
    e.docker_ok(&["network", "create", "--internal", "sealed"]);
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--network",
            "sealed",
            "busybox",
            "sh",
            "-c",
            &format!("timeout 5 wget -qO- {url}; exit $?"),
        ],
        LIMIT,
    );
    assert!(
        !out.status.success(),
        "an internal network reached the host"
    );
    e.docker_ok(&["network", "rm", "reach-out", "sealed"]);
}

#[test]
fn containers_on_a_user_network_find_each_other_and_other_networks_cannot() {
    let e = engine();
    e.docker_ok(&["network", "create", "front"]);
    e.docker_ok(&["network", "create", "back"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "front",
        "--network-alias",
        "web-alias",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo named > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ip = container_ip(e, "srv");
    assert!(ip.starts_with("172."), "srv got {ip:?}");
    for host in ["srv", "web-alias", &ip] {
        let url = format!("http://{host}/");
        let start = Instant::now();
        loop {
            let out = e.docker(
                &[
                    "run",
                    "--rm",
                    "--network",
                    "front",
                    "busybox",
                    "sh",
                    "-c",
                    &format!("timeout 10 wget -qO- {url}; exit $?"),
                ],
                LIMIT,
            );
            if String::from_utf8_lossy(&out.stdout).trim() == "named" {
                break;
            }
            assert!(start.elapsed() < LIMIT, "{url}: {}", stderr(&out));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The network knows its container.
    let inspect = e.docker_ok(&["network", "inspect", "front"]);
    assert!(inspect.contains("\"Name\": \"srv\""), "{inspect}");
    assert!(inspect.contains(&format!("{ip}/")), "{inspect}");
    // Another network reaches neither the name nor the address.
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--network",
            "back",
            "busybox",
            "nslookup",
            "srv",
        ],
        LIMIT,
    );
    assert!(!out.status.success(), "srv resolved from back");
    let url = format!("http://{ip}/");
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--network",
            "back",
            "busybox",
            "sh",
            "-c",
            &format!("timeout 5 wget -qO- {url}; exit $?"),
        ],
        LIMIT,
    );
    assert!(!out.status.success(), "back reached srv at {ip}");
    // Connected to back as well, it serves there too.
    e.docker_ok(&["network", "connect", "back", "srv"]);
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "sh",
        "-c",
        "timeout 10 wget -qO- http://srv/; exit $?",
    ]);
    assert_eq!(out.trim(), "named");
    // A network in use cannot go; once its container is gone it can.
    let out = e.docker(&["network", "rm", "front"], LIMIT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has active endpoints"),
        "{}",
        stderr(&out)
    );
    e.docker_ok(&["network", "disconnect", "back", "srv"]);
    e.docker_ok(&["rm", "-f", "srv"]);
    e.docker_ok(&["network", "rm", "front", "back"]);
}

#[test]
fn network_verbs_answer_as_dockerd() {
    let e = engine();
    e.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/16",
        "--gateway",
        "10.77.0.254",
        "--label",
        "team=web",
        "pinned",
    ]);
    let out = e.docker(
        &["network", "create", "--subnet", "10.77.1.0/24", "overlap"],
        LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Pool overlaps with other one on this address space"),
        "{}",
        stderr(&out)
    );
    let out = e.docker(&["network", "create", "pinned"], LIMIT);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = e.docker(&["network", "rm", "bridge"], LIMIT);
    assert!(
        stderr(&out).contains("pre-defined network"),
        "{}",
        stderr(&out)
    );
    let ls = e.docker_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "host host", "none null", "pinned bridge"] {
        assert!(ls.lines().any(|l| l == want), "{want} missing: {ls}");
    }
    let ls = e.docker_ok(&["network", "ls", "-q", "--filter", "label=team=web"]);
    assert_eq!(ls.lines().count(), 1, "{ls}");
    // A chosen address, then the inspect fields a user reads.
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "pinned",
        "--ip",
        "10.77.3.4",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(container_ip(e, "fixed"), "10.77.3.4");
    let gw = e.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.Gateway}} {{.MacAddress}}{{end}}",
        "fixed",
    ]);
    assert_eq!(gw.trim(), "10.77.0.254 02:42:0a:4d:03:04");
    let route = e.docker_ok(&["exec", "fixed", "ip", "route"]);
    assert!(route.contains("default via 10.77.0.254"), "{route}");
    let hosts = e.docker_ok(&["exec", "fixed", "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.77.3.4\t"), "{hosts}");
    assert!(hosts.contains("host.docker.internal"), "{hosts}");
    // --network none has only loopback; --network host has the VM's eth0.
    let links = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(links.lines().count(), 1, "{links}");
    let links = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(links.contains("eth0"), "{links}");
    // --add-host and --dns land in the container's files.
    let files = e.docker_ok(&[
        "run",
        "--rm",
        "--add-host",
        "db.local:10.1.2.3",
        "--dns",
        "9.9.9.9",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf",
    ]);
    assert!(files.contains("10.1.2.3\tdb.local"), "{files}");
    assert!(files.contains("nameserver 9.9.9.9"), "{files}");
    let out = e.docker(
        &["run", "--rm", "--network", "nowhere", "busybox", "true"],
        LIMIT,
    );
    assert!(
        stderr(&out).contains("network nowhere not found"),
        "{}",
        stderr(&out)
    );
    e.docker_ok(&["rm", "-f", "fixed"]);
    // dockerd 20.10 takes any name but an empty one: "a b", ".x", "été" all create.
    e.docker_ok(&["network", "create", "my net"]);
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "my net",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(got.contains("inet "), "{got}");
    let named = e.docker_ok(&["network", "inspect", "-f", "{{.Name}}", "my net"]);
    assert_eq!(named.trim(), "my net");
    let pruned = e.docker_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("pinned"), "{pruned}");
    assert!(pruned.contains("my net"), "{pruned}");
}

/// A DNS server on the host's 127.0.0.1:53 that answers `probe.berth.test` with 10.9.8.7 (and
/// counts the questions it saw); `None` where port 53 cannot be had.
fn host_dns() -> Option<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    let sock = match UdpSocket::bind("127.0.0.1:53") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind 127.0.0.1:53 ({e}): --dns relaying left unchecked");
            return None;
        }
    };
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            // The question: labels from byte 12 to a zero byte, then type and class.
            let Some(end) = q.iter().skip(12).position(|b| *b == 0).map(|p| 12 + p + 5) else {
                continue;
            };
            if end > n {
                continue;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let name: Vec<u8> = q[12..end - 4].to_vec();
            let is_a = q[end - 4..end - 2] == [0, 1];
            let ours = name == b"\x05probe\x05berth\x04test\x00";
            let mut r = q[..end].to_vec();
            r[2] = 0x81; // response, recursion desired
            r[3] = if ours { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN if not ours
            let answers = u16::from(ours && is_a);
            r[6..8].copy_from_slice(&answers.to_be_bytes());
            r[8..12].fill(0);
            if answers == 1 {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 8, 7]);
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    Some(asked)
}

#[test]
fn dns_option_on_a_user_network_relays_and_keeps_container_names() {
    let e = engine();
    let Some(asked) = host_dns() else {
        return;
    };
    e.docker_ok(&["network", "create", "dns-relay"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "dns-peer",
        "--network",
        "dns-relay",
        "busybox",
        "sleep",
        "600",
    ]);
    // The host's loopback is 192.168.127.1 from the VM: the server above, as the user's --dns.
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "dns-relay",
        "--dns",
        "192.168.127.1",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup dns-peer; nslookup probe.berth.test",
    ]);
    assert!(
        !out.contains("nameserver 192.168.127.1"),
        "the embedded server stays the container's resolver: {out}"
    );
    let peer_ip = container_ip(e, "dns-peer");
    assert!(
        out.contains(&peer_ip),
        "container names still resolve: {out}"
    );
    assert!(out.contains("10.9.8.7"), "other names go to --dns: {out}");
    assert!(asked.load(std::sync::atomic::Ordering::SeqCst) > 0);
    e.docker_ok(&["rm", "-f", "dns-peer"]);
    e.docker_ok(&["network", "rm", "dns-relay"]);
}

#[test]
fn udp_from_containers_reaches_the_hosts_loopback_and_the_answer_comes_back() {
    let e = engine();
    e.echo_image();
    // A UDP echo server on the host's 127.0.0.1 only.
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = server.recv_from(&mut buf) {
            let mut answer = b"host heard: ".to_vec();
            answer.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&answer, peer);
        }
    });
    e.docker_ok(&["network", "create", "udp-out"]);
    // Masqueraded out of the default bridge and a user network, and from the VM's namespace.
    for net in ["bridge", "udp-out", "host"] {
        let msg = format!("from {net}");
        let out = e.docker_ok(&[
            "run",
            "--rm",
            "--network",
            net,
            "echo",
            "echo-server",
            "udp-ask",
            "host.docker.internal",
            &port.to_string(),
            &msg,
        ]);
        assert_eq!(out.trim(), format!("host heard: {msg}"), "{net}");
    }
    e.docker_ok(&["network", "rm", "udp-out"]);
}

#[test]
fn a_published_udp_port_echoes_datagrams() {
    let e = engine();
    e.echo_image();
    let port = free_port();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "udp-echo",
        "-p",
        &format!("{port}:7/udp"),
        "echo",
        "echo-server",
        "7",
    ]);
    assert_eq!(
        e.docker_ok(&["port", "udp-echo", "7/udp"]).trim(),
        format!("127.0.0.1:{port}")
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    // The server may still be starting: datagrams are retried, as any UDP client does.
    let mut answered = 0;
    for i in 0..200u32 {
        let msg = format!("datagram {i}");
        loop {
            sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && &buf[..n] == msg.as_bytes()
            {
                answered += 1;
                break;
            }
            assert!(start.elapsed() < LIMIT, "no echo for {msg:?}");
        }
        if answered >= 20 {
            break;
        }
    }
    assert_eq!(answered, 20);
    e.docker_ok(&["rm", "-f", "udp-echo"]);
}

#[test]
fn two_hundred_connections_at_once_keep_their_bytes_and_bad_ones_do_not_hurt() {
    let e = engine();
    e.echo_image();
    let port = free_port();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "tcp-echo",
        "-p",
        &format!("{port}:7"),
        "echo",
        "echo-server",
        "7",
    ]);
    let roundtrip = move |seed: u32, len: usize| -> Result<(), String> {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as u8)
            .collect();
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || w.write_all(&sent));
        let mut got = vec![0u8; len];
        s.read_exact(&mut got).map_err(|e| e.to_string())?;
        writer.join().unwrap().map_err(|e| e.to_string())?;
        if got != data {
            return Err(format!("connection {seed}: bytes differ"));
        }
        Ok(())
    };
    let start = Instant::now();
    while roundtrip(0, 16).is_err() {
        assert!(start.elapsed() < LIMIT, "the echo server never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Half-open connections that never send a byte, and a malformed forward request straight
    // to the agent's forward port: neither stops other connections.
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let vsock = e.home.join("run/vm.vsock");
    let mut raw = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(berth_engine::agent::connect_once(&vsock, 1026))
        .expect("the agent proves its key on the forward port")
        .into_std()
        .unwrap();
    raw.set_nonblocking(false).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    raw.write_all(b"not a request\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("ERR bad forward request"), "{answer:?}");
    let workers: Vec<_> = (0..200u32)
        .map(|i| std::thread::spawn(move || roundtrip(i, 64 * 1024)))
        .collect();
    let failures: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().unwrap().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    drop(idle);
    e.docker_ok(&["rm", "-f", "tcp-echo"]);
    // The container is gone: a connection is refused or closed at once, not hung.
    let start = Instant::now();
    if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(b"x");
        let mut buf = [0u8; 1];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    assert!(start.elapsed() < Duration::from_secs(30));
}
