//! `berth engine`: the headless engine in the foreground. Boots the VM, serves the API socket
//! (and, when asked, TCP with mutual TLS), stops the VM cleanly on SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use berth_engine::api;
use berth_engine::paths::Paths;
use berth_engine::settings::BackendChoice;
use berth_engine::vm::{Overrides, Supervisor, VmState};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Exit once the VM has been stopped (used by `berth vm start`).
    #[arg(long)]
    exit_when_stopped: bool,
    /// Serve the socket without booting the VM.
    #[arg(long)]
    no_start: bool,
    /// The API socket (default: docker.sock in the runtime directory).
    #[arg(long)]
    socket: Option<std::path::PathBuf>,
    /// VM backend, over settings.json.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// A registry mirror for Docker Hub images (repeatable), as dockerd's --registry-mirror.
    #[arg(long = "registry-mirror")]
    registry_mirrors: Vec<String>,
    /// A registry spoken to over plain HTTP (repeatable), as dockerd's --insecure-registry.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Published ports without a host IP listen on every interface, as with dockerd (by
    /// default they listen on 127.0.0.1 only).
    #[arg(long)]
    expose_ports_on_lan: bool,
    /// Also serve the API on this TCP address (HOST:PORT), with mutual TLS: clients must present
    /// a certificate signed by --tlscacert. Without TLS files it is refused unless
    /// --insecure-tcp is given.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<std::net::SocketAddr>,
    /// CA certificate (PEM) that client certificates must chain to.
    #[arg(long, requires = "tcp")]
    tlscacert: Option<std::path::PathBuf>,
    /// This engine's certificate (PEM).
    #[arg(long, requires = "tcp")]
    tlscert: Option<std::path::PathBuf>,
    /// This engine's private key (PEM).
    #[arg(long, requires = "tcp")]
    tlskey: Option<std::path::PathBuf>,
    /// Serve --tcp without TLS: anyone who reaches the port controls the engine.
    #[arg(long, requires = "tcp", conflicts_with_all = ["tlscacert", "tlscert", "tlskey"])]
    insecure_tcp: bool,
}

/// Binds `--tcp` and serves the API there (TLS unless `--insecure-tcp`) until `stop` resolves.
async fn serve_tcp(
    args: &EngineArgs,
    sup: Supervisor,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    let Some(addr) = args.tcp else {
        return Ok(None);
    };
    let until = async move {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    };
    if args.insecure_tcp {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!(
            "WARNING: serving the Docker API on tcp://{addr} without TLS (--insecure-tcp): anyone who \
             can reach it controls the engine"
        );
        println!("Berth engine serving tcp://{addr} (no TLS)");
        // Never to the VM: its containers reach the host's loopback through the gateway.
        let tcp = api::local_peer::NotFromVm::new(tcp);
        return Ok(Some(tokio::spawn(api::serve_on(tcp, sup, until))));
    }
    let (Some(ca), Some(cert), Some(key)) = (&args.tlscacert, &args.tlscert, &args.tlskey) else {
        anyhow::bail!(
            "--tcp needs --tlscacert, --tlscert and --tlskey (mutual TLS), or --insecure-tcp to serve \
             without TLS"
        );
    };
    let config = api::tcp::server_config(&api::tcp::TlsFiles {
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    })?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let listener = api::tcp::tls_listener(tcp, config)?;
    println!("Berth engine serving tcp://{addr} (mutual TLS)");
    Ok(Some(tokio::spawn(api::serve_on(listener, sup, until))))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Backend {
    Auto,
    Builtin,
    Qemu,
}

pub async fn run(args: EngineArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    paths.ensure()?;
    // Every published-port connection costs two descriptors: take what the system allows.
    berth_engine::limits::raise_fd_limit();
    let sock = args.socket.clone().unwrap_or_else(|| paths.docker_socket());
    let listener = api::bind(&sock).await?;
    let sup = Supervisor::new(paths.clone()).with_overrides(Overrides {
        backend: args.backend.map(|b| match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Builtin => BackendChoice::Builtin,
            Backend::Qemu => BackendChoice::Qemu,
        }),
        registry_mirrors: args.registry_mirrors.clone(),
        insecure_registries: args.insecure_registries.clone(),
        expose_ports_on_lan: args.expose_ports_on_lan,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tcp_server = serve_tcp(&args, sup.clone(), stop_rx.clone()).await?;
    let mut unix_stop = stop_rx;
    let server = tokio::spawn(api::serve(listener, sup.clone(), async move {
        let _ = unix_stop.wait_for(|s| *s).await;
    }));
    println!(
        "Berth engine {} serving unix://{}",
        berth_engine::VERSION,
        sock.display()
    );
    println!("  export DOCKER_HOST=unix://{}", sock.display());

    let mut booted = true;
    if !args.no_start {
        let _ = std::fs::remove_file(paths.vm_failure());
        match sup.start().await {
            Ok(r) => {
                if let Some(why) = &r.fallback {
                    println!("{why}; fell back to qemu with KVM");
                }
                println!(
                    "VM running: {} ({:?}), kernel {}, agent {} ready in {} ms",
                    r.backend, r.accel, r.kernel, r.agent_version, r.boot.agent_ready_ms
                );
            }
            Err(e) => {
                // No `ready:`: the engine says why, leaves the status for `berth vm status`,
                // shuts down and exits non-zero.
                booted = false;
                let status = sup.status();
                eprintln!("berth: the VM did not start: {e}");
                if let Some(tail) = status.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                    eprintln!("--- the VM's serial log, last lines ---\n{tail}");
                }
                if let Ok(json) = serde_json::to_vec_pretty(&status) {
                    let _ = berth_engine::paths::write_private_atomic(&paths.vm_failure(), &json);
                }
            }
        }
    }
    if booted {
        println!("ready: unix://{}", sock.display());
        serve_until_asked_to_stop(&sup, args.exit_when_stopped).await?;
    }
    if matches!(
        sup.status().state,
        VmState::Running | VmState::Starting | VmState::Failed
    ) && let Err(e) = sup.stop().await
    {
        eprintln!("berth: stopping the VM: {e}");
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(tcp) = tcp_server {
        let _ = tcp.await;
    }
    let _ = std::fs::remove_file(&sock);
    println!("Berth engine stopped");
    Ok(if booted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Until SIGTERM or SIGINT, or (with `exit_when_stopped`) until the VM is stopped.
async fn serve_until_asked_to_stop(
    sup: &Supervisor,
    exit_when_stopped: bool,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut states = sup.subscribe();
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            changed = states.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let state = states.borrow_and_update().state;
                if exit_when_stopped && state == VmState::Stopped {
                    return Ok(());
                }
            }
        }
    }
}
