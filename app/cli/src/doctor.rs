//! `berth doctor [--json]`: prints the engine's health report and exits 0 only when healthy.

use std::process::ExitCode;

use berth_engine::doctor;
use berth_engine::paths::Paths;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Check the host only; do not boot the VM.
    #[arg(long)]
    no_boot: bool,
}

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let report = doctor::run(&paths, !args.no_boot).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in &report.checks {
            let mark = match (check.ok, check.warning) {
                (true, _) => "ok  ",
                (false, true) => "warn",
                (false, false) => "FAIL",
            };
            println!("[{mark}] {:<18} {}", check.name, check.detail);
            if let Some(fix) = check.fix.as_ref().filter(|_| !check.ok && !check.warning) {
                println!("       {:<18} fix: {fix}", "");
            }
        }
        if let Some(p) = &report.phases {
            println!(
                "boot phases: VM process {} ms, kernel up {} ms, init up {} ms, agent ready {} ms",
                p.vm_process_ms, p.kernel_up_ms, p.init_up_ms, p.agent_ready_ms
            );
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
        println!(
            "{}",
            if report.healthy {
                "healthy"
            } else {
                "NOT healthy"
            }
        );
    }
    let booted = report.boot_ms.is_some();
    Ok(
        if report.healthy || (args.no_boot && report.problems.is_empty() && !booted) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
