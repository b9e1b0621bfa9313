//! The per-boot key that tells the engine it speaks to its own agent. The engine makes a fresh
//! [`Key`] for every boot and hands it to the guest's init inside the boot archive (never on the
//! kernel command line, which every container reads in `/proc/cmdline`); init gives it to the
//! agent through a pipe and keeps it out of every file.
//!
//! Every vsock stream between the two starts with a challenge, whichever side opened it: the
//! engine sends a fresh [`NONCE_LEN`]-byte nonce, the agent answers with
//! HMAC-SHA256(key, purpose ‖ port ‖ nonce), and the engine sends nothing else until that
//! answer checks out. So a process in the VM that binds an agent port while the agent
//! restarts, or that dials the host's registry proxy, learns nothing and reaches nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
/// Binds an answer to this protocol, so it is worth nothing as any other HMAC.
const PURPOSE: &[u8] = b"berth-agent-proof-v1";

/// A per-boot secret shared by the engine and the agent of one VM.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> std::io::Result<Key> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Key(key))
    }

    /// The key of exactly [`KEY_LEN`] bytes; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Key> {
        Some(Key(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn hmac(&self, port: u32, nonce: &[u8; NONCE_LEN]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(PURPOSE);
        mac.update(&port.to_be_bytes());
        mac.update(nonce);
        mac
    }
}

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned())
}

/// The engine's side: sends a fresh nonce and checks the answer. Only after `Ok` may anything
/// else be written to `stream`. The caller bounds the wait.
pub async fn challenge<S>(stream: &mut S, key: &Key, port: u32) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.write_all(&nonce).await?;
    stream.flush().await?;
    let mut answer = [0u8; MAC_LEN];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                refused("the peer closed instead of proving the key")
            }
            _ => e,
        })?;
    // Constant time: `verify_slice` compares without early exit.
    key.hmac(port, &nonce)
        .verify_slice(&answer)
        .map_err(|_| refused("the peer does not hold this VM's agent key"))
}

/// The agent's side: reads the engine's nonce and answers it. The caller bounds the wait.
pub async fn prove<S>(stream: &mut S, key: &Key, port: u32) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut nonce = [0u8; NONCE_LEN];
    stream.read_exact(&mut nonce).await?;
    stream.write_all(&answer(key, port, &nonce)).await?;
    stream.flush().await
}

/// The answer to `nonce` on `port`: what [`prove`] writes (for a blocking stand-in).
pub fn answer(key: &Key, port: u32, nonce: &[u8; NONCE_LEN]) -> [u8; MAC_LEN] {
    key.hmac(port, nonce).finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_right_key_passes_and_what_follows_is_intact() {
        let key = Key::generate().unwrap();
        let (mut engine, mut agent) = tokio::io::duplex(256);
        let agent_key = key.clone();
        let agent_side = tokio::spawn(async move {
            prove(&mut agent, &agent_key, 1024).await.unwrap();
            let mut rest = [0u8; 5];
            agent.read_exact(&mut rest).await.unwrap();
            rest
        });
        challenge(&mut engine, &key, 1024).await.unwrap();
        engine.write_all(b"hello").await.unwrap();
        assert_eq!(&agent_side.await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn another_key_another_port_or_a_replay_is_refused() {
        let key = Key::generate().unwrap();
        let other = Key::generate().unwrap();
        assert_ne!(key, other);
        for (prover, port) in [(other.clone(), 1024), (key.clone(), 1026)] {
            let (mut engine, mut agent) = tokio::io::duplex(256);
            tokio::spawn(async move { prove(&mut agent, &prover, port).await });
            let err = challenge(&mut engine, &key, 1024).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        }
        // A recorded answer is no good for the next nonce.
        let (mut engine, mut agent) = tokio::io::duplex(256);
        let k = key.clone();
        tokio::spawn(async move { prove(&mut agent, &k, 1024).await });
        challenge(&mut engine, &key, 1024).await.unwrap();
        let recorded = {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[0] = 1;
            key.hmac(1024, &nonce).finalize().into_bytes()
        };
        let (mut engine, mut squatter) = tokio::io::duplex(256);
        tokio::spawn(async move {
            let mut nonce = [0u8; NONCE_LEN];
            squatter.read_exact(&mut nonce).await.unwrap();
            squatter.write_all(&recorded).await.unwrap();
            squatter
        });
        assert!(challenge(&mut engine, &key, 1024).await.is_err());
    }

    #[tokio::test]
    async fn a_peer_that_closes_is_refused_with_a_reason() {
        let key = Key::generate().unwrap();
        let (mut engine, agent) = tokio::io::duplex(256);
        drop(agent);
        let err = challenge(&mut engine, &key, 1024).await.unwrap_err();
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn keys_are_exactly_32_bytes_and_never_printed() {
        assert!(Key::from_bytes(&[7; 31]).is_none());
        let key = Key::from_bytes(&[7; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "Key(..)");
    }
}
