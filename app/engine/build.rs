//! Records the toolchain that builds the engine: `/version` names it where dockerd names the Go
//! release that built it (`GoVersion`).

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
