//! `make bench`: Berth next to Debian's Docker Engine (docker.io, dockerd 20.10) in the same
//! run, with the same images from the same local registry and the same docker CLI:
//! `docker run --rm IMAGE true` latency (median of 20 after 3 warm-ups), pull throughput of a
//! 250 MB image in 5 layers, and each engine's own create-to-exit time (from its Created and
//! FinishedAt stamps: for Berth, measured inside the guest). Under TCG Berth's absolute times
//! are slower; the figures are printed as measured.

use std::process::Command;

use berth_tests::dockerd::{Engine, start_dockerd};
use berth_tests::registry::{Layer, Registry, busybox_config, busybox_layers};
use berth_tests::{median, spawn_engine};

const WARMUPS: usize = 3;
const RUNS: usize = 20;
const BIG_LAYERS: usize = 5;
const BIG_LAYER_BYTES: usize = 50 * 1024 * 1024;

/// Incompressible bytes from a fixed seed (xorshift), so both engines pull the same image.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Figures {
    run_ms: f64,
    pull_mb_s: f64,
    create_to_exit_ms: f64,
}

fn measure(e: &Engine, small: &str, big: &str, big_bytes: usize) -> Figures {
    e.ok(&["pull", small]);
    for _ in 0..WARMUPS {
        e.ok(&["run", "--rm", "--network", "none", small, "true"]);
    }
    let runs: Vec<f64> = (0..RUNS)
        .map(|_| e.timed(&["run", "--rm", "--network", "none", small, "true"]))
        .collect();
    let pull_ms = e.timed(&["pull", big]);
    let mut create_to_exit = Vec::new();
    for i in 0..5 {
        let name = format!("bench-cte-{i}");
        e.ok(&["run", "--name", &name, "--network", "none", small, "true"]);
        let stamps = e.ok(&["inspect", "-f", "{{.Created}} {{.State.FinishedAt}}", &name]);
        let mut it = stamps.split_whitespace().map(|t| {
            berth_agent::clock::parse(t).unwrap_or_else(|| panic!("not an RFC 3339 time: {t}"))
        });
        let (created, finished) = (it.next().unwrap(), it.next().unwrap());
        create_to_exit.push((finished - created) * 1000.0);
        e.ok(&["rm", &name]);
    }
    e.ok(&["rmi", big]);
    Figures {
        run_ms: median(runs),
        pull_mb_s: big_bytes as f64 / (1024.0 * 1024.0) / (pull_ms / 1000.0),
        create_to_exit_ms: median(create_to_exit),
    }
}

fn main() {
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("engines bench: dockerd is missing; run scripts/setup.sh --bench");
        std::process::exit(1);
    }
    let reg = Registry::start();
    reg.push("bench/busybox", "1", &busybox_layers(), busybox_config());
    eprintln!("engines bench: making the 250 MB image");
    let layers: Vec<Vec<u8>> = (0..BIG_LAYERS)
        .map(|i| {
            Layer::new()
                .file(
                    &format!("data{i}.bin"),
                    0o644,
                    &noise(i as u64 + 7, BIG_LAYER_BYTES),
                )
                .build()
        })
        .collect();
    let big_bytes: usize = layers.iter().map(Vec::len).sum();
    reg.push("bench/big", "1", &layers, busybox_config());
    drop(layers);
    let small = format!("{}/bench/busybox:1", reg.host());
    let big = format!("{}/bench/big:1", reg.host());

    let dk_dir = tempfile::Builder::new()
        .prefix("berth-dk")
        .tempdir_in("/tmp")
        .unwrap();
    let (mut dockerd, dk) = start_dockerd(dk_dir.path());
    eprintln!("engines bench: dockerd");
    let docker_figures = measure(&dk, &small, &big, big_bytes);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dockerd.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = dockerd.wait();

    let home = tempfile::Builder::new()
        .prefix("berth-bh")
        .tempdir_in("/tmp")
        .unwrap();
    let (_engine, socket) = spawn_engine(home.path(), &reg.host());
    let berth = Engine {
        name: "berth",
        socket,
    };
    eprintln!("engines bench: berth");
    let berth_figures = measure(&berth, &small, &big, big_bytes);

    println!("engines bench (same CLI, same registry, same images; berth on qemu TCG here):");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "", "berth", "dockerd", "ratio"
    );
    let row = |what: &str, b: f64, d: f64, unit: &str| {
        println!(
            "{:<34} {:>9.1} {unit:<2} {:>9.1} {unit:<2} {:>8.2}",
            what,
            b,
            d,
            b / d
        );
    };
    row(
        "run --rm true, median of 20",
        berth_figures.run_ms,
        docker_figures.run_ms,
        "ms",
    );
    println!(
        "{:<34} {:>9.1} {:<2} {:>9.1} {:<2} {:>8.2}",
        "pull 250 MB / 5 layers",
        berth_figures.pull_mb_s,
        "MB/s",
        docker_figures.pull_mb_s,
        "MB/s",
        berth_figures.pull_mb_s / docker_figures.pull_mb_s
    );
    row(
        "create-to-exit (engine's stamps)",
        berth_figures.create_to_exit_ms,
        docker_figures.create_to_exit_ms,
        "ms",
    );
}
