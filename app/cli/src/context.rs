//! `berth context`: a docker CLI context named `berth` pointing at this engine's socket, kept
//! in the docker CLI's own store (`$DOCKER_CONFIG` or `~/.docker`: `contexts/meta/<sha256 of
//! the name>/meta.json`, and `currentContext` in `config.json`), so `docker` reaches Berth
//! with no environment variable. Owns reading and writing that store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const NAME: &str = "berth";

#[derive(clap::Args)]
pub struct ContextArgs {
    /// Create (or update) the context without making it the docker CLI's current one.
    #[arg(long)]
    pub no_use: bool,
    /// Remove the context (and stop using it if it is current).
    #[arg(long, conflicts_with = "no_use")]
    pub remove: bool,
}

/// The docker CLI's configuration directory.
pub fn docker_config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set DOCKER_CONFIG")?;
    Ok(PathBuf::from(home).join(".docker"))
}

fn meta_dir(config: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    config.join("contexts").join("meta").join(hex)
}

/// Writes `path` through a temporary file and a rename, so a crash leaves the old or the new
/// file, never half of one.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Creates or updates context `name` with the docker endpoint `host`.
pub fn create(config: &Path, name: &str, host: &str, description: &str) -> Result<PathBuf> {
    let meta = json!({
        "Name": name,
        "Metadata": { "Description": description },
        "Endpoints": { "docker": { "Host": host, "SkipTLSVerify": false } },
    });
    let path = meta_dir(config, name).join("meta.json");
    write_atomic(&path, serde_json::to_string(&meta)?.as_bytes())?;
    Ok(path)
}

fn read_config(config: &Path) -> Result<Value> {
    let path = config.join("config.json");
    match std::fs::read(&path) {
        Ok(data) if !data.is_empty() => serde_json::from_slice(&data)
            .with_context(|| format!("{} is not valid JSON; fix or remove it", path.display())),
        Ok(_) => Ok(json!({})),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Makes `name` the current context (`None`: the default one), keeping every other setting of
/// config.json (credentials among them).
pub fn set_current(config: &Path, name: Option<&str>) -> Result<()> {
    let mut cfg = read_config(config)?;
    let obj = cfg
        .as_object_mut()
        .context("config.json is not a JSON object")?;
    match name {
        Some(n) => {
            obj.insert("currentContext".into(), json!(n));
        }
        None => {
            obj.remove("currentContext");
        }
    }
    write_atomic(
        &config.join("config.json"),
        serde_json::to_string_pretty(&cfg)?.as_bytes(),
    )
}

pub fn current(config: &Path) -> Result<Option<String>> {
    Ok(read_config(config)?["currentContext"]
        .as_str()
        .map(str::to_owned))
}

pub fn remove(config: &Path, name: &str) -> Result<()> {
    if current(config)?.as_deref() == Some(name) {
        set_current(config, None)?;
    }
    match std::fs::remove_dir_all(meta_dir(config, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

pub async fn run(args: ContextArgs) -> Result<std::process::ExitCode> {
    let config = docker_config_dir()?;
    if args.remove {
        remove(&config, NAME)?;
        println!("removed the docker context {NAME}");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let paths = berth_engine::paths::Paths::from_env()?;
    let host = format!("unix://{}", paths.docker_socket().display());
    create(&config, NAME, &host, "Berth")?;
    if args.no_use {
        println!("docker context {NAME} points at {host}; use it with `docker --context {NAME}`");
    } else {
        set_current(&config, Some(NAME))?;
        println!("docker now uses the context {NAME} ({host})");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_store_as_the_docker_cli_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"auths":{"r.example":{"auth":"eDp5"}}}"#,
        )
        .unwrap();
        let meta = create(dir.path(), "berth", "unix:///run/b.sock", "Berth").unwrap();
        // The docker CLI names the directory by the SHA-256 of the context name.
        assert_eq!(
            meta.parent().unwrap().file_name().unwrap(),
            "5c2f64c7f21efd5fb5e3d6a499abe5eacb248ae6f6f0085387c9a056d10ef5fd"
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(v["Endpoints"]["docker"]["Host"], "unix:///run/b.sock");
        set_current(dir.path(), Some("berth")).unwrap();
        assert_eq!(current(dir.path()).unwrap().as_deref(), Some("berth"));
        let cfg = read_config(dir.path()).unwrap();
        assert_eq!(
            cfg["auths"]["r.example"]["auth"], "eDp5",
            "credentials kept"
        );
        remove(dir.path(), "berth").unwrap();
        assert_eq!(current(dir.path()).unwrap(), None);
        assert!(!meta.exists());
    }
}
