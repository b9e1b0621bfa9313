//! `berth run`: create (pulling the image when it is missing), attach, start, wait, and exit
//! with the container's exit code, as `docker run` does; `-d` prints the ID instead.

use std::collections::HashMap;
use std::process::ExitCode;

use bollard::container::{
    AttachContainerOptions, Config, CreateContainerOptions, WaitContainerOptions,
};
use bollard::models::{
    HostConfig, Mount, MountBindOptions, MountTmpfsOptions, MountTypeEnum, MountVolumeOptions,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use futures_util::StreamExt;

use super::{CliError, Client, Result};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    detach: bool,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Publish a container's port(s) to the host: [IP:][HOSTPORT:]PORT[/PROTO].
    #[arg(short, long = "publish")]
    publish: Vec<String>,
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Connect a container to a network.
    #[arg(long)]
    network: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    user: Option<String>,
    /// Restart policy: no, always, unless-stopped, on-failure[:max-retries].
    #[arg(long, default_value = "no")]
    restart: String,
    /// Memory limit (bytes, or with a unit: 64m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    cpus: Option<f64>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Set metadata on a container (key=value).
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Bind mount a volume or host directory: [SOURCE:]DEST[:OPTIONS].
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount: type=volume|bind|tmpfs,source=...,target=...[,readonly].
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory: PATH[:OPTIONS].
    #[arg(long = "tmpfs")]
    tmpfs: Vec<String>,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `-m` values: a number of bytes with an optional b, k, m or g suffix (docker's RAMInBytes).
pub fn parse_memory(s: &str) -> std::result::Result<i64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    if n < 0.0 {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok((n * mult as f64) as i64)
}

/// One `-p` value: the container port key ("80/tcp") and its binding.
pub fn parse_publish(s: &str) -> std::result::Result<(String, PortBinding), String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, proto)) if matches!(proto, "tcp" | "udp" | "sctp") => (spec, proto),
        Some(_) => return Err(format!("invalid proto in {s}")),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(format!("invalid publish spec {s}")),
    };
    let port: u16 = container
        .parse()
        .map_err(|_| format!("invalid containerPort: {container}"))?;
    if !host.is_empty() && host.parse::<u16>().is_err() {
        return Err(format!("invalid hostPort: {host}"));
    }
    Ok((
        format!("{port}/{proto}"),
        PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(host.to_owned()),
        },
    ))
}

fn restart_policy(s: &str) -> std::result::Result<RestartPolicy, String> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let name = match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => return Err(format!("invalid restart policy '{other}'")),
    };
    let maximum_retry_count = if count.is_empty() {
        None
    } else if name == RestartPolicyNameEnum::ON_FAILURE {
        Some(
            count
                .parse()
                .map_err(|_| format!("maximum retry count must be an integer: {count}"))?,
        )
    } else {
        return Err(format!(
            "maximum retry count cannot be used with restart policy '{s}'"
        ));
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count,
    })
}

fn bool_value(key: &str, v: Option<&str>) -> std::result::Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("invalid value for {key}: {other}")),
    }
}

/// One `--mount` value, as the docker CLI parses it.
pub fn parse_mount(s: &str) -> std::result::Result<Mount, String> {
    let bad = |why: String| format!("invalid argument \"{s}\" for \"--mount\" flag: {why}");
    let mut m = Mount {
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    };
    let mut volume = MountVolumeOptions::default();
    let mut bind = MountBindOptions::default();
    let mut tmpfs = MountTmpfsOptions::default();
    let (mut has_volume, mut has_bind, mut has_tmpfs) = (false, false, false);
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_owned)
                .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match key.as_str() {
            "type" => {
                m.typ = Some(match need(value)?.as_str() {
                    "volume" => MountTypeEnum::VOLUME,
                    "bind" => MountTypeEnum::BIND,
                    "tmpfs" => MountTypeEnum::TMPFS,
                    other => return Err(bad(format!("invalid mount type '{other}'"))),
                })
            }
            "source" | "src" => m.source = Some(need(value)?),
            "target" | "dst" | "destination" => m.target = Some(need(value)?),
            "readonly" | "ro" => m.read_only = Some(bool_value(&key, value).map_err(bad)?),
            "consistency" => m.consistency = Some(need(value)?),
            "bind-propagation" => {
                has_bind = true;
                bind.propagation = Some(
                    need(value)?
                        .parse()
                        .map_err(|_| bad(format!("invalid bind-propagation {field}")))?,
                );
            }
            "volume-nocopy" => {
                has_volume = true;
                volume.no_copy = Some(bool_value(&key, value).map_err(bad)?);
            }
            "volume-label" | "volume-opt" => {
                has_volume = true;
                let v = need(value)?;
                let (k, v) = v.split_once('=').unwrap_or((&v, ""));
                if key == "volume-label" {
                    volume
                        .labels
                        .get_or_insert_with(HashMap::new)
                        .insert(k.to_owned(), v.to_owned());
                } else {
                    volume
                        .driver_config
                        .get_or_insert_with(Default::default)
                        .options
                        .get_or_insert_with(HashMap::new)
                        .insert(k.to_owned(), v.to_owned());
                }
            }
            "volume-driver" => {
                has_volume = true;
                volume
                    .driver_config
                    .get_or_insert_with(Default::default)
                    .name = Some(need(value)?);
            }
            "tmpfs-size" => {
                has_tmpfs = true;
                tmpfs.size_bytes = Some(parse_memory(&need(value)?).map_err(bad)?);
            }
            "tmpfs-mode" => {
                has_tmpfs = true;
                let v = need(value)?;
                tmpfs.mode = Some(
                    i64::from_str_radix(&v, 8)
                        .map_err(|_| bad(format!("invalid value for tmpfs-mode: {v}")))?,
                );
            }
            _ => return Err(bad(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    if m.target.as_deref().unwrap_or("").is_empty() {
        return Err(bad("target is required".into()));
    }
    m.volume_options = has_volume.then_some(volume);
    m.bind_options = has_bind.then_some(bind);
    m.tmpfs_options = has_tmpfs.then_some(tmpfs);
    Ok(m)
}

fn config(args: &RunArgs) -> std::result::Result<Config<String>, String> {
    let mut exposed = HashMap::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &args.publish {
        let (key, binding) = parse_publish(p)?;
        exposed.insert(key.clone(), HashMap::new());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let labels: HashMap<String, String> = args
        .label
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Ok(Config {
        image: Some(args.image.clone()),
        cmd: (!args.command.is_empty()).then(|| args.command.clone()),
        entrypoint: args.entrypoint.clone().map(|e| vec![e]),
        env: (!args.env.is_empty()).then(|| args.env.clone()),
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        labels: (!labels.is_empty()).then_some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        attach_stdout: Some(!args.detach),
        attach_stderr: Some(!args.detach),
        tty: Some(args.tty),
        open_stdin: Some(args.interactive),
        attach_stdin: Some(args.interactive && !args.detach),
        stdin_once: Some(args.interactive && !args.detach),
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            network_mode: args.network.clone(),
            restart_policy: Some(restart_policy(&args.restart)?),
            auto_remove: Some(args.rm),
            memory: args.memory.as_deref().map(parse_memory).transpose()?,
            binds: (!args.volume.is_empty()).then(|| args.volume.clone()),
            mounts: (!args.mount.is_empty())
                .then(|| args.mount.iter().map(|m| parse_mount(m)).collect())
                .transpose()?,
            tmpfs: (!args.tmpfs.is_empty()).then(|| {
                args.tmpfs
                    .iter()
                    .map(|t| {
                        let (p, o) = t.split_once(':').unwrap_or((t, ""));
                        (p.to_owned(), o.to_owned())
                    })
                    .collect()
            }),
            nano_cpus: args.cpus.map(|c| (c * 1e9) as i64),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// docker run's exit codes for a start that failed: 127 for a command that is not there, 126
/// for one that cannot run, else 125.
fn start_failure(message: &str) -> u8 {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        125
    }
}

pub async fn run(client: &Client, args: RunArgs) -> Result<ExitCode> {
    if args.rm && !args.restart.starts_with("no") {
        return Err(CliError::new(
            125,
            "docker: Conflicting options: --restart and --rm.",
        ));
    }
    let cfg = config(&args).map_err(|e| CliError::new(125, format!("docker: {e}.")))?;
    let d = &client.docker;
    let options = args.name.clone().map(|name| CreateContainerOptions {
        name,
        platform: None,
    });
    let created = match d.create_container(options.clone(), cfg.clone()).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        }) if message.contains("No such image") => {
            eprintln!("Unable to find image '{}' locally", args.image);
            super::images::pull_to(client, &args.image, true).await?;
            d.create_container(options, cfg).await
        }
        other => other,
    }
    .map_err(|e| {
        let mut err = client.error(e, 125);
        err.message = format!("docker: {}.", err.message.trim_end_matches('.'));
        err
    })?;
    let id = created.id;
    for w in created.warnings {
        eprintln!("WARNING: {w}");
    }
    if args.detach {
        d.start_container::<String>(&id, None).await.map_err(|e| {
            let err = client.error(e, 125);
            CliError::new(
                start_failure(&err.message),
                format!("docker: {}.", err.message),
            )
        })?;
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    // Attach and wait before the start, so no output and no exit is missed.
    let attached = d
        .attach_container(
            &id,
            Some(AttachContainerOptions::<String> {
                stdin: Some(args.interactive),
                stdout: Some(true),
                stderr: Some(true),
                stream: Some(true),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| client.error(e, 125))?;
    let condition = if args.rm { "removed" } else { "next-exit" };
    let mut wait = d.wait_container(&id, Some(WaitContainerOptions { condition }));
    let waiter = tokio::spawn(async move {
        match wait.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e),
            None => Ok(0),
        }
    });
    // Raw mode for a TTY session, restored however this ends.
    let raw = args.tty.then(super::tty::RawMode::enter);
    if let Err(e) = d.start_container::<String>(&id, None).await {
        waiter.abort();
        drop(raw);
        let err = client.error(e, 125);
        return Err(CliError::new(
            start_failure(&err.message),
            format!("docker: {}.", err.message),
        ));
    }
    let resizer = args.tty.then(|| {
        let (docker, id) = (d.clone(), id.clone());
        super::tty::follow_window(move |rows, cols| {
            let (docker, id) = (docker.clone(), id.clone());
            async move {
                let size = bollard::container::ResizeContainerTtyOptions {
                    width: cols,
                    height: rows,
                };
                let _ = docker.resize_container_tty(&id, size).await;
            }
        })
    });
    let mut stdin = args
        .interactive
        .then(|| tokio::spawn(super::tty::pump_stdin(attached.input, args.tty)));
    let mut output = attached.output;
    loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => super::containers::write_output(chunk),
                _ => break,
            },
            pumped = async { stdin.as_mut().expect("guarded").await }, if stdin.is_some() => {
                stdin = None;
                if matches!(pumped, Ok(super::tty::Pump::Detached)) {
                    // The container keeps running; this client leaves.
                    if let Some(r) = &resizer {
                        r.abort();
                    }
                    waiter.abort();
                    drop(raw);
                    eprintln!("\r\nread escape sequence");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
    if let Some(r) = resizer {
        r.abort();
    }
    if let Some(s) = stdin {
        s.abort();
    }
    drop(raw);
    let code = waiter
        .await
        .map_err(|e| CliError::new(125, e.to_string()))?
        .map_err(|e| client.error(e, 125))?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[cfg(test)]
mod tests {

    #[test]
    fn mount_flags_parse_as_the_docker_cli_does() {
        let m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=0700").unwrap();
        assert_eq!(m.typ, Some(MountTypeEnum::TMPFS));
        let t = m.tmpfs_options.unwrap();
        assert_eq!((t.size_bytes, t.mode), (Some(2 << 20), Some(0o700)));
        let m =
            parse_mount("source=data,target=/d,readonly,volume-nocopy,volume-label=a=b").unwrap();
        assert_eq!(
            m.typ,
            Some(MountTypeEnum::VOLUME),
            "volume is the default type"
        );
        assert_eq!(m.read_only, Some(true));
        let v = m.volume_options.unwrap();
        assert_eq!(v.no_copy, Some(true));
        assert_eq!(v.labels.unwrap()["a"], "b");
        let m = parse_mount("type=bind,src=/h,dst=/c,bind-propagation=rshared,ro=false").unwrap();
        assert_eq!(m.read_only, Some(false));
        assert!(m.bind_options.unwrap().propagation.is_some());
        assert!(
            parse_mount("type=bind,src=/h")
                .unwrap_err()
                .contains("target is required")
        );
        assert!(
            parse_mount("dst=/x,bogus=1")
                .unwrap_err()
                .contains("unexpected key 'bogus'")
        );
        assert!(parse_mount("type=nfs,dst=/x").is_err());
    }

    use super::*;

    #[test]
    fn flags_parse_as_docker_run_does() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("1048576").unwrap(), 1 << 20);
        assert!(parse_memory("lots").is_err());
        let (k, b) = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(k, "80/udp");
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some("8080"));
        let (k, b) = parse_publish("80").unwrap();
        assert_eq!((k.as_str(), b.host_port.as_deref()), ("80/tcp", Some("")));
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("80/foo").is_err());
        assert!(restart_policy("on-failure:3").unwrap().maximum_retry_count == Some(3));
        assert!(restart_policy("always:3").is_err());
        assert!(restart_policy("sometimes").is_err());
    }
}
