//! Containers: their records and state on the data disk ([`ContainerStore`]), the OCI spec
//! with Docker's security defaults ([`spec`]), the per-container shim that owns a running
//! container ([`shim`]), the lifecycle verbs ([`lifecycle`]), json-file logs ([`logs`]), exec
//! ([`exec`]), stats ([`stats`]), mounts and volumes ([`volumes`]) and Docker's views ([`docker`]). The agent keeps no container state in memory
//! that is not also on disk: a restarted agent finds its containers again.

pub mod archive;
pub mod binds;
pub mod changes;
pub mod docker;
pub mod exec;
pub mod health;
pub mod lifecycle;
pub mod links;
pub mod logs;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod terminal;
pub mod top;
pub mod update;
pub mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

use crate::images::store::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotModified(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Docker's create body: the container config with HostConfig beside it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(
        rename = "HostConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_config: Option<HostConfig>,
    #[serde(
        rename = "NetworkingConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub networking_config: Option<bollard_stubs::models::NetworkingConfig>,
}

/// What `docker create` fixed; written once (and on rename).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub image_id: String,
    /// The image as the user named it.
    pub image: String,
    /// The merged config (image defaults under the create body).
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// Resolved command line: entrypoint + cmd.
    pub path: String,
    pub args: Vec<String>,
    /// Diff IDs of the image's layers, bottom first.
    pub layers: Vec<String>,
    /// The networks it joins at start (by name), with its aliases and asked-for address on each.
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, bollard_stubs::models::EndpointSettings>,
    /// Its volumes, binds and tmpfs mounts, volumes named at create.
    #[serde(default)]
    pub mounts: Vec<volumes::MountPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Exited,
}

impl Status {
    /// A container process exists (running, or frozen by pause).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// Where the container is in its life; the shim and the agent write it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: u32,
    pub shim_pid: u32,
    pub exit_code: i64,
    pub oom_killed: bool,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Bumped at every exit, for `wait?condition=next-exit`.
    pub exits: u64,
    pub restart_count: u64,
    /// Stopped by the user (stop/kill): `unless-stopped` and `always` do not restart it.
    pub stopped_by_user: bool,
}

pub struct ContainerStore {
    root: PathBuf,
    /// Exit codes of containers removed since the agent started, for `wait?condition=removed`
    /// callers that look after the removal.
    removed: std::sync::Mutex<HashMap<String, i64>>,
    /// One lock per container, held by `remove` and by the restart monitor's restart, so a
    /// removal never meets a restart half-way (dockerd's container lock).
    ops: std::sync::Mutex<HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != bytes as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fervent", "gallant", "happy", "jolly", "keen", "loving", "modest",
    "nifty", "quirky", "serene", "tender", "vibrant", "witty", "zealous", "bold", "crisp",
    "dreamy",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "euler", "feynman", "galileo", "hopper", "kepler", "lovelace",
    "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "tesla", "turing", "wozniak",
];

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl ContainerStore {
    pub fn open(root: &Path) -> Result<Self, ContainerError> {
        let root = root.join("containers");
        std::fs::create_dir_all(&root).map_err(io("creating the container store"))?;
        Ok(ContainerStore {
            root,
            removed: Default::default(),
            ops: Default::default(),
        })
    }

    /// The lock that orders a removal and a restart of container `id`.
    pub fn op_lock(&self, id: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        self.ops
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("config.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn record(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let data = std::fs::read(self.dir(id).join("config.json"))
            .map_err(|_| ContainerError::NotFound(id.to_owned()))?;
        serde_json::from_slice(&data)
            .map_err(|e| ContainerError::Failed(format!("container {id} config: {e}")))
    }

    pub fn save_record(&self, rec: &ContainerRecord) -> Result<(), ContainerError> {
        let data = serde_json::to_vec_pretty(rec).expect("record serializes");
        write_atomic(&self.dir(&rec.id).join("config.json"), &data)
            .map_err(io("writing a container config"))
    }

    pub fn state(&self, id: &str) -> State {
        std::fs::read(self.dir(id).join("state.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    pub fn save_state(&self, id: &str, state: &State) -> Result<(), ContainerError> {
        save_state_at(&self.dir(id), state)
    }

    /// Finds a container by full ID, unique ID prefix, or name (with or without `/`).
    pub fn resolve(&self, key: &str) -> Result<String, ContainerError> {
        let key = key.trim_start_matches('/');
        let ids = self.ids();
        if ids.iter().any(|i| i == key) {
            return Ok(key.to_owned());
        }
        if let Some(id) = ids
            .iter()
            .find(|i| self.record(i).is_ok_and(|r| r.name == key))
        {
            return Ok(id.clone());
        }
        let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(key)).collect();
        match matches.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(ContainerError::NotFound(key.to_owned())),
            _ => Err(ContainerError::Invalid(format!(
                "multiple IDs found with provided prefix: {key}"
            ))),
        }
    }

    /// A new ID and a unique name (the one given, or a random one).
    pub fn allocate(&self, name: &str) -> Result<(String, String), ContainerError> {
        let names: HashMap<String, String> = self
            .ids()
            .into_iter()
            .filter_map(|id| self.record(&id).ok().map(|r| (r.name, id)))
            .collect();
        let name = name.trim_start_matches('/');
        let name = if name.is_empty() {
            loop {
                let r = random_hex(2);
                let n = u16::from_str_radix(&r, 16).unwrap_or(0) as usize;
                let candidate = format!(
                    "{}_{}",
                    ADJECTIVES[n % ADJECTIVES.len()],
                    NAMES[(n / ADJECTIVES.len()) % NAMES.len()]
                );
                if !names.contains_key(&candidate) {
                    break candidate;
                }
                if names.len() > ADJECTIVES.len() * NAMES.len() / 2 {
                    break format!("{candidate}_{}", random_hex(2));
                }
            }
        } else {
            if !valid_name(name) {
                return Err(ContainerError::Invalid(format!(
                    "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            if let Some(other) = names.get(name) {
                return Err(ContainerError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            name.to_owned()
        };
        let id = random_hex(32);
        std::fs::create_dir_all(self.dir(&id)).map_err(io("creating a container directory"))?;
        Ok((id, name))
    }

    /// Gives container `key` the name `name`, under the same rules as at create.
    pub fn rename(&self, key: &str, name: &str) -> Result<(), ContainerError> {
        let id = self.resolve(key)?;
        let name = name.trim_start_matches('/');
        if !valid_name(name) {
            return Err(ContainerError::Invalid(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        for other in self.ids() {
            if other != id && self.record(&other).is_ok_and(|r| r.name == name) {
                return Err(ContainerError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
        }
        let mut rec = self.record(&id)?;
        rec.name = name.to_owned();
        self.save_record(&rec)
    }

    /// Deletes the container's directory (its rootfs must be unmounted).
    pub fn delete(&self, id: &str) -> Result<(), ContainerError> {
        let code = self.state(id).exit_code;
        self.removed.lock().unwrap().insert(id.to_owned(), code);
        self.ops.lock().unwrap().remove(id);
        std::fs::remove_dir_all(self.dir(id)).map_err(io(format!("removing container {id}")))
    }

    /// The exit code a removed container last had.
    pub fn removed_exit_code(&self, id: &str) -> Option<i64> {
        self.removed.lock().unwrap().get(id).copied()
    }
}

pub fn save_state_at(dir: &Path, state: &State) -> Result<(), ContainerError> {
    let data = serde_json::to_vec_pretty(state).expect("state serializes");
    write_atomic(&dir.join("state.json"), &data).map_err(io("writing a container state"))
}

/// A bare record for unit tests.
#[cfg(test)]
pub(crate) fn test_record(id: &str, name: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        name: name.into(),
        created: String::new(),
        image_id: String::new(),
        image: String::new(),
        config: ContainerConfig::default(),
        host_config: HostConfig::default(),
        path: "sh".into(),
        args: vec![],
        layers: vec![],
        networks: Default::default(),
        mounts: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        test_record(id, name)
    }

    #[test]
    fn names_are_unique_and_resolve_like_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let (id, name) = store.allocate("web").unwrap();
        assert_eq!((id.len(), name.as_str()), (64, "web"));
        store.save_record(&record(&id, "web")).unwrap();
        let err = store.allocate("web").unwrap_err();
        assert!(matches!(err, ContainerError::Conflict(m) if m.contains("already in use")));
        assert!(store.allocate("bad name").is_err());
        let (id2, random) = store.allocate("").unwrap();
        assert!(random.contains('_'));
        store.save_record(&record(&id2, &random)).unwrap();
        assert_eq!(store.resolve("web").unwrap(), id);
        assert_eq!(store.resolve("/web").unwrap(), id);
        assert_eq!(store.resolve(&id[..12]).unwrap(), id);
        assert!(matches!(
            store.resolve("nope"),
            Err(ContainerError::NotFound(_))
        ));
    }
}
