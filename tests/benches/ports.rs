//! `make bench`: what a published port costs. Three paths carry the same traffic from the same
//! client (4 connections, 10 x 100 MiB in all, echoed back; then small requests, one connection
//! each), in one run:
//!
//! - Berth end to end: a container's echo server published with `-p` (engine, vsock, agent,
//!   container; the guest under qemu TCG here).
//! - Berth's host-side forwarder alone: the engine's `ports::forward` splicing to a local Unix
//!   socket that stands in for the VM's vsock socket and echoes.
//! - dockerd's `docker-proxy` (Debian's docker.io) in front of a local echo server, the peer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::registry::free_port;
use berth_tests::{SharedEngine, shared_engine};

const CONNECTIONS: usize = 4;
const TRANSFERS: usize = 10;
const TRANSFER_BYTES: usize = 100 * 1024 * 1024;
const SMALL_REQUESTS: usize = 200;

/// Sends `bytes` on a fresh connection and reads them back; the writer runs on its own thread.
fn echo_through(port: u16, bytes: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "the echo ended after {got} of {bytes} bytes");
        got += n;
    }
    writer.join().unwrap();
}

/// Runs `count` jobs spread over CONNECTIONS threads; returns the seconds it took.
fn spread(count: usize, job: impl Fn() + Send + Sync + Copy + 'static) -> f64 {
    let start = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            std::thread::spawn(move || {
                for _ in (c..count).step_by(CONNECTIONS) {
                    job();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    start.elapsed().as_secs_f64()
}

/// MB/s (payload one way) for TRANSFERS transfers spread over CONNECTIONS threads.
fn throughput(port: u16) -> f64 {
    let secs = spread(TRANSFERS, move || echo_through(port, TRANSFER_BYTES));
    (TRANSFERS * TRANSFER_BYTES) as f64 / (1024.0 * 1024.0) / secs
}

/// Small requests per second: a fresh connection each, 64 bytes there and back, 4 at a time.
fn request_rate(port: u16) -> f64 {
    SMALL_REQUESTS as f64 / spread(SMALL_REQUESTS, move || echo_through(port, 64))
}

/// Echoes what `conn` sends until it ends.
fn echo_back(conn: &mut (impl Read + Write)) {
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// An echo server on the host's loopback, a thread per connection.
fn local_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || echo_back(&mut { conn }));
        }
    });
    port
}

/// A stand-in for the VM's hybrid vsock socket: answers the `CONNECT` and forward handshakes
/// as vhost-device-vsock and the agent do, then echoes.
fn fake_vsock(path: &Path) {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    let key = berth_agent_proto::auth::Key::generate().unwrap();
    std::fs::write(berth_engine::agent::key_path(path), key.as_bytes()).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let key = key.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut lines = 0;
                let mut byte = [0u8; 1];
                // `CONNECT 1026\n`, the key's challenge, then `tcp <id> <port>\n`.
                while lines < 2 {
                    if conn.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    if byte[0] == b'\n' {
                        lines += 1;
                        let answer: &[u8] = if lines == 1 { b"OK 1026\n" } else { b"OK\n" };
                        if conn.write_all(answer).is_err() {
                            return;
                        }
                        if lines == 1 {
                            let mut nonce = [0u8; berth_agent_proto::auth::NONCE_LEN];
                            if conn.read_exact(&mut nonce).is_err() {
                                return;
                            }
                            let proof = berth_agent_proto::auth::answer(&key, 1026, &nonce);
                            if conn.write_all(&proof).is_err() {
                                return;
                            }
                        }
                    }
                }
                echo_back(&mut conn);
            });
        }
    });
}

/// Berth's forwarder alone: a host listener whose connections `ports::forward` carries to
/// the stand-in socket.
fn forwarder_alone(dir: &Path) -> u16 {
    let vsock = dir.join("vm.vsock");
    fake_vsock(&vsock);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let vsock = vsock.clone();
                tokio::spawn(async move {
                    let _ = berth_engine::ports::forward(
                        conn,
                        &vsock,
                        "bench",
                        7,
                        berth_engine::ports::Target::Address,
                    )
                    .await;
                });
            }
        });
    });
    port
}

fn berth_end_to_end(e: &SharedEngine) -> u16 {
    e.echo_image();
    let port = free_port();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "bench-echo",
        "-p",
        &format!("{port}:7"),
        "echo",
        "echo-server",
        "7",
    ]);
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 1];
            if s.write_all(b"x").is_ok() && s.read(&mut b).unwrap_or(0) == 1 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "echo never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    port
}

fn main() {
    let Ok(proxy) = which("docker-proxy") else {
        eprintln!("ports bench: docker-proxy is missing; run scripts/setup.sh --bench");
        std::process::exit(1);
    };
    let dir = tempfile::tempdir().unwrap();

    let echo = local_echo();
    let proxy_port = free_port();
    // docker-proxy reports readiness on fd 3, as dockerd hands it a pipe there.
    let mut docker_proxy = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec {} -proto tcp -host-ip 127.0.0.1 -host-port {proxy_port} -container-ip 127.0.0.1 -container-port {echo} 3>/dev/null",
            proxy.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-proxy");
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", proxy_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "docker-proxy did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("ports bench: docker-proxy");
    let proxy_figures = (throughput(proxy_port), request_rate(proxy_port));
    let _ = docker_proxy.kill();
    let _ = docker_proxy.wait();

    eprintln!("ports bench: berth's forwarder alone");
    let fwd = forwarder_alone(dir.path());
    let fwd_figures = (throughput(fwd), request_rate(fwd));

    eprintln!("ports bench: berth end to end");
    let e = shared_engine();
    let port = berth_end_to_end(e);
    let e2e_figures = (throughput(port), request_rate(port));
    e.docker_ok(&["rm", "-f", "bench-echo"]);

    println!(
        "ports bench ({CONNECTIONS} connections, {TRANSFERS} x {} MiB echoed; {SMALL_REQUESTS} small requests, a connection each):",
        TRANSFER_BYTES / (1024 * 1024)
    );
    println!("{:<40} {:>12} {:>14}", "", "MB/s", "requests/s");
    for (name, (mbs, rps)) in [
        ("docker-proxy -> local echo (peer)", proxy_figures),
        ("berth forwarder -> local stand-in", fwd_figures),
        ("berth end to end (VM under TCG)", e2e_figures),
    ] {
        println!("{name:<40} {mbs:>12.1} {rps:>14.1}");
    }
    println!(
        "ratios to docker-proxy: forwarder alone {:.2} MB/s, {:.2} req/s; end to end {:.2} MB/s, {:.2} req/s",
        fwd_figures.0 / proxy_figures.0,
        fwd_figures.1 / proxy_figures.1,
        e2e_figures.0 / proxy_figures.0,
        e2e_figures.1 / proxy_figures.1
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
