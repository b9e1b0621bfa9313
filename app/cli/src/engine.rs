//! `berth engine`: the headless engine in the foreground. Boots the VM, serves the API socket,
//! stops the VM cleanly on SIGINT/SIGTERM.

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
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, sup.clone(), async {
        let _ = stop_rx.await;
    }));
    println!(
        "Berth engine {} serving unix://{}",
        berth_engine::VERSION,
        sock.display()
    );
    println!("  export DOCKER_HOST=unix://{}", sock.display());

    if !args.no_start {
        match sup.start().await {
            Ok(r) => println!(
                "VM running: {} ({:?}), kernel {}, agent {} ready in {} ms",
                r.backend, r.accel, r.kernel, r.agent_version, r.boot.agent_ready_ms
            ),
            Err(e) => eprintln!("berth: the VM did not start: {e}"),
        }
    }
    println!("ready: unix://{}", sock.display());

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut states = sup.subscribe();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().state;
                if args.exit_when_stopped && state == VmState::Stopped {
                    break;
                }
            }
        }
    }
    if matches!(
        sup.status().state,
        VmState::Running | VmState::Starting | VmState::Failed
    ) && let Err(e) = sup.stop().await
    {
        eprintln!("berth: stopping the VM: {e}");
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_file(&sock);
    println!("Berth engine stopped");
    Ok(ExitCode::SUCCESS)
}
