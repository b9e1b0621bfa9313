//! The agent service: a tonic gRPC server on AF_VSOCK port 1024 serving `System`, `Debug`,
//! `Images`, `Containers`, `Networks` and `Volumes`, to streams from the host on which the
//! agent proved this boot's key ([`auth`]). Owns the vsock listener and the process-wide facts
//! the services report.

pub mod auth;
mod builds;
mod containers;
mod debug;
pub mod forward;
mod images;
mod networks;
pub mod proxy;
mod system;
mod volumes;

use std::process::ExitCode;

use berth_agent_proto::AGENT_PORT;
use std::sync::Arc;

use berth_agent_proto::v1::builds_server::BuildsServer;
use berth_agent_proto::v1::containers_server::ContainersServer;
use berth_agent_proto::v1::debug_server::DebugServer;
use berth_agent_proto::v1::images_server::ImagesServer;
use berth_agent_proto::v1::networks_server::NetworksServer;
use berth_agent_proto::v1::system_server::SystemServer;
use berth_agent_proto::v1::volumes_server::VolumesServer;
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener};

/// A Docker API JSON answer.
fn json_value(v: &serde_json::Value) -> tonic::Response<berth_agent_proto::v1::JsonResponse> {
    tonic::Response::new(berth_agent_proto::v1::JsonResponse {
        json: serde_json::to_vec(v).unwrap_or_default(),
    })
}

/// A JSON object request body; empty is `{}`.
fn json_body(bytes: &[u8]) -> Result<serde_json::Value, tonic::Status> {
    if bytes.is_empty() {
        return Ok(serde_json::json!({}));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| tonic::Status::invalid_argument(format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(tonic::Status::invalid_argument(
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Facts fixed when the agent process starts.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub init_started_ms: u64,
    pub agent_started_ms: u64,
    pub agent_starts: u32,
}

impl AgentFacts {
    fn from_env() -> Self {
        let num = |key: &str| std::env::var(key).ok().and_then(|v| v.parse().ok());
        AgentFacts {
            init_started_ms: num("BERTH_INIT_STARTED_MS").unwrap_or(0),
            agent_started_ms: crate::init::boottime_ms(),
            agent_starts: num("BERTH_AGENT_STARTS")
                .map(|n: u64| n as u32)
                .unwrap_or(1),
        }
    }
}

pub fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_AGENT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-agent: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Read before anything else runs: the descriptor must not leak into a child.
    let key = auth::key_from_init();
    if key.is_none() {
        eprintln!("berth-agent: init gave no agent key; the host will refuse this agent");
    }
    match runtime.block_on(serve(AgentFacts::from_env(), key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the host the agent serves (see [`berth_agent_proto::READY_PORT`]). Nobody listens
/// when the agent restarted under a running engine: a few tries, then nothing.
async fn say_ready() {
    use tokio::io::AsyncWriteExt;
    let addr = VsockAddr::new(tokio_vsock::VMADDR_CID_HOST, berth_agent_proto::READY_PORT);
    for _ in 0..30 {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio_vsock::VsockStream::connect(addr),
        )
        .await;
        match attempt {
            Ok(Ok(mut s)) => {
                let _ = s.write_all(b"ready\n").await;
                let _ = s.shutdown(std::net::Shutdown::Both);
                return;
            }
            Ok(Err(e)) => tracing::debug!("hello to the host: {e}"),
            Err(_) => tracing::debug!("hello to the host: no answer in 2 s"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The agent's descriptor limit, raised from the kernel's default for init (1024): each
/// published-port connection holds a vsock stream and a TCP socket here.
pub const AGENT_NOFILE: u64 = 1 << 20;

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, AGENT_NOFILE, AGENT_NOFILE) {
        tracing::warn!("raising the descriptor limit: {e}");
    }
}

async fn serve(
    facts: AgentFacts,
    key: Option<Arc<berth_agent_proto::auth::Key>>,
) -> Result<(), Box<dyn std::error::Error>> {
    raise_fd_limit();
    // TLS for registries: ring as rustls' provider (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(crate::images::store::ImageStore::open(
        std::path::Path::new(crate::disk::MOUNT_POINT),
    )?);
    let proxy_key = key.clone();
    tokio::spawn(async move {
        if let Err(e) = proxy::run(proxy_key).await {
            tracing::error!("registry proxy forwarder: {e}");
        }
    });
    let cstore = Arc::new(crate::containers::ContainerStore::open(
        std::path::Path::new(crate::disk::MOUNT_POINT),
    )?);
    let users: images::ImageUsers = {
        let cstore = cstore.clone();
        Arc::new(move |image_id: &str| {
            cstore
                .ids()
                .into_iter()
                .filter_map(|id| {
                    let rec = cstore.record(&id).ok()?;
                    (rec.image_id == image_id).then(|| {
                        let st = crate::containers::lifecycle::refresh(&cstore, &id);
                        let running = st.status.is_live();
                        (id, running)
                    })
                })
                .collect()
        })
    };
    let nets = crate::net::init(std::path::Path::new(crate::disk::MOUNT_POINT), &cstore)?;
    let vols = crate::volumes::init(std::path::Path::new(crate::disk::MOUNT_POINT))?;
    containers::spawn_monitor(cstore.clone(), store.clone(), facts.agent_starts == 1);
    {
        let (cstore, key) = (cstore.clone(), key.clone());
        tokio::spawn(async move {
            if let Err(e) = forward::run(cstore, key).await {
                tracing::error!("port forward listener: {e}");
            }
        });
    }
    let networks = networks::NetworksService::new(nets, cstore.clone());
    let volumes = volumes::VolumesService::new(vols, cstore.clone());
    let containers = containers::ContainersService::new(cstore.clone(), store.clone());
    let builds = builds::BuildsService::new(store.clone(), cstore.clone());
    let images = images::ImagesService::new(
        store,
        users,
        Some(crate::images::pull::PROXY_URL.to_owned()),
    );
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, AGENT_PORT))?;
    tokio::spawn(say_ready());
    tracing::info!(
        port = AGENT_PORT,
        starts = facts.agent_starts,
        "agent serving on vsock"
    );
    tonic::transport::Server::builder()
        .add_service(SystemServer::new(system::SystemService::new(facts)))
        .add_service(DebugServer::new(debug::DebugService))
        .add_service(ImagesServer::new(images))
        .add_service(ContainersServer::new(containers))
        .add_service(NetworksServer::new(networks))
        .add_service(VolumesServer::new(volumes))
        .add_service(BuildsServer::new(builds))
        .serve_with_incoming(auth::admitted(listener, key, AGENT_PORT))
        .await?;
    Ok(())
}
