//! `docker update`: a container's resource limits and restart policy, changed in its record
//! (the next start uses them) and, while it runs, in its cgroup at once.

use bollard_stubs::models::RestartPolicy;
use serde_json::Value;

use super::spec;
use super::{ContainerError, ContainerStore, lifecycle};

/// Where crun puts a container's cgroup (`/berth/<id>` under the unified hierarchy).
fn cgroup_dir(id: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/fs/cgroup/berth").join(id)
}

/// cgroup v1 shares as cgroup v2's weight, by crun's (and runc's) formula.
fn weight(shares: i64) -> i64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// Applies dockerd's update body to container `key`; answers its warnings (none).
pub fn update(
    store: &ContainerStore,
    key: &str,
    body: &Value,
) -> Result<Vec<String>, ContainerError> {
    let id = store.resolve(key)?;
    let mut rec = store.record(&id)?;
    let hc = &mut rec.host_config;
    if let Some(rp) = body.get("RestartPolicy").filter(|v| !v.is_null()) {
        let policy: RestartPolicy = serde_json::from_value(rp.clone())
            .map_err(|e| ContainerError::Invalid(format!("invalid restart policy: {e}")))?;
        let name = policy.name.map(|n| n.to_string()).unwrap_or_default();
        // The docker CLI always sends one; an empty name leaves the policy as it is.
        if !name.is_empty() {
            if hc.auto_remove == Some(true) && name != "no" {
                return Err(ContainerError::Invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
            hc.restart_policy = Some(policy);
        }
    }
    // As dockerd: zero (or absent) leaves a limit as it is.
    let num = |k: &str| body.get(k).and_then(Value::as_i64).filter(|v| *v != 0);
    for k in [
        "CpuQuota",
        "CpuPeriod",
        "CpusetCpus",
        "CpusetMems",
        "BlkioWeight",
    ] {
        if body
            .get(k)
            .is_some_and(|v| !(v.is_null() || v.as_i64() == Some(0) || v.as_str() == Some("")))
        {
            return Err(ContainerError::Invalid(format!(
                "{k} is not supported by Berth yet (--cpus and --cpu-shares are)"
            )));
        }
    }
    if let Some(v) = num("Memory") {
        hc.memory = Some(v);
    }
    if let Some(v) = num("MemorySwap") {
        hc.memory_swap = Some(v);
    }
    if let Some(v) = num("NanoCpus") {
        hc.nano_cpus = Some(v);
    }
    if let Some(v) = num("CpuShares") {
        hc.cpu_shares = Some(v);
    }
    let pids = body.get("PidsLimit").and_then(Value::as_i64);
    if let Some(v) = pids {
        // 0 and -1 both mean no limit.
        hc.pids_limit = Some(v.max(0));
    }
    let argv = vec![rec.path.clone()];
    let cfg = lifecycle::spec_config(&rec.config, &rec.host_config, &argv)?;
    let limits = spec::resources(&cfg).map_err(|e| ContainerError::Invalid(e.to_string()))?;
    if lifecycle::refresh(store, &id).status.is_live() {
        apply(&id, &limits, pids.is_some())?;
    }
    store.save_record(&rec)?;
    lifecycle::event(&rec, "update", &[]);
    Ok(Vec::new())
}

/// Writes `limits` (as a start would give them to crun) into the running container's cgroup.
fn apply(id: &str, limits: &spec::Resources, pids_given: bool) -> Result<(), ContainerError> {
    let dir = cgroup_dir(id);
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), &value)
            .map_err(|e| ContainerError::Failed(format!("setting {file} to {value} for {id}: {e}")))
    };
    if let Some(spec::Memory {
        limit: Some(limit),
        swap,
    }) = limits.memory
    {
        write("memory.max", limit.to_string())?;
        // OCI's swap is memory + swap; cgroup v2's memory.swap.max counts swap only.
        let swap = match swap {
            Some(-1) | None => "max".to_owned(),
            Some(total) => (total - limit).max(0).to_string(),
        };
        if dir.join("memory.swap.max").exists() {
            write("memory.swap.max", swap)?;
        }
    }
    if let Some(cpu) = &limits.cpu {
        if let (Some(quota), Some(period)) = (cpu.quota, cpu.period) {
            write("cpu.max", format!("{quota} {period}"))?;
        }
        if let Some(shares) = cpu.shares {
            write("cpu.weight", weight(shares as i64).to_string())?;
        }
    }
    if pids_given {
        let max = limits
            .pids
            .as_ref()
            .map_or("max".to_owned(), |p| p.limit.to_string());
        write("pids.max", max)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_weights_as_crun_converts_them() {
        assert_eq!(weight(2), 1);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(262_144), 10_000);
        assert_eq!(weight(1), 1);
    }
}
