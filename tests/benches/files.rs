//! `make bench`, issue 7's figures in one run:
//! - a 10,000-file tree unpacked into a bind-mounted host directory, then `find` + `stat` over
//!   it, inside a Berth container versus the same busybox commands on the host (the container's
//!   time is its `docker run` less an empty run's, so start-up is not counted);
//! - a no-change rebuild of a multi-stage Dockerfile with Berth's classic builder versus
//!   Debian's dockerd 20.10 legacy builder, same Dockerfile, same base image, same CLI.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use berth_tests::dockerd::{Engine, start_dockerd};
use berth_tests::registry::{Registry, busybox_config, busybox_layers};
use berth_tests::{median, run_with_limit, spawn_engine};

const FILES: usize = 10_000;
const RUNS: usize = 3;

const DOCKERFILE: &str = r#"FROM busybox AS build
WORKDIR /src
COPY greeting.txt .
RUN tr a-z A-Z < greeting.txt > shout.txt
FROM busybox
ENV APP_MODE=prod
COPY --from=build /src/shout.txt /app/shout.txt
COPY data/ /app/data/
RUN echo built > /app/stamp
CMD ["cat", "/app/shout.txt"]
"#;

/// The tree as a tar: 100 directories of 100 small files.
fn tree_tar(path: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for i in 0..FILES {
        let data = format!("file {i}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(
            &mut h,
            format!("tree/d{:03}/f{i:05}", i / 100),
            data.as_bytes(),
        )
        .unwrap();
    }
    b.finish().unwrap();
}

const SCRIPT: &str = "cd \"$1\" && rm -rf out && mkdir out && tar -xf tree.tar -C out && find out -type f | xargs stat -c %s | wc -l";

fn host_ms(dir: &Path) -> f64 {
    let start = Instant::now();
    let out = Command::new("busybox")
        .args(["sh", "-c", SCRIPT, "sh"])
        .arg(dir)
        .output()
        .unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        FILES.to_string()
    );
    ms
}

fn container_ms(e: &Engine, dir: &Path) -> f64 {
    let bind = format!("{}:/w", dir.display());
    let empty = e.timed(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "true",
    ]);
    let start = Instant::now();
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        "/w",
    ]);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(out.trim(), FILES.to_string());
    (ms - empty).max(0.0)
}

/// The same work in the container's own (overlay) filesystem: the run less one that only
/// copies the tar in, so TCG's share of the bind-mount figure shows.
fn overlay_ms(e: &Engine, dir: &Path) -> f64 {
    let bind = format!("{}:/w:ro", dir.display());
    let copy = "mkdir /x && cp /w/tree.tar /x/";
    let copy_only = e.timed(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        copy,
    ]);
    let script = format!("{copy} && set -- /x && {SCRIPT}");
    let start = Instant::now();
    let out = e.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(out.trim(), FILES.to_string());
    (ms - copy_only).max(0.0)
}

fn build(e: &Engine, dir: &Path) -> (f64, String) {
    let mut cmd = Command::new("docker");
    cmd.args(["build", "--network", "none", "-t", "bench-build:1"])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env_remove("DOCKER_CONTEXT");
    let start = Instant::now();
    let out = run_with_limit(cmd, std::time::Duration::from_secs(900));
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {text}{}",
        e.name,
        String::from_utf8_lossy(&out.stderr)
    );
    (ms, text)
}

/// The rebuild time (median of RUNS) after one build that fills the cache.
fn rebuild_ms(e: &Engine, base: &str, dir: &Path) -> f64 {
    e.ok(&["pull", base]);
    e.ok(&["tag", base, "busybox:latest"]);
    build(e, dir);
    let times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (ms, text) = build(e, dir);
            assert_eq!(text.matches("Using cache").count(), 8, "{}: {text}", e.name);
            ms
        })
        .collect();
    median(times)
}

fn main() {
    let reg = Registry::start();
    reg.push("bench/busybox", "1", &busybox_layers(), busybox_config());
    let base = format!("{}/bench/busybox:1", reg.host());

    let work = tempfile::Builder::new()
        .prefix("berth-files")
        .tempdir_in("/tmp")
        .unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    tree_tar(&tree.join("tree.tar"));
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("greeting.txt"), "hello\n").unwrap();
    for i in 0..50 {
        std::fs::write(ctx.join(format!("data/f{i}.txt")), format!("{i}\n")).unwrap();
    }

    let home = tempfile::Builder::new()
        .prefix("berth-bh")
        .tempdir_in("/tmp")
        .unwrap();
    let (_engine, socket) = spawn_engine(home.path(), &reg.host());
    let berth = Engine {
        name: "berth",
        socket,
    };
    berth.ok(&["pull", &base]);
    berth.ok(&["tag", &base, "busybox:latest"]);
    eprintln!("files bench: 10,000 files into a bind mount");
    let host: Vec<f64> = (0..RUNS).map(|_| host_ms(&tree)).collect();
    let inside: Vec<f64> = (0..RUNS).map(|_| container_ms(&berth, &tree)).collect();
    let own: Vec<f64> = (0..RUNS).map(|_| overlay_ms(&berth, &tree)).collect();
    eprintln!("files bench: rebuilds on berth");
    let berth_rebuild = rebuild_ms(&berth, &base, &ctx);

    let dockerd_rebuild = if Command::new("dockerd").arg("--version").output().is_ok() {
        let dk_dir = tempfile::Builder::new()
            .prefix("berth-dk")
            .tempdir_in("/tmp")
            .unwrap();
        let (mut dockerd, dk) = start_dockerd(dk_dir.path());
        eprintln!("files bench: rebuilds on dockerd");
        let ms = rebuild_ms(&dk, &base, &ctx);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(dockerd.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = dockerd.wait();
        Some(ms)
    } else {
        eprintln!("files bench: dockerd is missing (scripts/setup.sh --bench); no rebuild peer");
        None
    };

    let (h, c) = (median(host), median(inside));
    println!("files bench (berth on qemu TCG here; virtio-fs for the bind mount):");
    println!("{:<46} {:>10} {:>10} {:>8}", "", "berth", "peer", "ratio");
    println!(
        "{:<46} {:>7.0} ms {:>7.0} ms {:>8.2}",
        "untar 10,000 files + find/stat, bind mount",
        c,
        h,
        c / h
    );
    println!("{:<46} {:>10} {:>10}", "", "", "(host)");
    let o = median(own);
    println!(
        "{:<46} {:>7.0} ms {:>7.0} ms {:>8.2}",
        "  the same in the container's own filesystem",
        o,
        h,
        o / h
    );
    match dockerd_rebuild {
        Some(d) => println!(
            "{:<46} {:>7.0} ms {:>7.0} ms {:>8.2}",
            "no-change rebuild, 10 steps",
            berth_rebuild,
            d,
            berth_rebuild / d
        ),
        None => println!(
            "{:<46} {:>7.0} ms",
            "no-change rebuild, 10 steps", berth_rebuild
        ),
    }
    println!("{:<46} {:>10} {:>10}", "", "", "(dockerd)");
}
