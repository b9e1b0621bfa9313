//! berth-agent: one static binary with two roles inside the guest.
//!
//! As PID 1 (`/init`) it is the VM's init (see [`init`]); started by init with `serve` it is the
//! gRPC service the host engine talks to over vsock (see [`service`]).

use std::process::ExitCode;

use berth_agent::{containers, init, service};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str);
    if std::process::id() == 1 || role == Some("init") {
        // Init never returns: it powers the VM off or panics the kernel by exiting.
        init::run();
    }
    match role {
        Some("serve") => service::run(),
        Some("shim") if args.len() == 4 => {
            containers::shim::run(args[2].clone().into(), args[3].clone())
        }
        Some("archive") => containers::archive::run(&args[2..]),
        Some("--version") | Some("version") => {
            println!("berth-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: berth-agent serve | init | --version");
            ExitCode::from(2)
        }
    }
}
