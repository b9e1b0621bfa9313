//! Published UDP ports, host side: one socket per published port; each peer that sends to it
//! gets an association, one vsock stream to the agent (`udp <container> <port>`), carrying
//! datagram frames ([`berth_agent_proto::forward`]). An association ends after
//! [`IDLE`] without a datagram from its peer; answers go back to the peer from the published socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_agent_proto::forward::{self, Kind};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How long a peer's association lives without a datagram from the peer.
pub const IDLE: Duration = Duration::from_secs(60);
/// Datagrams queued per peer before new ones are dropped (UDP may drop; memory may not grow).
const QUEUE: usize = 256;
/// Associations (peers, each a vsock stream) per published port at once; a datagram from a
/// new peer beyond them is dropped until one ends.
pub const MAX_ASSOCIATIONS: usize = 1024;

/// Serves the published socket until the task is aborted (which ends every association).
pub async fn serve(sock: UdpSocket, vsock: PathBuf, id: String, port: u16) {
    let sock = Arc::new(sock);
    let mut peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks: JoinSet<SocketAddr> = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            got = sock.recv_from(&mut buf) => {
                let Ok((n, peer)) = got else { continue };
                let mut data = buf[..n].to_vec();
                if let Some(tx) = peers.get(&peer) {
                    match tx.try_send(data) {
                        // Queued, or dropped as UDP may drop: the association carries on.
                        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => continue,
                        // The association ended: a new one takes the datagram.
                        Err(mpsc::error::TrySendError::Closed(d)) => data = d,
                    }
                }
                if peers.len() >= MAX_ASSOCIATIONS && !peers.contains_key(&peer) {
                    continue;
                }
                let (tx, rx) = mpsc::channel(QUEUE);
                let _ = tx.try_send(data);
                peers.insert(peer, tx);
                tasks.spawn(associate(sock.clone(), vsock.clone(), id.clone(), port, peer, rx));
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(peer) = done
                    && peers.get(&peer).is_some_and(|tx| tx.is_closed())
                {
                    peers.remove(&peer);
                }
            }
        }
    }
}

/// One peer's association; returns the peer when it ends.
async fn associate(
    sock: Arc<UdpSocket>,
    vsock: PathBuf,
    id: String,
    port: u16,
    peer: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> SocketAddr {
    let stream = match crate::ports::open_stream(&vsock, Kind::Udp, &id, port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, id, port, "udp forward: {e}");
            return peer;
        }
    };
    let (mut rd, mut wr) = stream.into_split();
    // Each direction loops on its own (a frame read is never cut short by the other side).
    let up = async {
        while let Ok(Some(d)) = tokio::time::timeout(IDLE, rx.recv()).await {
            if forward::write_datagram(&mut wr, &d).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut payload = vec![0u8; 65535];
        while let Ok(n) = forward::read_datagram(&mut rd, &mut payload).await {
            let _ = sock.send_to(&payload[..n], peer).await;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
    rx.close();
    peer
}
