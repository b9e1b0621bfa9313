//! `berth doctor`: checks the host (KVM, the backend `auto` picks and why, helper programs, the
//! guest image, the home's lock), then boots the VM, pings the agent, times each boot phase and
//! shuts the VM down. Every problem comes with its fix. Owns the report, not the VM.

use serde::Serialize;

use crate::host::{self, KvmProbe};
use crate::paths::{self, Paths};
use crate::settings::Settings;
use crate::vm::lock::VmLock;
use crate::vm::state::BootTimes;
use crate::vm::{GuestImage, Supervisor, VmState, VmStatus};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// Passed. A check that failed without being a problem is a warning.
    pub ok: bool,
    pub warning: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Every check passed and the VM booted, answered and shut down.
    pub healthy: bool,
    pub backend: Option<String>,
    pub accel: Option<String>,
    pub backend_reason: Option<String>,
    /// Start request to agent ready.
    pub boot_ms: Option<u64>,
    pub phases: Option<BootTimes>,
    pub kernel: Option<String>,
    pub agent_version: Option<String>,
    pub engine_version: String,
    pub image_size_bytes: Option<u64>,
    pub berth_home: String,
    pub kvm: KvmProbe,
    pub checks: Vec<Check>,
    /// What stops Berth from working, each with its fix.
    pub problems: Vec<String>,
    /// What works but could be better (a slower backend, say).
    pub warnings: Vec<String>,
}

/// The VM status of the engine serving `paths`' socket, if one answers.
async fn serving_engine(paths: &Paths) -> Option<VmStatus> {
    let (code, body) =
        crate::api::client::request(&paths.docker_socket(), "GET", "/berth/v1/vm", None)
            .await
            .ok()?;
    (code == 200)
        .then(|| serde_json::from_value(body).ok())
        .flatten()
}

impl DoctorReport {
    /// `auto` chose the builtin VMM and it did not boot: a warning, and the backend check says
    /// what runs instead.
    fn note_fallback(&mut self, why: Option<&str>) {
        let Some(why) = why else { return };
        let text = format!("{why}; qemu with KVM runs the guest instead");
        self.warnings.push(format!("backend: {text}"));
        if let Some(check) = self.checks.iter_mut().find(|c| c.name == "backend") {
            check.warning = true;
            check.detail = format!("qemu (fallback: {text})");
        }
        self.backend_reason = Some(format!("auto fell back to qemu: {text}"));
    }

    fn check(&mut self, name: &str, result: Result<String, (String, String)>) -> bool {
        let (ok, detail, fix) = match result {
            Ok(detail) => (true, detail, None),
            Err((detail, fix)) => {
                self.problems.push(format!("{name}: {detail} (fix: {fix})"));
                (false, detail, Some(fix))
            }
        };
        self.checks.push(Check {
            name: name.to_owned(),
            ok,
            warning: false,
            detail,
            fix,
        });
        ok
    }
}

/// Runs every check; boots the VM only when `boot` and nothing before it failed.
pub async fn run(paths: &Paths, boot: bool) -> DoctorReport {
    run_beside(paths, boot, None).await
}

/// [`run`] from inside a process that runs this home's VM itself (the desktop app), whose
/// supervisor's status is `own`: that VM holds the home's lock, which is no problem.
pub async fn run_beside(paths: &Paths, boot: bool, own: Option<&VmStatus>) -> DoctorReport {
    let kvm = host::probe_kvm();
    let mut report = DoctorReport {
        healthy: false,
        backend: None,
        accel: None,
        backend_reason: None,
        boot_ms: None,
        phases: None,
        kernel: None,
        agent_version: None,
        engine_version: crate::VERSION.to_owned(),
        image_size_bytes: None,
        berth_home: paths.home.display().to_string(),
        kvm: kvm.clone(),
        checks: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    report.check(
        "berth home",
        paths
            .ensure()
            .map(|()| {
                format!(
                    "{} (runtime {})",
                    paths.home.display(),
                    paths.run_dir.display()
                )
            })
            .map_err(|e| {
                (
                    e.to_string(),
                    "set BERTH_HOME to a writable directory".to_owned(),
                )
            }),
    );
    let settings = Settings::load(&paths.settings());
    report.check(
        "settings",
        settings
            .as_ref()
            .map(|s| {
                format!(
                    "{} CPUs, {} MiB, {} GiB disk, backend {:?}",
                    s.cpus, s.memory_mib, s.disk_gib, s.backend
                )
            })
            .map_err(|e| {
                (
                    e.to_string(),
                    format!("correct or delete {}", paths.settings().display()),
                )
            }),
    );
    let kvm_detail = match (&kvm.error, kvm.hardware_virtualization) {
        (None, true) => format!(
            "{} usable, hardware virtualization present",
            kvm.device.display()
        ),
        (None, false) => format!(
            "{} usable, but the CPU has no vmx/svm",
            kvm.device.display()
        ),
        (Some(e), _) => e.clone(),
    };
    if let Some(fix) = kvm.fix() {
        report.warnings.push(format!("kvm: {kvm_detail} ({fix})"));
    }
    report.checks.push(Check {
        name: "kvm".into(),
        ok: kvm.can_boot_linux(),
        warning: !kvm.can_boot_linux(),
        detail: kvm_detail,
        fix: kvm.fix(),
    });
    if let Ok(settings) = &settings {
        match host::pick_backend(settings.backend, &kvm) {
            Ok(pick) => {
                report.backend = Some(pick.kind.to_string());
                report.accel = Some(format!("{:?}", pick.accel).to_lowercase());
                report.backend_reason = Some(pick.reason.clone());
                report.check("backend", Ok(format!("{} ({})", pick.kind, pick.reason)));
            }
            Err(e) => {
                report.check(
                    "backend",
                    Err((e.to_string(), "use \"backend\": \"auto\"".into())),
                );
            }
        }
    }
    for (name, found) in [
        ("qemu", host::qemu_program()),
        ("vhost-device-vsock", host::vhost_vsock_program()),
        ("passt", host::passt_program()),
        ("virtiofsd", host::virtiofsd_program()),
    ] {
        report.check(
            name,
            found
                .map(|p| p.display().to_string())
                .map_err(|e| (format!("{} not found ({})", e.program, e.searched), e.fix)),
        );
    }
    let image_dir = paths::guest_image_dir();
    let image = GuestImage::locate(&image_dir);
    if let Ok(image) = &image {
        report.image_size_bytes = Some(image.size());
    }
    report.check(
        "guest image",
        image
            .map(|i| format!("{} ({} KiB)", image_dir.display(), i.size() / 1024))
            .map_err(|e| {
                (
                    e.to_string(),
                    "run `make build`, or set BERTH_GUEST_DIR to the image's folder".to_owned(),
                )
            }),
    );
    // The status of the VM that holds this home's lock, when that is this process's own VM or
    // an engine that answers on the home's socket: a running Berth, not a problem.
    let mut running: Option<VmStatus> = None;
    if report.problems.is_empty() {
        let held = VmLock::held_elsewhere(paths);
        if let Some(pid) = &held {
            running = if *pid == std::process::id().to_string() {
                own.cloned()
            } else {
                serving_engine(paths).await
            };
        }
        report.check(
            "data disk",
            match (held, &running) {
                (None, _) => Ok(paths.data_disk().display().to_string()),
                (Some(pid), Some(status)) => Ok(format!(
                    "{} is in use by this home's running Berth (pid {pid}; its VM is {})",
                    paths.data_disk().display(),
                    status.state
                )),
                (Some(pid), None) => Err((
                    format!(
                        "{} is in use by another Berth VM (engine pid {pid})",
                        paths.data_disk().display()
                    ),
                    "stop it with `berth vm stop`, or use another BERTH_HOME".to_owned(),
                )),
            },
        );
    }
    if let Some(status) = &running {
        report.note_fallback(status.fallback.as_deref());
        if let Some(kind) = status.backend {
            report.backend = Some(kind.to_string());
        }
    }
    if !boot || !report.problems.is_empty() || running.is_some() {
        report.healthy = report.problems.is_empty()
            && running
                .as_ref()
                .is_some_and(|s| s.state == VmState::Running);
        return report;
    }

    let sup = Supervisor::new(paths.clone());
    match sup.start().await {
        Ok(boot) => {
            report.note_fallback(boot.fallback.as_deref());
            report.backend = Some(boot.backend.to_string());
            report.boot_ms = Some(boot.boot.agent_ready_ms);
            report.phases = Some(boot.boot.clone());
            report.kernel = Some(boot.kernel.clone());
            report.agent_version = Some(boot.agent_version.clone());
            report.check(
                "boot",
                Ok(format!(
                    "agent {} ready in {} ms on {} ({})",
                    boot.agent_version, boot.boot.agent_ready_ms, boot.kernel, boot.backend
                )),
            );
            if let Ok(agent) = sup.agent() {
                match agent.info().await {
                    Ok(info) => {
                        for p in &info.init_problems {
                            report.problems.push(format!("guest init: {p}"));
                        }
                        if info.data_disk.is_none() {
                            report
                                .problems
                                .push("guest: the data disk is not mounted".to_owned());
                        }
                    }
                    Err(e) => report.problems.push(format!("agent info: {e}")),
                }
            }
            let stopped = sup.stop().await;
            report.check(
                "shutdown",
                stopped
                    .map(|()| "the VM powered off cleanly".to_owned())
                    .map_err(|e| (e.to_string(), "see the serial log".to_owned())),
            );
        }
        Err(e) => {
            let tail = sup.status().log_tail.unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            report.check(
                "boot",
                Err((
                    format!("{e}\n{}", tail.join("\n")),
                    format!(
                        "see {} and {}",
                        paths.serial_log().display(),
                        paths.vmm_log().display()
                    ),
                )),
            );
        }
    }
    report.healthy = report.problems.is_empty();
    report
}
