//! `login` and `logout`: credentials checked by the engine (`/auth`) and kept where the docker
//! CLI keeps them: with the credential helper `config.json` names (`credHelpers` for the
//! registry, else `credsStore`: `docker-credential-NAME get|store|erase`), else in `auths`
//! (base64 of `user:password`), so both clients share a login; `pull` and `push` send them
//! for the image's registry.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde_json::{Value, json};

use super::{CliError, Client, Result};

/// The docker CLI's key for Docker Hub.
const HUB: &str = "https://index.docker.io/v1/";

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Username.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    /// The registry (default: Docker Hub).
    server: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    server: Option<String>,
}

fn key(server: Option<&str>) -> String {
    match server {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => HUB.to_owned(),
        Some(s) => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    }
}

fn config_path() -> Result<std::path::PathBuf> {
    crate::context::docker_config_dir()
        .map(|d| d.join("config.json"))
        .map_err(|e| CliError::new(1, format!("{e:#}")))
}

fn read_config() -> Result<Value> {
    let path = config_path()?;
    match std::fs::read(&path) {
        Ok(d) if !d.is_empty() => serde_json::from_slice(&d)
            .map_err(|e| CliError::new(1, format!("{}: {e}", path.display()))),
        _ => Ok(json!({})),
    }
}

fn write_config(cfg: &Value) -> Result<()> {
    let path = config_path()?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::new(1, format!("{}: {e}", dir.display())))?;
    let tmp = dir.join(".config.json.tmp");
    let text = serde_json::to_string_pretty(cfg).unwrap_or_default();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| CliError::new(1, format!("{}: {e}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .map_err(|e| CliError::new(1, format!("{}: {e}", tmp.display())))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| CliError::new(1, format!("{}: {e}", path.display())))
}

/// The credential helper `cfg` names for `server`, if any.
fn helper_for(cfg: &Value, server: &str) -> Option<String> {
    cfg["credHelpers"][server]
        .as_str()
        .or(cfg["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// Runs `docker-credential-HELPER verb` with `input` on stdin; its stdout, or the helper's
/// own words as the error.
fn run_helper(helper: &str, verb: &str, input: &str) -> Result<String> {
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CliError::new(
                1,
                format!(
                    "error getting credentials - err: {program}: {e} (credsStore in config.json)"
                ),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CliError::new(1, format!("{program}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let said = if stdout.trim().is_empty() {
            String::from_utf8_lossy(&out.stderr).into_owned()
        } else {
            stdout
        };
        Err(CliError::new(
            1,
            format!("{program} {verb}: {}", said.trim()),
        ))
    }
}

/// The stored credentials for `server` (a `key`): from its helper, else from `auths`.
fn stored(cfg: &Value, server: &str) -> Option<(String, String)> {
    if let Some(helper) = helper_for(cfg, server) {
        let out = run_helper(&helper, "get", server).ok()?;
        let doc: Value = serde_json::from_str(&out).ok()?;
        return Some((
            doc["Username"].as_str()?.to_owned(),
            doc["Secret"].as_str()?.to_owned(),
        ));
    }
    let auth = cfg["auths"][server]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The stored credentials for the registry of `image`, for a pull or push.
pub fn credentials_for(image: &str) -> Option<DockerCredentials> {
    let first = image.split('/').next().unwrap_or("");
    let server = if image.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        key(Some(first))
    } else {
        HUB.to_owned()
    };
    let cfg = read_config().ok()?;
    let (user, pass) = stored(&cfg, &server)?;
    Some(DockerCredentials {
        username: Some(user),
        password: Some(pass),
        serveraddress: Some(server),
        ..Default::default()
    })
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::new(1, e.to_string()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn login(client: &Client, args: LoginArgs) -> Result<ExitCode> {
    let server = key(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = if args.password_stdin {
        let mut p = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut p)
            .map_err(|e| CliError::new(1, e.to_string()))?;
        p.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(p) = args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        // No echo while the password is typed.
        let _quiet = super::tty::RawMode::no_echo();
        let p = prompt("Password: ")?;
        eprintln!();
        p
    };
    if username.is_empty() || password.is_empty() {
        return Err(CliError::new(
            1,
            "Error: Cannot perform an interactive login from a non TTY device",
        ));
    }
    let socket = client.unix_socket().ok_or_else(|| {
        CliError::new(
            1,
            format!(
                "berth login checks credentials over a unix or ssh host, not {}",
                client.host
            ),
        )
    })?;
    let body = json!({ "username": username, "password": password, "serveraddress": server });
    let (status, doc) = berth_engine::api::client::request(&socket, "POST", "/auth", Some(body))
        .await
        .map_err(|_| CliError::new(1, super::no_engine(&client.host)))?;
    if status != 200 {
        return Err(CliError::new(
            1,
            format!(
                "Error response from daemon: {}",
                doc["message"].as_str().unwrap_or("login failed")
            ),
        ));
    }
    let mut cfg = read_config()?;
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    match helper_for(&cfg, &server) {
        // As the docker CLI: the secret goes to the helper, an empty entry to `auths`.
        Some(helper) => {
            let doc = json!({ "ServerURL": server, "Username": username, "Secret": password });
            run_helper(&helper, "store", &doc.to_string())?;
            cfg["auths"][&server] = json!({});
        }
        None => {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            cfg["auths"][&server] = json!({ "auth": auth });
        }
    }
    write_config(&cfg)?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub async fn logout(args: LogoutArgs) -> Result<ExitCode> {
    let server = key(args.server.as_deref());
    let mut cfg = read_config()?;
    let mut had = cfg["auths"]
        .as_object_mut()
        .is_some_and(|a| a.remove(&server).is_some());
    if let Some(helper) = helper_for(&cfg, &server) {
        had |= run_helper(&helper, "erase", &server).is_ok();
    }
    if had {
        write_config(&cfg)?;
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}
