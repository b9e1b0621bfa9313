//! `berth port list | off | on`: switch a published port's host listener off and on without
//! touching the container (the choice outlives an engine restart), through the engine's
//! `/berth/v1/ports` extension. `berth port CONTAINER [PORT]` is the docker CLI's `port`
//! (in [`crate::client::containers::port`]).

use std::process::ExitCode;

use anyhow::{Result, bail};
use berth_engine::api::client;
use berth_engine::paths::Paths;
use berth_engine::ports::PortView;

/// `berth port CONTAINER [PORT]` lists ports as `docker port` does; `berth port list | off |
/// on` manage the host listeners.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    arg_required_else_help = true
)]
pub struct PortArgs {
    #[command(subcommand)]
    pub command: Option<PortCommand>,
    #[command(flatten)]
    pub list: Option<crate::client::containers::PortArgs>,
}

#[derive(clap::Subcommand)]
pub enum PortCommand {
    /// Every published port of running containers, with its state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop listening on the host for CONTAINER's PORT (`80` or `80/tcp`).
    Off { container: String, port: String },
    /// Listen again.
    On { container: String, port: String },
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// The container (name or ID).
    container: String,
    /// HOSTPORT:CONTAINERPORT (TCP); the host side listens on 127.0.0.1.
    ports: String,
}

/// `berth port-forward`: forwards a port that was never published, until interrupted.
pub async fn forward(args: ForwardArgs) -> Result<ExitCode> {
    let paths = Paths::from_env()?;
    let (host, inner) = args
        .ports
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("expected HOSTPORT:CONTAINERPORT, got {}", args.ports))?;
    let host: u16 = host.parse()?;
    let inner: u16 = inner.parse()?;
    let path = format!("/containers/{}/json", args.container);
    let (status, doc) = client::request(&paths.docker_socket(), "GET", &path, None).await?;
    if status != 200 {
        bail!(
            "{}",
            doc["message"].as_str().unwrap_or("the engine refused")
        );
    }
    let id = doc["Id"].as_str().unwrap_or_default().to_owned();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", host)).await?;
    println!(
        "forwarding 127.0.0.1:{} to {}:{inner}; Ctrl-C stops",
        listener.local_addr()?.port(),
        args.container
    );
    let vsock = paths.vsock_socket();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            conn = listener.accept() => {
                let (conn, _) = conn?;
                let (vsock, id) = (vsock.clone(), id.clone());
                tokio::spawn(async move {
                    if let Err(e) = berth_engine::ports::forward(conn, &vsock, &id, inner, berth_engine::ports::Target::Loopback).await {
                        eprintln!("berth port-forward: {e}");
                    }
                });
            }
        }
    }
}

pub async fn run(cmd: PortCommand) -> Result<ExitCode> {
    let socket = Paths::from_env()?.docker_socket();
    match cmd {
        PortCommand::List { json } => {
            let (status, body) = client::request(&socket, "GET", "/berth/v1/ports", None).await?;
            if status != 200 {
                bail!(
                    "{}",
                    body["message"].as_str().unwrap_or("the engine refused")
                );
            }
            if json {
                println!("{body}");
                return Ok(ExitCode::SUCCESS);
            }
            let ports: Vec<PortView> = serde_json::from_value(body)?;
            println!("{:<24} {:<10} {:<24} STATE", "CONTAINER", "PORT", "HOST");
            for p in ports {
                println!(
                    "{:<24} {:<10} {:<24} {}",
                    p.name,
                    p.port,
                    format!("{}:{}", p.host_ip, p.host_port),
                    if p.enabled { "on" } else { "off" }
                );
            }
        }
        PortCommand::Off { container, port } => toggle(&socket, &container, &port, "off").await?,
        PortCommand::On { container, port } => toggle(&socket, &container, &port, "on").await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn toggle(socket: &std::path::Path, container: &str, port: &str, state: &str) -> Result<()> {
    let path = format!(
        "/berth/v1/ports/{container}/{}/{state}",
        port.replace('/', "_")
    );
    let (status, body) = client::request(socket, "POST", &path, None).await?;
    if status >= 300 {
        bail!(
            "{}",
            body["message"].as_str().unwrap_or("the engine refused")
        );
    }
    Ok(())
}
