//! `System`: ping, facts about the guest, clock sync and power-off. Power-off is init's job: the
//! service only asks init for it (SIGUSR2 to PID 1).

use std::time::Duration;

use berth_agent_proto::v1::{
    DiskUsage, InfoRequest, InfoResponse, PingRequest, PingResponse, ShutdownRequest,
    ShutdownResponse, SyncTimeRequest, SyncTimeResponse, system_server::System,
};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime, clock_settime};
use tonic::{Request, Response, Status};

use super::AgentFacts;
use crate::{disk, init};

pub struct SystemService {
    facts: AgentFacts,
}

impl SystemService {
    pub fn new(facts: AgentFacts) -> Self {
        SystemService { facts }
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `MemTotal` and `MemAvailable` from /proc/meminfo, in bytes.
fn meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

fn data_disk_usage() -> Option<DiskUsage> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(disk::MOUNT_POINT))?;
    let mut parts = line.split_whitespace();
    let device = parts.next()?.to_owned();
    parts.next();
    let filesystem = parts.next()?.to_owned();
    let st = nix::sys::statvfs::statvfs(disk::MOUNT_POINT).ok()?;
    let frag = st.fragment_size();
    let total = st.blocks() * frag;
    let free = st.blocks_free() * frag;
    Some(DiskUsage {
        device,
        mount_point: disk::MOUNT_POINT.to_owned(),
        filesystem,
        total_bytes: total,
        used_bytes: total.saturating_sub(free),
        available_bytes: st.blocks_available() * frag,
    })
}

fn realtime_ns() -> i64 {
    clock_gettime(ClockId::CLOCK_REALTIME)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0)
}

#[tonic::async_trait]
impl System for SystemService {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            agent_version: VERSION.to_owned(),
        }))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let uts = nix::sys::utsname::uname().map_err(|e| Status::internal(e.to_string()))?;
        let (memory_total_bytes, memory_available_bytes) =
            meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
        let init_problems = std::fs::read_to_string(init::PROBLEMS_FILE)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Response::new(InfoResponse {
            agent_version: VERSION.to_owned(),
            kernel_release: uts.release().to_string_lossy().into_owned(),
            kernel_version: uts.version().to_string_lossy().into_owned(),
            hostname: uts.nodename().to_string_lossy().into_owned(),
            uptime_ms: init::boottime_ms(),
            init_started_ms: self.facts.init_started_ms,
            agent_started_ms: self.facts.agent_started_ms,
            memory_total_bytes,
            memory_available_bytes,
            data_disk: data_disk_usage(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            agent_starts: self.facts.agent_starts,
            agent_pid: std::process::id(),
            realtime_ns: realtime_ns(),
            init_problems,
        }))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        tracing::info!("shutdown requested by the host");
        // Answer first, then ask init to power off.
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(e) = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(1),
                nix::sys::signal::Signal::SIGUSR2,
            ) {
                tracing::error!("asking init to power off: {e}");
            }
        });
        Ok(Response::new(ShutdownResponse {}))
    }

    async fn sync_time(
        &self,
        request: Request<SyncTimeRequest>,
    ) -> Result<Response<SyncTimeResponse>, Status> {
        let host_ns = request.into_inner().realtime_ns;
        if host_ns <= 0 {
            return Err(Status::invalid_argument("realtime_ns must be positive"));
        }
        let previous_offset_ns = realtime_ns() - host_ns;
        let ts = TimeSpec::new(host_ns / 1_000_000_000, host_ns % 1_000_000_000);
        clock_settime(ClockId::CLOCK_REALTIME, ts)
            .map_err(|e| Status::internal(format!("setting the clock: {e}")))?;
        Ok(Response::new(SyncTimeResponse { previous_offset_ns }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_in_bytes() {
        let text = "MemTotal:         505000 kB\nMemFree:  1 kB\nMemAvailable:     400000 kB\n";
        assert_eq!(meminfo(text), (505000 * 1024, 400000 * 1024));
    }
}
