//! `stats` and `top`: resource use as the docker CLI computes and prints it (CPU share times
//! online CPUs, memory less inactive page cache, binary sizes for memory and decimal for I/O),
//! once with `--no-stream` or redrawn every second; and the processes of a container.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use bollard::container::{ListContainersOptions, Stats, StatsOptions, TopOptions};
use futures_util::StreamExt;

use super::format::{Row, bytes_size, human_size, short_id, tabwrite_min};
use super::{Client, Result};

const STATS_FIELDS: [(&str, &str); 9] = [
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];
const STATS_DEFAULT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a template.
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

fn row(name_arg: &str, s: &Stats, trunc: bool) -> Row {
    use bollard::container::MemoryStatsStats::{V1, V2};
    let cpu_delta = s
        .cpu_stats
        .cpu_usage
        .total_usage
        .saturating_sub(s.precpu_stats.cpu_usage.total_usage) as f64;
    let sys_delta = s
        .cpu_stats
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(s.precpu_stats.system_cpu_usage.unwrap_or(0)) as f64;
    let cpus = s.cpu_stats.online_cpus.unwrap_or(1) as f64;
    let cpu = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let usage = s.memory_stats.usage.unwrap_or(0);
    let cache = match s.memory_stats.stats {
        Some(V1(m)) => m.total_inactive_file,
        Some(V2(m)) => m.inactive_file,
        None => 0,
    };
    let mem = if cache < usage { usage - cache } else { usage } as f64;
    let limit = s.memory_stats.limit.unwrap_or(0) as f64;
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s.networks.iter().flat_map(|m| m.values()) {
        rx += n.rx_bytes as f64;
        tx += n.tx_bytes as f64;
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s.blkio_stats.io_service_bytes_recursive.iter().flatten() {
        match e.op.to_ascii_lowercase().as_str() {
            "read" => read += e.value as f64,
            "write" => write += e.value as f64,
            _ => {}
        }
    }
    let field = |name: &'static str, value: String| {
        let header = STATS_FIELDS
            .iter()
            .find(|(f, _)| *f == name)
            .map_or("", |f| f.1);
        (name, header, value)
    };
    vec![
        field("Container", name_arg.to_owned()),
        field("ID", if trunc { short_id(&s.id) } else { s.id.clone() }),
        field("Name", s.name.trim_start_matches('/').to_owned()),
        field("CPUPerc", format!("{cpu:.2}%")),
        field(
            "MemUsage",
            format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        ),
        field(
            "MemPerc",
            format!(
                "{:.2}%",
                if limit > 0.0 {
                    mem / limit * 100.0
                } else {
                    0.0
                }
            ),
        ),
        field("NetIO", format!("{} / {}", human_size(rx), human_size(tx))),
        field(
            "BlockIO",
            format!("{} / {}", human_size(read), human_size(write)),
        ),
        field("PIDs", s.pids_stats.current.unwrap_or(0).to_string()),
    ]
}

pub async fn stats(client: &Client, args: StatsArgs) -> Result<ExitCode> {
    let template = super::template(args.format.as_deref(), STATS_DEFAULT, &STATS_FIELDS)?;
    let names: Vec<String> = if args.containers.is_empty() {
        client
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: args.all,
                ..Default::default()
            }))
            .await
            .map_err(|e| client.error(e, 1))?
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    } else {
        args.containers.clone()
    };
    let trunc = !args.no_trunc;
    if args.no_stream {
        let mut rows = Vec::new();
        let mut failed = false;
        for name in &names {
            let mut one = client.docker.stats(
                name,
                Some(StatsOptions {
                    stream: false,
                    one_shot: false,
                }),
            );
            match one.next().await {
                Some(Ok(s)) => rows.push(row(name, &s, trunc)),
                Some(Err(e)) => {
                    failed = true;
                    eprintln!("{}", client.error(e, 1).message);
                }
                None => {}
            }
        }
        print!("{}", template.render(&rows));
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    // Live: one stream per container, the table redrawn once a second.
    let streams = names.iter().map(|name| {
        let name = name.clone();
        client
            .docker
            .stats(
                &name,
                Some(StatsOptions {
                    stream: true,
                    one_shot: false,
                }),
            )
            .map(move |r| (name.clone(), r))
    });
    let mut all = futures_util::stream::select_all(streams);
    let mut latest: BTreeMap<String, Row> = BTreeMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            item = all.next() => match item {
                Some((name, Ok(s))) => {
                    latest.insert(name.clone(), row(&name, &s, trunc));
                }
                Some((name, Err(_))) => {
                    latest.remove(&name);
                }
                None => return Ok(ExitCode::SUCCESS),
            },
            _ = tick.tick() => {
                let rows: Vec<Row> = latest.values().cloned().collect();
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\x1b[2J\x1b[H{}", template.render(&rows));
                let _ = out.flush();
            }
        }
    }
}

#[derive(clap::Args)]
pub struct TopArgs {
    container: String,
    /// ps options (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// `top`: the container's processes as the engine's `ps` reports them.
pub async fn top(client: &Client, args: TopArgs) -> Result<ExitCode> {
    let ps_args = if args.ps_args.is_empty() {
        "-ef".to_owned()
    } else {
        args.ps_args.join(" ")
    };
    let result = client
        .docker
        .top_processes(
            &args.container,
            Some(TopOptions {
                ps_args: ps_args.as_str(),
            }),
        )
        .await
        .map_err(|e| client.error(e, 1))?;
    let mut lines = vec![result.titles.unwrap_or_default().join("\t")];
    for p in result.processes.unwrap_or_default() {
        lines.push(p.join("\t"));
    }
    print!("{}", tabwrite_min(&lines, 20));
    Ok(ExitCode::SUCCESS)
}
