//! `make bench`: the desktop app under Xvfb. Launch (X server, driver, app) to the first
//! rendered dashboard and to the engine shown Running, median of 5; then, with the engine
//! running and nothing else happening, the app's RSS (its own process and WebKit's web
//! process) and its CPU time over 20 s of idling, which should be near zero since the UI only
//! redraws on events.

use std::time::{Duration, Instant};

use berth_tests::{TestHome, desktop, median};
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut first_render = Vec::new();
    let mut running = Vec::new();
    for run in 0..RUNS {
        let home = TestHome::new();
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
        let ticks0: u64 = app.iter().chain(&web).map(|p| cpu_ticks(*p)).sum();
        tokio::time::sleep(Duration::from_secs(20)).await;
        let ticks1: u64 = app.iter().chain(&web).map(|p| cpu_ticks(*p)).sum();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let idle_cpu = (ticks1 - ticks0) as f64 / hz / 20.0 * 100.0;
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
        drop(session);
    }
}
