//! The docker-like verbs (`berth ps`, `run`, `images`, `pull`, `logs`, …): a client of the
//! Docker Engine API through bollard, against this user's Berth socket or the daemon that
//! `-H`/`DOCKER_HOST` names. Columns, messages and exit codes follow the docker CLI so scripts
//! written for `docker` work with `berth`.

pub mod containers;
pub mod format;
pub mod images;
pub mod run;
pub mod tty;

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

/// Where the verbs connect: `-H`, else `DOCKER_HOST`, else this user's Berth socket.
pub fn host(flag: Option<&str>) -> Result<String> {
    if let Some(h) = flag.filter(|h| !h.is_empty()) {
        return Ok(h.to_owned());
    }
    if let Some(h) = std::env::var_os("DOCKER_HOST").filter(|h| !h.is_empty()) {
        return Ok(h.to_string_lossy().into_owned());
    }
    let paths =
        berth_engine::paths::Paths::from_env().map_err(|e| CliError::new(1, e.to_string()))?;
    Ok(format!("unix://{}", paths.docker_socket().display()))
}

/// A client for `host` (`unix://PATH`, `tcp://HOST:PORT`, or a bare socket path).
pub fn connect(host: &str) -> Result<Client> {
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
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
            format!("unable to parse docker host `{host}`: use unix:///path or tcp://host:port"),
        ));
    }
    // No socket at that path: the same hint as a socket nobody serves.
    .map_err(|_| CliError::new(1, no_engine(host)))?;
    Ok(Client {
        docker,
        host: host.to_owned(),
    })
}

fn no_engine(host: &str) -> String {
    format!("Cannot connect to the engine at {host}: is Berth running? try `berth engine`")
}

pub struct Client {
    pub docker: Docker,
    pub host: String,
}

impl Client {
    /// The docker CLI's wording for an error: the daemon's message, or a hint when there is no
    /// daemon at all. `code` is the exit code for a refused request.
    pub fn error(&self, e: bollard::errors::Error, code: u8) -> CliError {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { message, .. } => {
                CliError::new(code, format!("Error response from daemon: {message}"))
            }
            E::SocketNotFoundError(_)
            | E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::RequestTimeoutError => CliError::new(code, no_engine(&self.host)),
            other => CliError::new(code, format!("{other}")),
        }
    }
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
