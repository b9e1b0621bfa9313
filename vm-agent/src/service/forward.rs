//! Published ports, guest side: a raw vsock listener on [`FORWARD_PORT`]. The engine opens one
//! stream per host connection and sends one line, `tcp <container> <port>\n`; the agent
//! connects to that port on the container's loopback, inside the container's network
//! namespace, answers `OK\n` (or `ERR <reason>\n`), then splices bytes both ways. No gRPC
//! framing on this path.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener, VsockStream};

use crate::containers::{ContainerStore, Status, lifecycle};

pub const FORWARD_PORT: u32 = 1026;

/// Parses `tcp <container> <port>`.
pub fn parse_request(line: &str) -> Result<(String, u16), String> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("tcp"), Some(id), Some(port), None) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(|p| (id.to_owned(), p))
            .ok_or_else(|| format!("bad port {port}")),
        _ => Err(format!("bad forward request {line:?}")),
    }
}

/// Connects to 127.0.0.1:`port` in the network namespace of process `pid`. The socket keeps
/// that namespace after the thread that made it leaves.
fn connect_in_netns(pid: u32, port: u16) -> std::io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    // A fresh thread, so no other work of the agent ever runs in the container's namespace.
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )
    })
    .join()
    .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
}

async fn serve(store: Arc<ContainerStore>, stream: VsockStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::other("no forward request"))??;
    let target = parse_request(line.trim()).and_then(|(key, port)| {
        let id = store.resolve(&key).map_err(|e| e.to_string())?;
        let st = lifecycle::refresh(&store, &id);
        if st.status != Status::Running {
            return Err(format!("container {id} is not running"));
        }
        Ok((st.pid, port))
    });
    let mut stream = reader.into_inner();
    let conn = match target {
        Ok((pid, port)) => tokio::task::spawn_blocking(move || connect_in_netns(pid, port))
            .await
            .map_err(std::io::Error::other)?
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let _ = stream.write_all(format!("ERR {e}\n").as_bytes()).await;
            return Ok(());
        }
    };
    conn.set_nonblocking(true)?;
    let conn = tokio::net::TcpStream::from_std(conn)?;
    stream.write_all(b"OK\n").await?;
    splice(stream, conn).await;
    Ok(())
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

/// Accepts forward streams until the agent ends.
pub async fn run(store: Arc<ContainerStore>) -> std::io::Result<()> {
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, FORWARD_PORT))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(store, stream).await {
                tracing::debug!("port forward: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_requests() {
        assert_eq!(parse_request("tcp web 80"), Ok(("web".into(), 80)));
        assert!(parse_request("tcp web 0").is_err());
        assert!(parse_request("udp web 53").is_err());
        assert!(parse_request("tcp web 80 extra").is_err());
        assert!(parse_request("").is_err());
    }
}
