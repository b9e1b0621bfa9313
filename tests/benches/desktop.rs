//! `make bench`: the desktop app under Xvfb. Launch (X server, driver, app) to the first
//! rendered dashboard and to the engine shown Running, median of 5; then, with the engine
//! running and nothing else happening, the app's RSS (its own process and WebKit's web
//! process) and its CPU time over 20 s of idling, which should be near zero since the UI only
//! redraws on events. Then the same over 60 s with 10 running containers on the Containers view
//! (live stats on), and the view with 200 containers: time to render it, and from a container's
//! stop returning to its row showing it.

use std::time::{Duration, Instant};

use berth_tests::{TestHome, desktop, median, registry, rss_kib};
use fantoccini::Locator;

const RUNS: usize = 5;

async fn wait_text(c: &fantoccini::Client, css: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(el) = c.find(Locator::Css(css)).await {
            match want {
                None => return,
                Some(w) if el.text().await.is_ok_and(|t| t == w) => return,
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "waited for {css} {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes whose executable is `exe`.
fn pids_of(exe: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|p| p.to_string_lossy().ends_with(exe))
        })
        .collect()
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The app's and its web process's CPU use over `secs`, in percent of one core.
async fn cpu_over(secs: u64) -> f64 {
    let pids: Vec<u32> = pids_of("/berth-desktop")
        .into_iter()
        .chain(pids_of("/WebKitWebProcess"))
        .collect();
    let ticks0: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let ticks1: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks1 - ticks0) as f64 / hz / secs as f64 * 100.0
}

/// `docker` against the app's socket; panics on failure.
fn docker(home: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", home.join("run/docker.sock").display()),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows in the containers table, counted in the page.
async fn rows(c: &fantoccini::Client) -> usize {
    c.execute(
        "return document.querySelectorAll('[data-testid=container-row]').length",
        vec![],
    )
    .await
    .ok()
    .and_then(|v| v.as_u64())
    .unwrap_or(0) as usize
}

/// 10 running containers, then 200 in all: idle CPU, render and update times.
async fn many_containers(home: &std::path::Path, c: &fantoccini::Client) {
    let click = |css: &'static str| async move {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    for i in 0..10 {
        docker(
            home,
            &[
                "run",
                "-d",
                "--name",
                &format!("run{i}"),
                "busybox",
                "sleep",
                "3600",
            ],
        );
    }
    click("[data-testid=nav-containers]").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows(c).await < 10 {
        assert!(Instant::now() < deadline, "10 rows never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let busy = cpu_over(60).await;
    println!(
        "desktop app with 10 running containers on the Containers view (live stats): {busy:.2}% \
         of one core over 60 s"
    );
    // 190 more, created and not started, a few at a time.
    let names: Vec<String> = (0..190).map(|i| format!("c{i:03}")).collect();
    for chunk in names.chunks(4) {
        std::thread::scope(|s| {
            for n in chunk {
                s.spawn(|| docker(home, &["create", "--name", n, "busybox", "true"]));
            }
        });
    }
    let mut render = Vec::new();
    for _ in 0..RUNS {
        click("[data-testid=nav-images]").await;
        while rows(c).await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t0 = Instant::now();
        click("[data-testid=nav-containers]").await;
        while rows(c).await < 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "200 rows never showed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        render.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let mut update = Vec::new();
    for i in 0..RUNS {
        let name = format!("run{i}");
        docker(home, &["stop", "-t", "0", &name]);
        let t0 = Instant::now();
        let css = format!("[data-testid=container-row][data-name={name}][data-state=exited]");
        while c.find_all(Locator::Css(&css)).await.unwrap().is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} never showed exited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        update.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "desktop app, 200 containers: Containers view rendered in {:.0} ms; a stop shown {:.0} ms \
         after docker stop returned (medians of {RUNS}; WebDriver round trips included)",
        median(render),
        median(update)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let reg = registry::Registry::start();
    reg.push(
        "library/busybox",
        "latest",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let mut first_render = Vec::new();
    let mut running = Vec::new();
    for run in 0..RUNS {
        let home = TestHome::new();
        std::fs::write(
            home.path().join("settings.json"),
            serde_json::json!({ "registry-mirrors": [format!("http://{}", reg.host())] })
                .to_string(),
        )
        .unwrap();
        let t0 = Instant::now();
        let session = desktop::start(home.path()).await;
        wait_text(&session.client, "[data-testid=engine-state]", None).await;
        first_render.push(t0.elapsed().as_secs_f64() * 1000.0);
        wait_text(
            &session.client,
            "[data-testid=engine-state]",
            Some("Running"),
        )
        .await;
        running.push(t0.elapsed().as_secs_f64() * 1000.0);
        if run + 1 < RUNS {
            continue;
        }
        // The last run stays up for the idle figures.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let app = pids_of("/berth-desktop");
        let web = pids_of("/WebKitWebProcess");
        let idle_cpu = cpu_over(20).await;
        let app_rss: u64 = app.iter().map(|p| rss_kib(*p)).sum();
        let web_rss: u64 = web.iter().map(|p| rss_kib(*p)).sum();
        println!(
            "desktop app: launch to first rendered dashboard {:.0} ms, to engine Running {:.0} ms \
             (medians of {RUNS}, qemu backend under TCG)",
            median(first_render.clone()),
            median(running.clone())
        );
        println!(
            "desktop app idle with the engine running: {idle_cpu:.2}% of one core over 20 s; RSS \
             {} MiB app + {} MiB web process",
            app_rss / 1024,
            web_rss / 1024
        );
        many_containers(home.path(), &session.client).await;
        drop(session);
    }
}
