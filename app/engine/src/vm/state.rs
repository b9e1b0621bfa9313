//! The VM lifecycle as an explicit state machine: every change goes through
//! [`VmState::can_become`], and a refused change is a typed error, never a silent overwrite.

use serde::{Deserialize, Serialize};

use crate::host::{Accel, BackendKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Failed => "failed",
        };
        f.write_str(name)
    }
}

impl VmState {
    pub fn can_become(self, next: VmState) -> bool {
        use VmState::*;
        matches!(
            (self, next),
            (Stopped | Failed, Starting)
                | (Failed, Stopped)
                | (Starting, Running | Failed | Stopping)
                | (Running, Stopping | Failed)
                | (Stopping, Stopped | Failed)
        )
    }
}

/// Phase times of one boot, in milliseconds from the start request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootTimes {
    /// The VMM process (and its helpers) were spawned.
    pub vm_process_ms: u64,
    /// The guest kernel started (derived from the guest's boot clock).
    pub kernel_up_ms: u64,
    /// PID 1 started.
    pub init_up_ms: u64,
    /// The agent answered its first ping: the boot time.
    pub agent_ready_ms: u64,
}

/// What the supervisor reports; published on every change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmStatus {
    pub state: VmState,
    pub backend: Option<BackendKind>,
    pub accel: Option<Accel>,
    /// Why the VM failed, or why it is in its state.
    pub reason: Option<String>,
    /// The serial log's tail when the VM failed.
    pub log_tail: Option<String>,
    pub pid: Option<u32>,
    pub boot: Option<BootTimes>,
    pub kernel: Option<String>,
    pub agent_version: Option<String>,
    /// The last health check reached the agent.
    pub healthy: bool,
    /// Set when `auto` chose the builtin VMM, it did not boot, and qemu runs the guest
    /// instead: why the builtin VMM failed.
    pub fallback: Option<String>,
}

impl Default for VmStatus {
    fn default() -> Self {
        VmStatus {
            state: VmState::Stopped,
            backend: None,
            accel: None,
            reason: None,
            log_tail: None,
            pid: None,
            boot: None,
            kernel: None,
            agent_version: None,
            healthy: false,
            fallback: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VmState::*;

    #[test]
    fn transitions() {
        assert!(Stopped.can_become(Starting));
        assert!(Failed.can_become(Starting));
        assert!(Starting.can_become(Running));
        assert!(Running.can_become(Failed));
        assert!(Stopping.can_become(Stopped));
        assert!(!Stopped.can_become(Running));
        assert!(!Running.can_become(Starting));
        assert!(!Stopped.can_become(Stopping));
        assert!(!Starting.can_become(Starting));
    }
}
