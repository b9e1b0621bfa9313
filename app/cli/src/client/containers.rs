//! Container verbs: `ps`, `run`, `logs`, `start`, `stop`, `restart`, `kill`, `rm`, `inspect`,
//! `exec`, `port`, with the docker CLI's flags, columns and exit codes.

use std::io::Write;
use std::process::ExitCode;

use bollard::container::{
    KillContainerOptions, ListContainersOptions, LogOutput, LogsOptions, RemoveContainerOptions,
    RestartContainerOptions, StopContainerOptions,
};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerSummary, Port};
use futures_util::StreamExt;

use super::format::{Row, ago, ellipsis, short_id};
use super::{CliError, Client, Result};

/// `ps` columns: (field, header).
const PS_FIELDS: [(&str, &str); 11] = [
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Networks", "NETWORKS"),
];
const PS_DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Filter output based on conditions provided (`name=web`, `status=exited`, `label=k=v`).
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a template (`table`, `json`, or Go-template-like `{{.Names}}`).
    #[arg(long)]
    format: Option<String>,
    /// Print the engine's documents as a JSON array, for scripts.
    #[arg(long, conflicts_with_all = ["format", "quiet"])]
    json: bool,
}

/// Go's strconv.Quote for the COMMAND column.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The docker CLI's DisplayablePorts: same-port mappings and exposed ports grouped into ranges,
/// then host mappings to another port.
pub fn display_ports(ports: &[Port]) -> String {
    let mut ports = ports.to_vec();
    let kind = |p: &Port| p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
    ports.sort_by(|a, b| {
        (
            a.private_port,
            a.ip.clone().unwrap_or_default(),
            a.public_port,
            kind(a),
        )
            .cmp(&(
                b.private_port,
                b.ip.clone().unwrap_or_default(),
                b.public_port,
                kind(b),
            ))
    });
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &ports {
        let ip = p.ip.clone().unwrap_or_default();
        let mut key = kind(p);
        if !ip.is_empty() {
            let public = p.public_port.unwrap_or(0);
            if public != p.private_port {
                let host = if ip.contains(':') {
                    format!("[{ip}]:{public}")
                } else {
                    format!("{ip}:{public}")
                };
                mappings.push(format!("{host}->{}/{}", p.private_port, kind(p)));
                continue;
            }
            key = format!("{ip}/{}", kind(p));
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private_port, p.private_port)),
            Some(g) if p.private_port == g.2 + 1 => g.2 = p.private_port,
            Some(g) => {
                result.push(form_group(&g.0, g.1, g.2));
                g.1 = p.private_port;
                g.2 = p.private_port;
            }
        }
    }
    result.extend(groups.iter().map(|g| form_group(&g.0, g.1, g.2)));
    result.extend(mappings);
    result.join(", ")
}

fn form_group(key: &str, first: u16, last: u16) -> String {
    let (ip, kind) = key.rsplit_once('/').unwrap_or(("", key));
    let mut group = first.to_string();
    if first != last {
        group = format!("{group}-{last}");
    }
    if !ip.is_empty() {
        group = format!("{ip}:{group}->{group}");
    }
    format!("{group}/{kind}")
}

/// "2026-11-29 09:00:00 +0000 UTC", Go's time.String of a Unix time in UTC.
fn created_at(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn ps_row(c: &ContainerSummary, trunc: bool) -> Row {
    let id = c.id.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let image = if image.is_empty() {
        "<no image>".to_owned()
    } else if trunc && image.starts_with("sha256:") {
        short_id(&image)
    } else if trunc {
        image.split('@').next().unwrap_or_default().to_owned()
    } else {
        image
    };
    let command = c.command.clone().unwrap_or_default();
    let names: Vec<String> = c
        .names
        .iter()
        .flatten()
        .map(|n| n.trim_start_matches('/'))
        .filter(|n| !n.contains('/'))
        .map(str::to_owned)
        .collect();
    let mut labels: Vec<String> = c
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mut networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let created = c.created.unwrap_or_default();
    let field = |name: &'static str, value: String| {
        let header = PS_FIELDS
            .iter()
            .find(|(f, _)| *f == name)
            .map_or("", |f| f.1);
        (name, header, value)
    };
    vec![
        field("ID", if trunc { short_id(&id) } else { id }),
        field("Image", image),
        field(
            "Command",
            go_quote(&if trunc {
                ellipsis(&command, 20)
            } else {
                command
            }),
        ),
        field("CreatedAt", created_at(created)),
        field("RunningFor", ago(created)),
        field(
            "Ports",
            display_ports(c.ports.as_deref().unwrap_or_default()),
        ),
        field("State", c.state.clone().unwrap_or_default()),
        field("Status", c.status.clone().unwrap_or_default()),
        field("Names", names.join(",")),
        field("Labels", labels.join(",")),
        field("Networks", networks.join(",")),
    ]
}

pub async fn ps(client: &Client, args: PsArgs) -> Result<ExitCode> {
    let template = super::template(args.format.as_deref(), PS_DEFAULT, &PS_FIELDS)?;
    let list = client
        .docker
        .list_containers(Some(ListContainersOptions::<String> {
            all: args.all,
            filters: super::filters(&args.filter)?,
            ..Default::default()
        }))
        .await
        .map_err(|e| client.error(e, 1))?;
    if args.json {
        return super::print_json(&list);
    }
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for c in &list {
            let id = c.id.clone().unwrap_or_default();
            let _ = writeln!(out, "{}", if args.no_trunc { id } else { short_id(&id) });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Row> = list.iter().map(|c| ps_row(c, !args.no_trunc)).collect();
    let _ = out.write_all(template.render(&rows).as_bytes());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

pub async fn logs(client: &Client, args: LogsArgs) -> Result<ExitCode> {
    let mut stream = client.docker.logs(
        &args.container,
        Some(LogsOptions::<String> {
            follow: args.follow,
            stdout: true,
            stderr: true,
            timestamps: args.timestamps,
            tail: args.tail,
            ..Default::default()
        }),
    );
    while let Some(item) = stream.next().await {
        write_output(item.map_err(|e| client.error(e, 1))?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies one chunk of a container's output to our stdout or stderr.
pub(super) fn write_output(out: LogOutput) {
    match out {
        LogOutput::StdErr { message } => {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&message);
            let _ = e.flush();
        }
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&message);
            let _ = o.flush();
        }
        LogOutput::StdIn { .. } => {}
    }
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time")]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(clap::Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// What a lifecycle verb does to each container it names.
pub enum Lifecycle {
    Start(NamesArgs),
    Stop(StopArgs),
    Restart(StopArgs),
    Kill(KillArgs),
    Rm(RmArgs),
}

/// Acts on each named container in turn, printing its name as the docker CLI does; a failure
/// is printed and the others still run, and the exit code is then 1.
pub async fn lifecycle(client: &Client, verb: Lifecycle) -> Result<ExitCode> {
    let d = &client.docker;
    let names = match &verb {
        Lifecycle::Start(a) => &a.containers,
        Lifecycle::Stop(a) | Lifecycle::Restart(a) => &a.containers,
        Lifecycle::Kill(a) => &a.containers,
        Lifecycle::Rm(a) => &a.containers,
    };
    let mut failed = false;
    for name in names {
        let result = match &verb {
            Lifecycle::Start(_) => d.start_container::<String>(name, None).await,
            Lifecycle::Stop(a) => {
                d.stop_container(name, a.time.map(|t| StopContainerOptions { t }))
                    .await
            }
            Lifecycle::Restart(a) => {
                d.restart_container(
                    name,
                    a.time.map(|t| RestartContainerOptions { t: t as isize }),
                )
                .await
            }
            Lifecycle::Kill(a) => {
                d.kill_container(
                    name,
                    Some(KillContainerOptions {
                        signal: a.signal.as_str(),
                    }),
                )
                .await
            }
            Lifecycle::Rm(a) => {
                d.remove_container(
                    name,
                    Some(RemoveContainerOptions {
                        force: a.force,
                        v: a.volumes,
                        ..Default::default()
                    }),
                )
                .await
            }
        };
        match result {
            Ok(()) => println!("{name}"),
            Err(e) => {
                failed = true;
                eprintln!("{}", client.error(e, 1).message);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output using a template (`{{json .}}` only).
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

/// `inspect`: containers, else images, as a JSON array.
pub async fn inspect(client: &Client, args: InspectArgs) -> Result<ExitCode> {
    let d = &client.docker;
    let mut docs = Vec::new();
    let mut failed = false;
    for name in &args.names {
        // As docker inspect: a container, else an image, a volume or a network of that name.
        let doc = if let Ok(c) = d.inspect_container(name, None).await {
            serde_json::to_value(c).ok()
        } else if let Ok(i) = d.inspect_image(name).await {
            serde_json::to_value(i).ok()
        } else if let Ok(v) = d.inspect_volume(name).await {
            serde_json::to_value(v).ok()
        } else if let Ok(n) = d.inspect_network::<String>(name, None).await {
            serde_json::to_value(n).ok()
        } else {
            None
        };
        match doc {
            Some(d) => docs.push(d),
            None => {
                failed = true;
                eprintln!("Error: No such object: {name}");
            }
        }
    }
    print_inspect(&docs, args.format.as_deref())?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(clap::Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// `a` before `b` with digit runs compared as numbers (`80/tcp` before `443/tcp`).
fn natural_less(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let ord = if *da && *db {
            xa.parse::<u128>()
                .unwrap_or(0)
                .cmp(&xb.parse::<u128>().unwrap_or(0))
        } else {
            xa.cmp(xb)
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// `port`: a container's published ports, as the docker CLI lists them.
pub async fn port(client: &Client, args: PortArgs) -> Result<ExitCode> {
    let c = client
        .docker
        .inspect_container(&args.container, None)
        .await
        .map_err(|e| client.error(e, 1))?;
    let ports = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
    let join = |b: &bollard::models::PortBinding| {
        let ip = b.host_ip.clone().unwrap_or_default();
        let port = b.host_port.clone().unwrap_or_default();
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut out: Vec<String> = Vec::new();
    match &args.port {
        Some(p) => {
            let key = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            match ports.get(&key) {
                Some(Some(bindings)) => out.extend(bindings.iter().map(join)),
                _ => {
                    return Err(CliError::new(
                        1,
                        format!(
                            "Error: No public port '{p}' published for {}",
                            args.container
                        ),
                    ));
                }
            }
        }
        None => {
            for (from, bindings) in &ports {
                for b in bindings.iter().flatten() {
                    out.push(format!("{from} -> {}", join(b)));
                }
            }
        }
    }
    out.sort_by(|a, b| natural_less(a, b));
    for line in out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints inspect documents: an indented JSON array, or one JSON line each for `{{json .}}`.
pub fn print_inspect(docs: &[serde_json::Value], format: Option<&str>) -> Result<()> {
    match format {
        None => println!("{}", serde_json::to_string_pretty(docs).unwrap_or_default()),
        Some("{{json .}}" | "json") => {
            for d in docs {
                println!("{d}");
            }
        }
        Some(other) => {
            return Err(CliError::new(
                125,
                format!("inspect --format {other:?}: only {{{{json .}}}} for now"),
            ));
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Run in the background.
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub async fn exec(client: &Client, args: ExecArgs) -> Result<ExitCode> {
    let d = &client.docker;
    let attach = !args.detach;
    let created = d
        .create_exec(
            &args.container,
            CreateExecOptions::<String> {
                cmd: Some(args.command),
                env: (!args.env.is_empty()).then_some(args.env),
                working_dir: args.workdir,
                user: args.user,
                tty: Some(args.tty),
                attach_stdin: Some(attach && args.interactive),
                attach_stdout: Some(attach),
                attach_stderr: Some(attach),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| client.error(e, 1))?;
    let raw = (attach && args.tty).then(super::tty::RawMode::enter);
    let started = d
        .start_exec(
            &created.id,
            Some(bollard::exec::StartExecOptions {
                detach: args.detach,
                tty: args.tty,
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| client.error(e, 126))?;
    let StartExecResults::Attached { mut output, input } = started else {
        return Ok(ExitCode::SUCCESS);
    };
    let resizer = args.tty.then(|| {
        let (docker, id) = (d.clone(), created.id.clone());
        super::tty::follow_window(move |rows, cols| {
            let (docker, id) = (docker.clone(), id.clone());
            async move {
                let size = bollard::exec::ResizeExecOptions {
                    height: rows,
                    width: cols,
                };
                let _ = docker.resize_exec(&id, size).await;
            }
        })
    });
    let stdin = args
        .interactive
        .then(|| tokio::spawn(super::tty::pump_stdin(input, false)));
    while let Some(Ok(chunk)) = output.next().await {
        write_output(chunk);
    }
    if let Some(r) = resizer {
        r.abort();
    }
    if let Some(s) = stdin {
        s.abort();
    }
    drop(raw);
    let done = d
        .inspect_exec(&created.id)
        .await
        .map_err(|e| client.error(e, 1))?;
    Ok(ExitCode::from(
        done.exit_code.unwrap_or(0).clamp(0, 255) as u8
    ))
}

#[cfg(test)]
mod port_tests {
    #[test]
    fn ports_sort_naturally() {
        let mut v = vec![
            "443/tcp -> 0.0.0.0:8443",
            "80/tcp -> 0.0.0.0:8080",
            "80/tcp -> [::]:8080",
        ];
        v.sort_by(|a, b| super::natural_less(a, b));
        assert_eq!(
            v,
            [
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080",
                "443/tcp -> 0.0.0.0:8443"
            ]
        );
    }
}
