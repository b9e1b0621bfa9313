//! `berth context`: a docker CLI context named `berth` pointing at this engine's socket, kept
//! in the docker CLI's own store (`$DOCKER_CONFIG` or `~/.docker`: `contexts/meta/<sha256 of
//! the name>/meta.json`, and `currentContext` in `config.json`), so `docker` reaches Berth
//! with no environment variable; and the docker CLI's `context ls | create | use | rm | show`
//! over the same store, which the client verbs read to find their engine. Owns reading and
//! writing that store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const NAME: &str = "berth";

#[derive(clap::Args)]
pub struct ContextArgs {
    #[command(subcommand)]
    pub verb: Option<ContextVerb>,
    /// Without a verb: create (or update) the context `berth` without making it current.
    #[arg(long)]
    pub no_use: bool,
    /// Without a verb: remove the context `berth` (and stop using it if it is current).
    #[arg(long, conflicts_with = "no_use")]
    pub remove: bool,
}

/// The docker CLI's `context` verbs over the same store, so either client sees the other's.
#[derive(clap::Subcommand)]
pub enum ContextVerb {
    /// List contexts (the current one marked with *).
    Ls {
        /// Only show context names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a context: `--docker host=tcp://HOST:2376,ca=ca.pem,cert=cert.pem,key=key.pem`.
    Create {
        name: String,
        /// The endpoint: host=URL and, for TLS, ca=, cert=, key= files.
        #[arg(long)]
        docker: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Make a context the current one for berth and docker (`default`: none).
    Use { name: String },
    /// Remove contexts.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even the current one (it stops being current).
        #[arg(short, long)]
        force: bool,
    },
    /// Print the current context's name.
    Show,
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

fn tls_dir(config: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    config.join("contexts").join("tls").join(hex).join("docker")
}

/// A context's docker endpoint: its host and, when the store holds TLS material for it, the
/// (key, cert, CA) files.
pub struct Endpoint {
    pub host: String,
    pub tls: Option<crate::client::TlsFiles>,
}

/// Reads context `name` from the store.
pub fn endpoint(config: &Path, name: &str) -> Result<Endpoint> {
    let path = meta_dir(config, name).join("meta.json");
    let data =
        std::fs::read(&path).with_context(|| format!("context \"{name}\" does not exist"))?;
    let meta: Value =
        serde_json::from_slice(&data).with_context(|| format!("{}", path.display()))?;
    let host = meta["Endpoints"]["docker"]["Host"]
        .as_str()
        .with_context(|| format!("context \"{name}\" has no docker endpoint"))?
        .to_owned();
    let dir = tls_dir(config, name);
    let tls = dir.join("ca.pem").exists().then(|| {
        (
            dir.join("key.pem"),
            dir.join("cert.pem"),
            dir.join("ca.pem"),
        )
    });
    Ok(Endpoint { host, tls })
}

/// The context in force: `flag`, else `DOCKER_CONTEXT`, else config.json's current one;
/// `None` for the default.
pub fn selected(flag: Option<&str>) -> Result<Option<String>> {
    let name = match flag.map(str::to_owned).or_else(|| {
        std::env::var("DOCKER_CONTEXT")
            .ok()
            .filter(|v| !v.is_empty())
    }) {
        Some(n) => Some(n),
        None => current(&docker_config_dir()?)?,
    };
    Ok(name.filter(|n| n != "default"))
}

fn all(config: &Path) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(config.join("contexts/meta"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta: Value =
                serde_json::from_slice(&std::fs::read(e.path().join("meta.json")).ok()?).ok()?;
            Some((meta["Name"].as_str()?.to_owned(), meta))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

async fn verb(config: &Path, verb: ContextVerb) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match verb {
        ContextVerb::Ls { quiet } => {
            let current = current(config)?;
            let paths = berth_engine::paths::Paths::from_env()?;
            let mut lines = vec!["NAME\tDESCRIPTION\tDOCKER ENDPOINT\tERROR".to_owned()];
            let mark = |n: &str| {
                if current.as_deref().unwrap_or("default") == n {
                    format!("{n} *")
                } else {
                    n.to_owned()
                }
            };
            if quiet {
                println!("default");
            }
            lines.push(format!(
                "{}\tBerth's own engine\tunix://{}\t",
                mark("default"),
                paths.docker_socket().display()
            ));
            for (name, meta) in all(config) {
                if quiet {
                    println!("{name}");
                    continue;
                }
                lines.push(format!(
                    "{}\t{}\t{}\t",
                    mark(&name),
                    meta["Metadata"]["Description"].as_str().unwrap_or(""),
                    meta["Endpoints"]["docker"]["Host"].as_str().unwrap_or("")
                ));
            }
            if !quiet {
                print!("{}", crate::client::format::tabwrite(&lines));
            }
            Ok(ExitCode::SUCCESS)
        }
        ContextVerb::Create {
            name,
            docker,
            description,
        } => {
            if name == "default" || name.is_empty() || name.contains('/') {
                anyhow::bail!("context name \"{name}\" is invalid");
            }
            if meta_dir(config, &name).exists() {
                anyhow::bail!("context \"{name}\" already exists");
            }
            let mut host = None;
            let mut files: Vec<(&str, PathBuf)> = Vec::new();
            for part in docker.split(',').filter(|p| !p.is_empty()) {
                match part.split_once('=') {
                    Some(("host", v)) => host = Some(v.to_owned()),
                    Some((k @ ("ca" | "cert" | "key"), v)) => files.push((k, PathBuf::from(v))),
                    Some(("skip-tls-verify", _)) => {}
                    _ => anyhow::bail!(
                        "unable to parse docker endpoint \"{part}\": use host=, ca=, cert=, key="
                    ),
                }
            }
            let host = host.context("--docker needs host=URL")?;
            if !files.is_empty() {
                let dir = tls_dir(config, &name);
                std::fs::create_dir_all(&dir)?;
                for (k, from) in files {
                    let data = std::fs::read(&from)
                        .with_context(|| format!("reading {}", from.display()))?;
                    write_atomic(&dir.join(format!("{k}.pem")), &data)?;
                }
            }
            create(config, &name, &host, &description)?;
            println!("{name}");
            eprintln!("Successfully created context \"{name}\"");
            Ok(ExitCode::SUCCESS)
        }
        ContextVerb::Use { name } => {
            if name != "default" {
                endpoint(config, &name)?;
            }
            set_current(config, (name != "default").then_some(name.as_str()))?;
            println!("{name}");
            eprintln!("Current context is now \"{name}\"");
            Ok(ExitCode::SUCCESS)
        }
        ContextVerb::Rm { names, force } => {
            let mut failed = false;
            for name in names {
                if !meta_dir(config, &name).exists() {
                    eprintln!("context \"{name}\" does not exist");
                    failed = true;
                    continue;
                }
                if !force && current(config)?.as_deref() == Some(name.as_str()) {
                    eprintln!(
                        "context \"{name}\" is in use, set a different context with \"berth context use\" or use --force"
                    );
                    failed = true;
                    continue;
                }
                remove(config, &name)?;
                let _ = std::fs::remove_dir_all(
                    tls_dir(config, &name)
                        .parent()
                        .unwrap_or(Path::new("/nonexistent")),
                );
                println!("{name}");
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ContextVerb::Show => {
            println!("{}", selected(None)?.unwrap_or_else(|| "default".into()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn run(args: ContextArgs) -> Result<std::process::ExitCode> {
    let config = docker_config_dir()?;
    if let Some(v) = args.verb {
        return verb(&config, v).await;
    }
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
