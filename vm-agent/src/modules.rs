//! Kernel module loading for init: resolves a module's dependencies from `modules.dep` (written
//! by `depmod` when the guest image is built) and loads each with `finit_module`. Owns nothing
//! but the order of loading.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The modules init loads; their dependencies (virtio, virtio_ring, vsock, the vsock transport
/// common code, failover, net_failover, fuse, llc, stp, nf_tables, nf_nat, nf_conntrack, ...)
/// come from `modules.dep`.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_mmio",
    "vmw_vsock_virtio_transport",
    "virtio_blk",
    "virtio_net",
    "overlay",
    "virtiofs",
    // Container networks: bridges, veth pairs, and nftables with NAT and conntrack.
    "bridge",
    "veth",
    "nft_chain_nat",
    "nft_masq",
    "nft_ct",
    "nft_reject_inet",
];

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    #[error("loading {path}: {source}")]
    Load {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `modules.dep` parsed: module name -> (relative path, dependency paths in load order).
#[derive(Debug, Default)]
pub struct DepTable {
    by_name: HashMap<String, (String, Vec<String>)>,
}

/// Module names treat `-` and `_` alike; the table keys use `_`.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl DepTable {
    pub fn parse(text: &str) -> Self {
        let mut by_name = HashMap::new();
        for line in text.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let module = module.trim();
            if module.is_empty() {
                continue;
            }
            // depmod lists dependencies so that the last one must be loaded first.
            let deps: Vec<String> = deps.split_whitespace().rev().map(str::to_owned).collect();
            by_name.insert(module_name(module), (module.to_owned(), deps));
        }
        DepTable { by_name }
    }

    /// Paths to load, dependencies first, each once, for all of `wanted`.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in wanted {
            self.visit(&name.replace('-', "_"), &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if !seen.insert(name.to_owned()) {
            return Ok(());
        }
        let (path, deps) = self
            .by_name
            .get(name)
            .ok_or_else(|| ModuleError::Unknown(name.to_owned()))?;
        for dep in deps {
            self.visit(&module_name(dep), seen, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
}

/// Loads `wanted` and their dependencies from `dir` (`/lib/modules/$(uname -r)`).
/// Returns the number of modules loaded by this call (already-loaded ones are skipped).
pub fn load_all(dir: &Path, wanted: &[&str]) -> Result<usize, ModuleError> {
    let dep_path = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(|source| ModuleError::Read {
        path: dep_path.clone(),
        source,
    })?;
    let table = DepTable::parse(&text);
    let mut loaded = 0;
    for rel in table.load_order(wanted)? {
        let path = dir.join(&rel);
        if load_one(&path)? {
            loaded += 1;
        }
    }
    Ok(loaded)
}

fn load_one(path: &Path) -> Result<bool, ModuleError> {
    let file = File::open(path).map_err(|source| ModuleError::Load {
        path: path.to_owned(),
        source,
    })?;
    let params = CString::default();
    // SAFETY: finit_module reads the open fd and a valid NUL-terminated parameter string; both
    // outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(false);
    }
    Err(ModuleError::Load {
        path: path.to_owned(),
        source: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vsock.ko:
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/fs/fuse/fuse.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
";

    #[test]
    fn dependencies_come_first_and_once() {
        let table = DepTable::parse(DEP);
        let order = table
            .load_order(&["virtio_mmio", "vmw_vsock_virtio_transport", "virtiofs"])
            .unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "vsock",
                "vmw_vsock_virtio_transport_common",
                "vmw_vsock_virtio_transport",
                "fuse",
                "virtiofs"
            ]
        );
    }

    #[test]
    fn unknown_module_is_an_error() {
        let table = DepTable::parse(DEP);
        let err = table.load_order(&["virtio_blk"]).unwrap_err();
        assert!(matches!(err, ModuleError::Unknown(name) if name == "virtio_blk"));
    }

    #[test]
    fn dashes_and_compressed_names() {
        assert_eq!(module_name("kernel/a/snd-hda.ko.xz"), "snd_hda");
    }
}
