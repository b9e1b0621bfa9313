//! `berth vm start | stop | status`: a VM that stays up. `start` launches `berth engine
//! --exit-when-stopped` in the background when no engine serves this home yet; `stop` asks the
//! engine to shut the VM down (and that engine then exits).

use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_engine::api::client;
use berth_engine::paths::Paths;

#[derive(clap::Subcommand)]
pub enum VmCommand {
    /// Boot the VM in a background engine and wait until the agent answers.
    Start,
    /// Shut the VM down cleanly.
    Stop,
    /// Show the VM's state.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

const START_DEADLINE: Duration = Duration::from_secs(180);

async fn vm_status(paths: &Paths) -> Option<serde_json::Value> {
    client::request(&paths.docker_socket(), "GET", "/berth/v1/vm", None)
        .await
        .ok()
        .map(|(_, body)| body)
}

fn spawn_engine(paths: &Paths) -> anyhow::Result<std::process::Child> {
    paths.ensure()?;
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let log = berth_engine::paths::private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(paths.engine_log())
        .with_context(|| format!("creating {}", paths.engine_log().display()))?;
    std::process::Command::new(exe)
        .args(["engine", "--exit-when-stopped"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the background engine")
}

pub async fn run(cmd: VmCommand) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let sock = paths.docker_socket();
    match cmd {
        VmCommand::Start => {
            let mut engine = None;
            if vm_status(&paths).await.is_some() {
                let (code, body) =
                    client::request(&sock, "POST", "/berth/v1/vm/start", None).await?;
                if code >= 400 {
                    bail!("{}", body["message"].as_str().unwrap_or("start failed"));
                }
            } else {
                engine = Some(spawn_engine(&paths)?);
            }
            let start = Instant::now();
            loop {
                // The engine we started exits when its VM fails to start; it said why.
                if let Some(status) = engine.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    let log = std::fs::read_to_string(paths.engine_log()).unwrap_or_default();
                    bail!(
                        "the engine exited ({status}) without a running VM:\n{}",
                        log.trim()
                    );
                }
                if let Some(status) = vm_status(&paths).await {
                    match status["state"].as_str() {
                        Some("running") => {
                            let ms = status["boot"]["agent_ready_ms"].as_u64().unwrap_or(0);
                            println!(
                                "VM running ({} backend, agent ready in {ms} ms); docker socket unix://{}",
                                status["backend"].as_str().unwrap_or("?"),
                                sock.display()
                            );
                            return Ok(ExitCode::SUCCESS);
                        }
                        Some("failed") => {
                            let _ = client::request(&sock, "POST", "/berth/v1/vm/stop", None).await;
                            bail!(
                                "the VM failed to start: {}\n{}",
                                status["reason"].as_str().unwrap_or("unknown"),
                                status["log_tail"].as_str().unwrap_or("")
                            );
                        }
                        _ => {}
                    }
                }
                if start.elapsed() > START_DEADLINE {
                    bail!(
                        "the VM did not start within {START_DEADLINE:?}; see {}",
                        paths.engine_log().display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        VmCommand::Stop => {
            if vm_status(&paths).await.is_none() {
                println!("VM stopped (no engine serves {})", sock.display());
                return Ok(ExitCode::SUCCESS);
            }
            let (code, body) = client::request(&sock, "POST", "/berth/v1/vm/stop", None).await?;
            if code >= 400 {
                bail!("{}", body["message"].as_str().unwrap_or("stop failed"));
            }
            println!("VM stopped");
            Ok(ExitCode::SUCCESS)
        }
        VmCommand::Status { json } => {
            let status = match vm_status(&paths).await {
                Some(status) => status,
                // The last engine's VM failed to start and it exited: say so, not "stopped".
                None => std::fs::read(paths.vm_failure())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_else(
                        || serde_json::json!({ "state": "stopped", "reason": "no engine is running" }),
                    ),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let state = status["state"].as_str().unwrap_or("unknown");
                print!("{state}");
                if let Some(b) = status["backend"].as_str() {
                    print!(" ({b})");
                }
                if let Some(r) = status["reason"].as_str() {
                    print!(": {r}");
                }
                println!();
                if let Some(why) = status["fallback"].as_str() {
                    println!("fell back to qemu with KVM: {why}");
                }
            }
            Ok(if status["state"] == "running" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}
