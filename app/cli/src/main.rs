//! `berth`: the engine (`berth engine`), the health report (`berth doctor`), the VM verbs
//! (`berth vm start | stop | status`), and the docker-like verbs (`berth ps`, `run`, `images`,
//! …, in [`client`]) over the Docker API.

mod client;
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
    /// Daemon socket to connect to (unix:///path or tcp://host:port); default: $DOCKER_HOST,
    /// else this user's Berth socket.
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    /// Name of the context to use (see `berth context ls`); -H and DOCKER_HOST win over it.
    #[arg(long = "context", global = true)]
    context: Option<String>,
    #[command(flatten)]
    tls: client::TlsArgs,
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
    /// List a container's port mappings (`berth port CONTAINER [PORT]`), or switch published
    /// ports' host listeners off and on (`berth port list | off | on`).
    Port(port::PortArgs),
    /// Forward a host port to a container's port that was never published, until Ctrl-C.
    PortForward(port::ForwardArgs),
    /// List containers.
    Ps(client::containers::PsArgs),
    /// Create and run a new container from an image.
    Run(client::run::RunArgs),
    /// Fetch the logs of a container.
    Logs(client::containers::LogsArgs),
    /// Start one or more stopped containers.
    Start(client::containers::NamesArgs),
    /// Stop one or more running containers.
    Stop(client::containers::StopArgs),
    /// Restart one or more containers.
    Restart(client::containers::StopArgs),
    /// Kill one or more running containers.
    Kill(client::containers::KillArgs),
    /// Remove one or more containers.
    Rm(client::containers::RmArgs),
    /// Execute a command in a running container.
    Exec(client::containers::ExecArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(client::copy::CpArgs),
    /// Return low-level information on containers or images.
    Inspect(client::containers::InspectArgs),
    /// List images.
    Images(client::images::ImagesArgs),
    /// Download an image from a registry.
    Pull(client::images::PullArgs),
    /// Remove one or more images.
    Rmi(client::images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(client::transfer::TagArgs),
    /// Upload an image to a registry.
    Push(client::transfer::PushArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(client::transfer::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(client::transfer::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(client::transfer::ImportArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(client::monitor::StatsArgs),
    /// Display the running processes of a container.
    Top(client::monitor::TopArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(client::networks::NetworkVerb),
    /// Build an image from a Dockerfile.
    Build(client::build::BuildArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(client::volumes::VolumeVerb),
    /// Log in to a registry (credentials kept in the docker CLI's config.json).
    Login(client::auth::LoginArgs),
    /// Log out from a registry.
    Logout(client::auth::LogoutArgs),
    /// Show the berth client and engine versions.
    Version,
    /// Display system-wide information.
    Info {
        /// `{{json .}}` prints the engine's whole document.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Disk use, pruning, and the engine-side helper for ssh.
    #[command(subcommand)]
    System(client::system::SystemVerb),
    /// Print the shell completion script for bash, zsh or fish (e.g. `berth completion bash >
    /// /etc/bash_completion.d/berth`).
    Completion { shell: clap_complete::Shell },
    /// Print berth's man page (roff), made from the same definitions as --help.
    Man,
}

/// The docker-like verbs, run against the daemon `host` names.
async fn client_verb(
    host: Option<&str>,
    context: Option<&str>,
    tls: &client::TlsArgs,
    command: Command,
) -> ExitCode {
    use client::containers::{self as c, Lifecycle};
    use client::system::SystemVerb;
    if let Command::System(SystemVerb::DialStdio) = command {
        return client::finish(match client::host(host, context) {
            Ok((h, _)) => client::ssh::dial_stdio(&h).await,
            Err(e) => Err(e),
        });
    }
    let client = match client::host(host, context)
        .and_then(|(h, ctx_tls)| client::connect(&h, tls, ctx_tls))
    {
        Ok(client) => client,
        Err(e) => return client::finish(Err(e)),
    };
    let client = &client;
    client::finish(match command {
        Command::Ps(a) => c::ps(client, a).await,
        Command::Run(a) => client::run::run(client, a).await,
        Command::Logs(a) => c::logs(client, a).await,
        Command::Start(a) => c::lifecycle(client, Lifecycle::Start(a)).await,
        Command::Stop(a) => c::lifecycle(client, Lifecycle::Stop(a)).await,
        Command::Restart(a) => c::lifecycle(client, Lifecycle::Restart(a)).await,
        Command::Kill(a) => c::lifecycle(client, Lifecycle::Kill(a)).await,
        Command::Rm(a) => c::lifecycle(client, Lifecycle::Rm(a)).await,
        Command::Exec(a) => c::exec(client, a).await,
        Command::Inspect(a) => c::inspect(client, a).await,
        Command::Cp(a) => client::copy::cp(client, a).await,
        Command::Port(port::PortArgs {
            list: Some(a),
            command: None,
        }) => c::port(client, a).await,
        Command::Images(a) => client::images::images(client, a).await,
        Command::Pull(a) => client::images::pull(client, a).await,
        Command::Rmi(a) => client::images::rmi(client, a).await,
        Command::Tag(a) => client::transfer::tag(client, a).await,
        Command::Push(a) => client::transfer::push(client, a).await,
        Command::Save(a) => client::transfer::save(client, a).await,
        Command::Load(a) => client::transfer::load(client, a).await,
        Command::Import(a) => client::transfer::import(client, a).await,
        Command::Version => client::images::version(client).await,
        Command::Info { format } => client::images::info(client, format.as_deref()).await,
        Command::Login(a) => client::auth::login(client, a).await,
        Command::Logout(a) => client::auth::logout(a).await,
        Command::Stats(a) => client::monitor::stats(client, a).await,
        Command::Top(a) => client::monitor::top(client, a).await,
        Command::Network(v) => client::networks::network(client, v).await,
        Command::Volume(v) => client::volumes::volume(client, v).await,
        Command::Build(a) => client::build::build(client, a).await,
        Command::System(SystemVerb::Df { format }) => {
            client::system::df(client, format.as_deref()).await
        }
        Command::System(SystemVerb::Prune {
            all,
            volumes,
            force,
        }) => client::system::prune(client, all, volumes, force).await,
        _ => unreachable!("not a client verb"),
    })
}

/// Parses the command line; a usage error is reported as the docker CLI does, with exit 125.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(125))
        }
        Err(e) => {
            let verb = std::env::args()
                .skip(1)
                .find(|a| !a.starts_with('-'))
                .map(|v| format!("berth {v}"))
                .unwrap_or_else(|| "berth".into());
            let message = match (e.kind(), e.get(ContextKind::InvalidArg)) {
                (ErrorKind::UnknownArgument, Some(ContextValue::String(flag)))
                    if flag.starts_with('-') =>
                {
                    format!("unknown flag: {flag}")
                }
                _ => e
                    .render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_owned(),
            };
            eprintln!("{message}\nSee '{verb} --help'.");
            Err(ExitCode::from(125))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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
    match &cli.command {
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer: the generator panics on a closed pipe (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "berth", &mut script);
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut page = Vec::new();
            return match clap_mangen::Man::new(cmd).render(&mut page) {
                Ok(()) => {
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), &page);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("berth man: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let quiet = !matches!(cli.command, Command::Engine(_) | Command::PortForward(_));
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
            Command::Port(port::PortArgs {
                command: Some(cmd), ..
            }) => port::run(cmd).await,
            Command::PortForward(args) => port::forward(args).await,
            Command::Vmm(_) => unreachable!("handled before the runtime starts"),
            verb => {
                Ok(client_verb(cli.host.as_deref(), cli.context.as_deref(), &cli.tls, verb).await)
            }
        }
    });
    // A stdin read still blocked in a runtime thread (after an interactive session) must not
    // hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
