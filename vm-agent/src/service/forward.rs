//! Published ports, guest side: a raw vsock listener on [`forward::PORT`], speaking the
//! protocol of [`berth_agent_proto::forward`] once the agent proved its key on the stream. `tcp` reaches the container's address on its
//! first network, as dockerd's proxy does (its loopback inside its namespace when it has no
//! network address); `tcp-lo` its loopback (what `berth port-forward` reaches, so servers bound
//! to 127.0.0.1 in the container answer); `udp` relays datagram frames until the engine closes
//! the stream.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_proto::auth::Key;
use berth_agent_proto::forward::{self, Kind, parse_request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener, VsockStream};

use crate::containers::{ContainerStore, Status, lifecycle};

/// Runs `f` in the network namespace of process `pid`, on a fresh thread so no other work of
/// the agent ever runs there. Sockets made there keep that namespace.
fn in_netns<T: Send + 'static>(
    pid: u32,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
}

/// Where a target lives: the container's address, or (none) its namespace's loopback.
fn target_addr(ip: Option<Ipv4Addr>, port: u16) -> SocketAddr {
    SocketAddr::from((ip.unwrap_or(Ipv4Addr::LOCALHOST), port))
}

fn connect_tcp(pid: u32, ip: Option<Ipv4Addr>, port: u16) -> std::io::Result<std::net::TcpStream> {
    let addr = target_addr(ip, port);
    let connect = move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10));
    match ip {
        Some(_) => connect(),
        None => in_netns(pid, connect),
    }
}

fn connect_udp(pid: u32, ip: Option<Ipv4Addr>, port: u16) -> std::io::Result<std::net::UdpSocket> {
    let addr = target_addr(ip, port);
    let connect = move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(addr)?;
        Ok(sock)
    };
    match ip {
        Some(_) => connect(),
        None => in_netns(pid, connect),
    }
}

async fn serve(
    store: Arc<ContainerStore>,
    mut stream: VsockStream,
    peer: VsockAddr,
    key: Option<Arc<Key>>,
) -> std::io::Result<()> {
    super::auth::admit(&mut stream, peer, key.as_deref(), forward::PORT).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no forward request"))??;
    let target = parse_request(line.trim()).and_then(|(kind, key, port)| {
        let id = store.resolve(&key).map_err(|e| e.to_string())?;
        let st = lifecycle::refresh(&store, &id);
        if st.status != Status::Running {
            return Err(format!("container {id} is not running"));
        }
        let ip = match kind {
            Kind::TcpLoopback => None,
            _ => crate::net::docker::container_ip(&store.dir(&id)),
        };
        Ok((kind, st.pid, ip, port))
    });
    let mut stream = reader.into_inner();
    let (kind, pid, ip, port) = match target {
        Ok(t) => t,
        Err(e) => {
            let _ = stream.write_all(format!("ERR {e}\n").as_bytes()).await;
            return Err(std::io::Error::other(e));
        }
    };
    if kind == Kind::Udp {
        let sock = tokio::task::spawn_blocking(move || connect_udp(pid, ip, port))
            .await
            .map_err(std::io::Error::other)?;
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                let _ = stream.write_all(format!("ERR {e}\n").as_bytes()).await;
                return Err(e);
            }
        };
        sock.set_nonblocking(true)?;
        stream.write_all(b"OK\n").await?;
        relay_datagrams(stream, tokio::net::UdpSocket::from_std(sock)?).await;
        return Ok(());
    }
    let conn = tokio::task::spawn_blocking(move || connect_tcp(pid, ip, port))
        .await
        .map_err(std::io::Error::other)?;
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let _ = stream.write_all(format!("ERR {e}\n").as_bytes()).await;
            return Err(e);
        }
    };
    conn.set_nonblocking(true)?;
    let conn = tokio::net::TcpStream::from_std(conn)?;
    stream.write_all(b"OK\n").await?;
    splice(stream, conn).await;
    Ok(())
}

/// Relays length-framed datagrams from the stream to the container's socket and its answers
/// back, until the engine closes the stream (it ends idle associations).
async fn relay_datagrams(stream: VsockStream, sock: tokio::net::UdpSocket) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let inbound = async {
        let mut buf = vec![0u8; 65535];
        while let Ok(n) = forward::read_datagram(&mut rd, &mut buf).await {
            let _ = sock.send(&buf[..n]).await;
        }
    };
    let outbound = async {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok(n) = sock.recv(&mut buf).await else {
                // An ICMP error (nothing listens yet) is not the end of the association.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if forward::write_datagram(&mut wr, &buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

/// Copies both ways until the container's side ends; the host's end of input only
/// half-closes towards the container (its answer may still come). Hybrid vsock does not
/// carry a half-close to the host, so the stream is closed whole once the container is done.
async fn splice(host: VsockStream, container: tokio::net::TcpStream) {
    let (mut host_r, mut host_w) = tokio::io::split(host);
    let (mut cont_r, mut cont_w) = container.into_split();
    let inbound = async {
        let _ = tokio::io::copy(&mut host_r, &mut cont_w).await;
        let _ = cont_w.shutdown().await;
        std::future::pending::<()>().await
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut cont_r, &mut host_w).await;
        let _ = host_w.shutdown().await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}

/// Forward streams waiting to be accepted, at most.
const FORWARD_BACKLOG: i32 = 4096;

/// Accepts forward streams until the agent ends.
pub async fn run(store: Arc<ContainerStore>, key: Option<Arc<Key>>) -> std::io::Result<()> {
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, forward::PORT))?;
    // A burst of published-port connections arrives at once: a deep queue (the kernel caps it
    // at somaxconn) rather than the library's 128, which refuses the rest.
    nix::sys::socket::listen(
        &listener,
        nix::sys::socket::Backlog::new(FORWARD_BACKLOG)
            .unwrap_or(nix::sys::socket::Backlog::MAXCONN),
    )?;
    let mut backoff = berth_agent_proto::accept::AcceptBackoff::new("the port-forward listener");
    loop {
        let (stream, peer) = backoff.retry(|| listener.accept()).await;
        let (store, key) = (store.clone(), key.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(store, stream, peer, key).await {
                tracing::info!("port forward: {e}");
            }
        });
    }
}
