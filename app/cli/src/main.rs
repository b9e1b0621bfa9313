//! `berth`: the engine (`berth engine`), the health report (`berth doctor`) and the VM verbs
//! (`berth vm start | stop | status`). The docker-like verbs come later.

mod context;
mod doctor;
mod engine;
mod port;
mod vm;
mod vmm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Berth: containers in a lightweight VM, driven by the docker CLI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine in the foreground: boot the VM and serve the API socket.
    Engine(engine::EngineArgs),
    /// Check the host, boot the VM, time each phase and shut it down.
    Doctor(doctor::DoctorArgs),
    /// Start, stop or inspect a VM that stays up in a background engine.
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Create and select the docker CLI context `berth`, so `docker` talks to this engine.
    Context(context::ContextArgs),
    /// Run one VM with the builtin VMM in this process (the engine's `builtin` backend).
    Vmm(vmm::VmmArgs),
    /// Switch published ports' host listeners off and on.
    #[command(subcommand)]
    Port(port::PortCommand),
    /// Forward a host port to a container's port that was never published, until Ctrl-C.
    PortForward(port::ForwardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The VMM runs its own threads and no async runtime.
    if let Command::Vmm(args) = cli.command {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(std::io::stderr)
            .init();
        return match vmm::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("berth vmm: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let quiet = matches!(
        cli.command,
        Command::Doctor(_) | Command::Vm(_) | Command::Context(_) | Command::Port(_)
    );
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| if quiet { "warn" } else { "info" }.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Engine(args) => engine::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Vm(cmd) => vm::run(cmd).await,
            Command::Context(args) => context::run(args).await,
            Command::Port(cmd) => port::run(cmd).await,
            Command::PortForward(args) => port::forward(args).await,
            Command::Vmm(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
