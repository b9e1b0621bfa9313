//! The docker-like verbs (`berth ps`, `run`, `images`, `pull`, `logs`, …): a client of the
//! Docker Engine API through bollard, against this user's Berth socket or the daemon that
//! `-H`/`DOCKER_HOST` names. Columns, messages and exit codes follow the docker CLI so scripts
//! written for `docker` work with `berth`.

pub mod auth;
pub mod build;
pub mod containers;
pub mod copy;
pub mod format;
pub mod images;
pub mod monitor;
pub mod networks;
pub mod run;
pub mod ssh;
pub mod system;
pub mod transfer;
pub mod tty;
pub mod volumes;

use std::process::ExitCode;

use bollard::Docker;

/// A verb's failure: what to print and the exit code (the docker CLI's: 1 for a refused
/// request, 125 for `run` failing before the container runs or a bad flag).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code,
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Where the verbs connect, in the docker CLI's order: `-H`, else `DOCKER_HOST`, else the
/// context (`--context`, `DOCKER_CONTEXT`, the store's current one), else this user's Berth
/// socket. A context's TLS files, when it has them, come along.
pub fn host(flag: Option<&str>, context: Option<&str>) -> Result<(String, Option<TlsFiles>)> {
    if let Some(h) = flag.filter(|h| !h.is_empty()) {
        return Ok((h.to_owned(), None));
    }
    if let Some(h) = std::env::var_os("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return Ok((h.to_string_lossy().into_owned(), None));
    }
    let ctx = crate::context::selected(context).map_err(|e| CliError::new(1, format!("{e:#}")))?;
    if let Some(name) = ctx {
        let config =
            crate::context::docker_config_dir().map_err(|e| CliError::new(1, format!("{e:#}")))?;
        let ep = crate::context::endpoint(&config, &name)
            .map_err(|e| CliError::new(1, format!("{e:#}")))?;
        return Ok((ep.host, ep.tls));
    }
    let paths =
        berth_engine::paths::Paths::from_env().map_err(|e| CliError::new(1, e.to_string()))?;
    Ok((format!("unix://{}", paths.docker_socket().display()), None))
}

/// (key, cert, CA) PEM files for a TLS daemon.
pub type TlsFiles = (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf);

/// Client certificates for a TLS daemon, as the docker CLI takes them.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsArgs {
    /// Use TLS and verify the remote (also with DOCKER_TLS_VERIFY).
    #[arg(long, global = true)]
    pub tlsverify: bool,
    /// Trust certs signed only by this CA (default: $DOCKER_CERT_PATH/ca.pem).
    #[arg(long, global = true, value_name = "FILE")]
    pub tlscacert: Option<std::path::PathBuf>,
    /// Path to the TLS certificate file (default: $DOCKER_CERT_PATH/cert.pem).
    #[arg(long, global = true, value_name = "FILE")]
    pub tlscert: Option<std::path::PathBuf>,
    /// Path to the TLS key file (default: $DOCKER_CERT_PATH/key.pem).
    #[arg(long, global = true, value_name = "FILE")]
    pub tlskey: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// (key, cert, CA) when TLS is asked for, by a flag or the docker CLI's variables.
    fn files(&self) -> Option<TlsFiles> {
        let env_verify = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        let any_file = self.tlscacert.is_some() || self.tlscert.is_some() || self.tlskey.is_some();
        if !(self.tlsverify || env_verify || any_file) {
            return None;
        }
        let dir = std::env::var_os("DOCKER_CERT_PATH")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
            .unwrap_or_default();
        Some((
            self.tlskey.clone().unwrap_or_else(|| dir.join("key.pem")),
            self.tlscert.clone().unwrap_or_else(|| dir.join("cert.pem")),
            self.tlscacert.clone().unwrap_or_else(|| dir.join("ca.pem")),
        ))
    }
}

/// A client for `host` (`unix://PATH`, `tcp://HOST:PORT`, or a bare socket path); a TCP host
/// is reached over TLS with client certificates when `tls` asks for it.
pub fn connect(host: &str, tls: &TlsArgs, context_tls: Option<TlsFiles>) -> Result<Client> {
    if host.starts_with("ssh://") {
        let tunnel = ssh::open(host)?;
        let docker = Docker::connect_with_unix(
            &tunnel.socket.to_string_lossy(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| CliError::new(1, format!("{host}: {e}")))?;
        return Ok(Client {
            docker,
            host: host.to_owned(),
            _tunnel: Some(tunnel),
        });
    }
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else if let (Some(addr), Some((key, cert, ca))) =
        (host.strip_prefix("tcp://"), tls.files().or(context_tls))
    {
        for f in [&key, &cert, &ca] {
            if !f.is_file() {
                return Err(CliError::new(
                    125,
                    format!("could not read TLS file {}: not there", f.display()),
                ));
            }
        }
        return Docker::connect_with_ssl(addr, &key, &cert, &ca, 120, bollard::API_DEFAULT_VERSION)
            .map(|docker| Client {
                docker,
                host: host.to_owned(),
                _tunnel: None,
            })
            .map_err(|e| CliError::new(1, format!("TLS setup for {host}: {e}")));
    } else if let Some(addr) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        Docker::connect_with_http(&format!("http://{addr}"), 120, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with('/') {
        Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(CliError::new(
            125,
            format!(
                "unable to parse docker host `{host}`: use unix:///path, tcp://host:port or ssh://[user@]host[:port]"
            ),
        ));
    }
    // No socket at that path: the same hint as a socket nobody serves.
    .map_err(|_| CliError::new(1, no_engine(host)))?;
    Ok(Client {
        docker,
        host: host.to_owned(),
        _tunnel: None,
    })
}

pub(crate) fn no_engine(host: &str) -> String {
    format!("Cannot connect to the engine at {host}: is Berth running? try `berth engine`")
}

pub struct Client {
    pub docker: Docker,
    pub host: String,
    /// The ssh stand-in socket, for ssh:// hosts; closed with the client.
    _tunnel: Option<ssh::Tunnel>,
}

impl Client {
    /// The unix socket behind this client: the engine's, or the ssh stand-in.
    pub fn unix_socket(&self) -> Option<std::path::PathBuf> {
        if let Some(t) = &self._tunnel {
            return Some(t.socket.clone());
        }
        self.host
            .strip_prefix("unix://")
            .or_else(|| self.host.starts_with('/').then_some(self.host.as_str()))
            .map(std::path::PathBuf::from)
    }

    /// The docker CLI's wording for an error: the daemon's message, or a hint when there is no
    /// daemon at all. `code` is the exit code for a refused request.
    pub fn error(&self, e: bollard::errors::Error, code: u8) -> CliError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { message, .. } => {
                CliError::new(code, format!("Error response from daemon: {message}"))
            }
            // An error a stream (pull, build) ended with: the daemon's own words.
            E::DockerStreamError { error } => CliError::new(code, error),
            E::SocketNotFoundError(_)
            | E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::RequestTimeoutError => CliError::new(code, no_engine(&self.host)),
            other => CliError::new(code, format!("{other}")),
        }
    }
}

/// `--format` as the verbs take it: absent or `table` is the verb's `default` table, `json` one
/// JSON object per line, anything else a template over `fields`.
pub fn template(
    format: Option<&str>,
    default: &str,
    fields: &[(&'static str, &'static str)],
) -> Result<format::Template> {
    let format = match format {
        None | Some("table") => default,
        Some("json") => "{{json .}}",
        Some(f) => f,
    };
    format::Template::parse(format, fields).map_err(|e| CliError::new(125, e.to_string()))
}

/// `--filter key=value` flags as the API's filter map.
pub fn filters(list: &[String]) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    for f in list {
        let (k, v) = f.split_once('=').ok_or_else(|| {
            CliError::new(
                125,
                format!("invalid argument \"{f}\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"),
            )
        })?;
        out.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    Ok(out)
}

/// `key=value` flags (`--label`, `--opt`) as a map; a bare key maps to "".
pub fn kv(list: &[String]) -> std::collections::HashMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The docker CLI's prune prompt: the warning lines, then `Are you sure you want to continue?
/// [y/N]` on stderr; true for a yes on stdin.
/// `value` for a URL's path or query: everything but unreserved characters and `/` percent-encoded.
pub fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A refusal answered on the engine's socket, in the docker CLI's words.
pub fn refused(doc: &serde_json::Value) -> CliError {
    let message = doc["message"]
        .as_str()
        .map_or_else(|| doc.to_string(), str::to_owned);
    CliError::new(1, format!("Error response from daemon: {message}"))
}

/// `--json`: the engine's documents as an indented JSON array on stdout.
pub fn print_json<T: serde::Serialize>(list: &[T]) -> Result<ExitCode> {
    let text = serde_json::to_string_pretty(list)
        .map_err(|e| CliError::new(1, format!("printing JSON: {e}")))?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub fn confirm(warning: &[&str]) -> bool {
    use std::io::BufRead;
    for line in warning {
        eprintln!("{line}");
    }
    eprint!("Are you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Runs a verb: prints its error the docker CLI's way and returns its exit code.
pub fn finish(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::from(e.code)
        }
    }
}
