//! The agent service: a tonic gRPC server on AF_VSOCK port 1024 serving `System` and `Debug`.
//! Owns the vsock listener and the process-wide facts the services report; containers and images
//! come later as further services beside these.

mod containers;
mod debug;
pub mod forward;
mod images;
pub mod proxy;
mod system;

use std::process::ExitCode;

use berth_agent_proto::AGENT_PORT;
use std::sync::Arc;

use berth_agent_proto::v1::containers_server::ContainersServer;
use berth_agent_proto::v1::debug_server::DebugServer;
use berth_agent_proto::v1::images_server::ImagesServer;
use berth_agent_proto::v1::system_server::SystemServer;
use tokio_vsock::{VMADDR_CID_ANY, VsockAddr, VsockListener};

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
    match runtime.block_on(serve(AgentFacts::from_env())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(facts: AgentFacts) -> Result<(), Box<dyn std::error::Error>> {
    // TLS for registries: ring as rustls' provider (reqwest is built without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(crate::images::store::ImageStore::open(
        std::path::Path::new(crate::disk::MOUNT_POINT),
    )?);
    tokio::spawn(async {
        if let Err(e) = proxy::run().await {
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
    containers::spawn_monitor(cstore.clone(), store.clone(), facts.agent_starts == 1);
    {
        let cstore = cstore.clone();
        tokio::spawn(async move {
            if let Err(e) = forward::run(cstore).await {
                tracing::error!("port forward listener: {e}");
            }
        });
    }
    let containers = containers::ContainersService::new(cstore, store.clone());
    let images = images::ImagesService::new(
        store,
        users,
        Some(crate::images::pull::PROXY_URL.to_owned()),
    );
    let listener = VsockListener::bind(VsockAddr::new(VMADDR_CID_ANY, AGENT_PORT))?;
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
        .serve_with_incoming(listener.incoming())
        .await?;
    Ok(())
}
