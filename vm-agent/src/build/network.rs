//! A RUN step's network: a namespace of its own on the default bridge (or on the network the
//! build's `networkmode` names, or none), with `/etc/hosts` (and the build's `extrahosts`) and
//! `/etc/resolv.conf` written for it, as dockerd's classic builder gives each step a container
//! of its own. So a step cannot sniff the bridges, take the VM's addresses or rewrite the
//! VM's resolver (its `/etc` files are copies), and it leaves nothing behind. Only a build
//! asked to run with `--network host` shares the VM's namespace, as `docker run --net host`
//! does.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, EndpointSettings, HostConfig};

use crate::containers::ContainerRecord;

/// A step's attachment; taken off the bridge when dropped.
pub(super) struct StepNetwork {
    id: String,
    dir: PathBuf,
    /// The namespace's path (`None`: a new, empty one, when the VM has no networks).
    pub netns: Option<String>,
    /// `/etc` files bound over the step's: (target, source).
    pub etc_files: Vec<(String, String)>,
}

impl StepNetwork {
    /// Attaches step `id` (its hostname `hostname`) to the network `mode` names (`""` and
    /// `default` are the default bridge; `none` and `host` as for containers), with `extra_hosts`
    /// (`name:address`) in its `/etc/hosts`; its files go in `dir`.
    pub fn attach(
        id: &str,
        hostname: &str,
        dir: &Path,
        mode: &str,
        extra_hosts: &[String],
    ) -> Result<StepNetwork, String> {
        let mode = match mode {
            "" | "default" => "bridge",
            m if m.starts_with("container:") => {
                return Err(format!("network mode {m} is not supported for builds"));
            }
            m => m,
        };
        let Some(nets) = crate::net::get() else {
            return Ok(StepNetwork {
                id: id.to_owned(),
                dir: dir.to_owned(),
                netns: None,
                etc_files: Vec::new(),
            });
        };
        let rec = ContainerRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            created: String::new(),
            image_id: String::new(),
            image: String::new(),
            config: ContainerConfig {
                hostname: Some(hostname.to_owned()),
                ..Default::default()
            },
            host_config: HostConfig {
                network_mode: Some(mode.to_owned()),
                extra_hosts: Some(extra_hosts.to_vec()),
                ..Default::default()
            },
            path: String::new(),
            args: Vec::new(),
            layers: Vec::new(),
            networks: match mode {
                "none" | "host" => Default::default(),
                m => [(m.to_owned(), EndpointSettings::default())]
                    .into_iter()
                    .collect(),
            },
            mounts: Vec::new(),
        };
        let plan = nets
            .attach(&rec, dir)
            .map_err(|e| format!("attaching the build step to network {mode}: {e}"))?;
        Ok(StepNetwork {
            id: id.to_owned(),
            dir: dir.to_owned(),
            // The VM's own namespace is `Some("")` to the spec.
            netns: if mode == "host" {
                Some(String::new())
            } else {
                plan.netns
            },
            etc_files: plan.etc_files,
        })
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        if let Some(nets) = crate::net::get() {
            nets.detach(&self.id, &self.dir);
        }
    }
}
