//! Healthchecks: while a container with a `Healthcheck` runs, a thread runs its test in the
//! container (`crun exec`) every interval and keeps dockerd's record in `health.json` beside the
//! state (status `starting`, `healthy` or `unhealthy`, the failing streak, the last five
//! results), which inspect and ps show. A change of status is a `health_status` event.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard_stubs::models::{HealthConfig, HealthStatusEnum, HealthcheckResult};
use serde::{Deserialize, Serialize};

use super::{ContainerStore, Status};
use crate::clock;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// dockerd keeps the last five results.
const KEEP: usize = 5;
/// dockerd keeps at most this much of a probe's output.
const OUTPUT_LIMIT: usize = 4096;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<Probe>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// The probe's command line, or `None` for no check (`NONE`, or no test at all).
pub fn test_args(hc: &HealthConfig) -> Option<Vec<String>> {
    let test = hc.test.as_ref()?;
    match test.first().map(String::as_str) {
        Some("CMD") if test.len() > 1 => Some(test[1..].to_vec()),
        Some("CMD-SHELL") if test.len() > 1 => {
            Some(vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")])
        }
        _ => None,
    }
}

fn nanos(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

pub fn load(dir: &Path) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(dir.join("health.json")).ok()?).ok()
}

fn save(dir: &Path, h: &Health) {
    let _ = crate::images::store::write_atomic(
        &dir.join("health.json"),
        &serde_json::to_vec(h).unwrap_or_default(),
    );
}

/// dockerd's `State.Health`.
pub fn docker_health(h: &Health) -> bollard_stubs::models::Health {
    bollard_stubs::models::Health {
        status: Some(match h.status.as_str() {
            "healthy" => HealthStatusEnum::HEALTHY,
            "unhealthy" => HealthStatusEnum::UNHEALTHY,
            _ => HealthStatusEnum::STARTING,
        }),
        failing_streak: Some(h.failing_streak),
        log: Some(
            h.log
                .iter()
                .map(|p| HealthcheckResult {
                    start: Some(p.start.clone()),
                    end: Some(p.end.clone()),
                    exit_code: Some(p.exit_code),
                    output: Some(p.output.clone()),
                })
                .collect(),
        ),
    }
}

/// Runs the probe once in container `id`: (exit code, output); -1 when it ran past `timeout`.
fn probe(id: &str, args: &[String], timeout: Duration) -> (i64, String) {
    let mut cmd = super::shim::crun(&["exec", id]);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (-1, format!("starting the health check: {e}")),
    };
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break i64::from(status.code().unwrap_or(-1)),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return (
                    -1,
                    format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64()),
                );
            }
        }
    };
    let mut output = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    if output.len() > OUTPUT_LIMIT {
        let mut cut = OUTPUT_LIMIT;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
    }
    (code, output)
}

/// Folds one result into the record, as dockerd does; true when the status changed.
pub fn record(h: &mut Health, p: Probe, in_start_period: bool, retries: i64) -> bool {
    let before = h.status.clone();
    if p.exit_code == 0 {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h.log.push(p);
    if h.log.len() > KEEP {
        h.log.remove(0);
    }
    h.status != before
}

/// Starts the checks of container `id` (just started at `started_at`) when it has one.
pub fn spawn(store: std::sync::Arc<ContainerStore>, id: String) {
    let Ok(rec) = store.record(&id) else { return };
    let Some(hc) = rec.config.healthcheck.clone() else {
        return;
    };
    let Some(args) = test_args(&hc) else { return };
    let started_at = store.state(&id).started_at;
    let dir = store.dir(&id);
    let interval = nanos(hc.interval, DEFAULT_INTERVAL);
    let timeout = nanos(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = nanos(hc.start_period, Duration::ZERO);
    let retries = hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
    let mut h = Health {
        status: "starting".into(),
        ..Default::default()
    };
    save(&dir, &h);
    std::thread::spawn(move || {
        let began = Instant::now();
        loop {
            std::thread::sleep(interval);
            let st = store.state(&id);
            if st.status != Status::Running && st.status != Status::Paused
                || st.started_at != started_at
                || !dir.exists()
            {
                return;
            }
            if st.status == Status::Paused {
                continue;
            }
            let start = clock::now();
            let (exit_code, output) = probe(&id, &args, timeout);
            let p = Probe {
                start,
                end: clock::now(),
                exit_code,
                output,
            };
            let changed = record(&mut h, p, began.elapsed() < start_period, retries);
            // The container may have gone while the probe ran.
            if store.state(&id).started_at != started_at || !dir.exists() {
                return;
            }
            save(&dir, &h);
            if changed && let Ok(rec) = store.record(&id) {
                super::lifecycle::event(&rec, &format!("health_status: {}", h.status), &[]);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i64) -> Probe {
        Probe {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn status_follows_dockerds_rules() {
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        assert!(
            !record(&mut h, probe(1), true, 2),
            "failures in the start period do not count"
        );
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        assert!(record(&mut h, probe(0), false, 2));
        assert_eq!(h.status, "healthy");
        assert!(!record(&mut h, probe(1), false, 2));
        assert!(record(&mut h, probe(1), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        for _ in 0..10 {
            record(&mut h, probe(1), false, 2);
        }
        assert_eq!(h.log.len(), KEEP);
    }

    #[test]
    fn tests_as_docker_writes_them() {
        let hc = |t: &[&str]| HealthConfig {
            test: Some(t.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(
            test_args(&hc(&["CMD-SHELL", "curl -f localhost"])).unwrap(),
            ["/bin/sh", "-c", "curl -f localhost"]
        );
        assert_eq!(test_args(&hc(&["CMD", "true"])).unwrap(), ["true"]);
        assert_eq!(test_args(&hc(&["NONE"])), None);
        assert_eq!(test_args(&HealthConfig::default()), None);
    }
}
