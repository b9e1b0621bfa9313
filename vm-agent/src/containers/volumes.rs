//! A container's mounts: `-v` (`HostConfig.Binds`), `--mount` (`HostConfig.Mounts`) and the
//! anonymous volumes of `Config.Volumes` (the image's `VOLUME` among them), parsed at create
//! as dockerd parses them, kept in the container's record, and made ready at start: volumes
//! created or mounted, a new volume filled from the image path it covers, host paths found
//! under the virtio-fs shares.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{
    ContainerConfig, HostConfig, MountBindOptionsPropagationEnum, MountPointTypeEnum, MountTypeEnum,
};
use serde::{Deserialize, Serialize};

use super::{ContainerError, ContainerRecord, ContainerStore};
use crate::volumes::{ANONYMOUS_LABEL, VolumeStore};

/// Where the guest mounts the host's shared directories: host path `/p` is `/mnt/host/p`.
pub const HOST_SHARE_ROOT: &str = "/mnt/host";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    Volume,
    Tmpfs,
}

/// One mount of a container, as its record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    pub kind: Kind,
    /// The volume's name; empty for a bind or a tmpfs, and for an anonymous volume until
    /// create names it.
    #[serde(default)]
    pub name: String,
    /// A bind's host path.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    /// `-v`'s mode string as given (`ro`, `z`, ...), shown by inspect.
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    /// A bind's propagation (`rprivate` unless asked).
    #[serde(default)]
    pub propagation: String,
    /// Do not fill a new volume from the image.
    #[serde(default)]
    pub no_copy: bool,
    /// A tmpfs's options (`size=...,mode=...`).
    #[serde(default)]
    pub tmpfs_options: String,
    /// Labels and driver options for a volume `--mount` creates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub driver_options: BTreeMap<String, String>,
    /// A volume's `Subpath` (API 1.45): the directory inside it that is mounted, relative.
    #[serde(default)]
    pub subpath: String,
}

/// A volume's `Subpath` as given, cleaned: relative and staying inside the volume (dockerd's
/// checks), resolved again inside the volume at every start.
fn subpath(sub: &str) -> Result<String, String> {
    if sub.starts_with('/') {
        return Err(format!(
            "subpath must be a relative path within the volume: {sub}"
        ));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(format!(
            "subpath must be a relative path within the volume: {sub}"
        ));
    }
    Ok(crate::copy::clean_rel(sub))
}

fn invalid(msg: impl Into<String>) -> ContainerError {
    ContainerError::Invalid(msg.into())
}

fn check_destination(spec: &str, dest: &str) -> Result<String, ContainerError> {
    if !dest.starts_with('/') {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"volume\": invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    let clean = super::spec::clean_path(dest);
    if clean == "/" {
        return Err(invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        )));
    }
    Ok(clean)
}

const PROPAGATIONS: &[&str] = &[
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Parses one `-v` value: `name:/dst[:mode]`, `/host:/dst[:mode]` or `/dst`.
pub fn parse_bind(spec: &str) -> Result<MountPoint, ContainerError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad_spec = |why: &str| invalid(format!("invalid spec: {spec}: {why}"));
    let (source, dest, mode) = match parts.as_slice() {
        [dest] => ("", *dest, ""),
        [src, dest] => (*src, *dest, ""),
        [src, dest, mode] => (*src, *dest, *mode),
        _ => return Err(bad_spec("too many colons")),
    };
    if dest.is_empty() {
        return Err(bad_spec("empty section between colons"));
    }
    let destination = check_destination(spec, dest)?;
    let kind = if source.starts_with('/') {
        Kind::Bind
    } else {
        Kind::Volume
    };
    if kind == Kind::Volume && !source.is_empty() && !crate::volumes::valid_name(source) {
        return Err(invalid(format!(
            "create {source}: \"{source}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    let mut rw = true;
    let mut seen_rw = false;
    let mut propagation = String::new();
    let mut no_copy = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" | "rw" if !seen_rw => {
                seen_rw = true;
                rw = m == "rw";
            }
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "nocopy" if kind == Kind::Volume && !no_copy => no_copy = true,
            p if PROPAGATIONS.contains(&p) && kind == Kind::Bind && propagation.is_empty() => {
                propagation = p.to_owned();
            }
            _ => return Err(invalid(format!("invalid mode: {mode}"))),
        }
    }
    Ok(MountPoint {
        kind,
        name: if kind == Kind::Volume {
            source.to_owned()
        } else {
            String::new()
        },
        source: if kind == Kind::Bind {
            super::spec::clean_path(source)
        } else {
            String::new()
        },
        destination,
        mode: if kind == Kind::Volume && mode.is_empty() {
            "z".into()
        } else {
            mode.to_owned()
        },
        rw,
        propagation: if kind == Kind::Bind && propagation.is_empty() {
            "rprivate".into()
        } else {
            propagation
        },
        no_copy,
        tmpfs_options: String::new(),
        labels: BTreeMap::new(),
        driver_options: BTreeMap::new(),
        subpath: String::new(),
    })
}

/// Parses one `--mount` entry.
pub fn parse_mount(m: &bollard_stubs::models::Mount) -> Result<MountPoint, ContainerError> {
    let target = m.target.clone().unwrap_or_default();
    let source = m.source.clone().unwrap_or_default();
    let kind = match m.typ {
        Some(MountTypeEnum::BIND) => Kind::Bind,
        Some(MountTypeEnum::VOLUME) => Kind::Volume,
        Some(MountTypeEnum::TMPFS) => Kind::Tmpfs,
        Some(ref t) => {
            return Err(invalid(format!(
                "mount type {t:?} is not supported on Linux containers"
            )));
        }
        None => return Err(invalid("invalid mount config: mount type unknown")),
    };
    let type_name = match kind {
        Kind::Bind => "bind",
        Kind::Volume => "volume",
        Kind::Tmpfs => "tmpfs",
    };
    let bad = |why: String| {
        invalid(format!(
            "invalid mount config for type \"{type_name}\": {why}"
        ))
    };
    if target.is_empty() {
        return Err(bad("field Target must not be empty".into()));
    }
    if !target.starts_with('/') {
        return Err(bad(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    let destination = super::spec::clean_path(&target);
    if destination == "/" {
        return Err(bad("invalid specification: destination can't be '/'".into()));
    }
    if kind != Kind::Bind && m.bind_options.is_some() {
        return Err(bad("field BindOptions must not be specified".into()));
    }
    if kind != Kind::Volume && m.volume_options.is_some() {
        return Err(bad("field VolumeOptions must not be specified".into()));
    }
    if kind != Kind::Tmpfs && m.tmpfs_options.is_some() {
        return Err(bad("field TmpfsOptions must not be specified".into()));
    }
    let rw = !m.read_only.unwrap_or(false);
    let mut mp = MountPoint {
        kind,
        name: String::new(),
        source: String::new(),
        destination,
        mode: String::new(),
        rw,
        propagation: String::new(),
        no_copy: false,
        tmpfs_options: String::new(),
        labels: BTreeMap::new(),
        driver_options: BTreeMap::new(),
        subpath: String::new(),
    };
    match kind {
        Kind::Bind => {
            if source.is_empty() {
                return Err(bad("field Source must not be empty".into()));
            }
            if !source.starts_with('/') {
                return Err(bad(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            mp.source = super::spec::clean_path(&source);
            mp.propagation = match m.bind_options.as_ref().and_then(|b| b.propagation) {
                None | Some(MountBindOptionsPropagationEnum::EMPTY) => "rprivate".into(),
                Some(p) => p.to_string(),
            };
        }
        Kind::Volume => {
            if !source.is_empty() && !crate::volumes::valid_name(&source) {
                return Err(bad(format!(
                    "invalid volume name {source:?}: only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )));
            }
            mp.name = source;
            if let Some(vo) = &m.volume_options {
                mp.no_copy = vo.no_copy.unwrap_or(false);
                if let Some(sub) = vo.subpath.as_deref().filter(|s| !s.is_empty()) {
                    mp.subpath = subpath(sub).map_err(bad)?;
                }
                mp.labels = vo.labels.clone().unwrap_or_default().into_iter().collect();
                if let Some(dc) = &vo.driver_config {
                    if !matches!(dc.name.as_deref(), None | Some("" | "local")) {
                        return Err(bad(format!(
                            "volume driver {:?} is not available",
                            dc.name.clone().unwrap_or_default()
                        )));
                    }
                    mp.driver_options =
                        dc.options.clone().unwrap_or_default().into_iter().collect();
                    crate::volumes::check_options(&mp.driver_options)
                        .map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        Kind::Tmpfs => {
            if !source.is_empty() {
                return Err(bad("field Source must not be specified".into()));
            }
            let mut opts = Vec::new();
            if !rw {
                opts.push("ro".to_owned());
            }
            if let Some(t) = &m.tmpfs_options {
                match t.size_bytes {
                    Some(n) if n < 0 => return Err(bad(format!("invalid tmpfs size {n}"))),
                    Some(n) if n > 0 => opts.push(format!("size={n}")),
                    _ => {}
                }
                if let Some(mode) = t.mode.filter(|m| *m != 0) {
                    if !(0..=0o7777).contains(&mode) {
                        return Err(bad(format!("invalid tmpfs mode {mode:o}")));
                    }
                    opts.push(format!("mode={mode:o}"));
                }
            }
            mp.tmpfs_options = opts.join(",");
        }
    }
    Ok(mp)
}

/// Every mount a create body asks for, in dockerd's precedence: `Binds`, then `Mounts`, then
/// an anonymous volume for each `Config.Volumes` path nothing else covers. Touches nothing.
pub fn parse_all(
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<MountPoint>, ContainerError> {
    let mut mounts: Vec<MountPoint> = Vec::new();
    let add = |m: MountPoint, mounts: &mut Vec<MountPoint>| {
        if mounts.iter().any(|o| o.destination == m.destination) {
            return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
        }
        mounts.push(m);
        Ok(())
    };
    for b in hc.binds.iter().flatten() {
        add(parse_bind(b)?, &mut mounts)?;
    }
    for m in hc.mounts.iter().flatten() {
        add(parse_mount(m)?, &mut mounts)?;
    }
    let tmpfs: Vec<String> = hc
        .tmpfs
        .iter()
        .flatten()
        .map(|(p, _)| super::spec::clean_path(p))
        .collect();
    if let Some(m) = mounts.iter().find(|m| tmpfs.contains(&m.destination)) {
        return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
    }
    for path in config.volumes.iter().flat_map(|v| v.keys()) {
        let m = parse_bind(path)?;
        if !mounts.iter().any(|o| o.destination == m.destination) && !tmpfs.contains(&m.destination)
        {
            mounts.push(m);
        }
    }
    Ok(mounts)
}

/// Creates the volumes the mounts name (and names the anonymous ones) at create.
pub fn create_volumes(
    volumes: &VolumeStore,
    mounts: &mut [MountPoint],
) -> Result<(), ContainerError> {
    for m in mounts.iter_mut().filter(|m| m.kind == Kind::Volume) {
        let mut labels = m.labels.clone();
        if m.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let meta = volumes
            .create(&m.name, "local", labels, m.driver_options.clone())
            .map_err(volume_error)?;
        m.name = meta.name;
    }
    Ok(())
}

pub fn volume_error(e: crate::volumes::VolumeError) -> ContainerError {
    use crate::volumes::VolumeError as V;
    match e {
        V::NotFound(_) => ContainerError::Failed(e.to_string()),
        V::Conflict(m) => ContainerError::Conflict(m),
        V::Invalid(m) => ContainerError::Invalid(m),
        V::Failed(m) => ContainerError::Failed(m),
    }
}

/// What the spec gets for each mount at start.
pub enum Prepared {
    /// (source in the guest, destination, read-only, propagation)
    Bind(String, String, bool, String),
    /// (destination, tmpfs options)
    Tmpfs(String, String),
}

/// `path` inside `rootfs`, unless a component on the way is a symlink (which could lead out
/// of the container's root).
fn inside(rootfs: &Path, path: &str) -> Option<PathBuf> {
    let mut p = rootfs.to_path_buf();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        if std::fs::symlink_metadata(&p).ok()?.file_type().is_symlink() {
            return None;
        }
    }
    Some(p)
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Gets each mount ready for the container whose root is mounted at `rootfs`.
pub fn prepare(
    id: &str,
    volumes: &VolumeStore,
    mounts: &[MountPoint],
    rootfs: &Path,
) -> Result<Vec<Prepared>, ContainerError> {
    super::binds::unstage(id);
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        match m.kind {
            Kind::Volume if !m.subpath.is_empty() => {
                // Only the directory inside the volume, found inside it whatever links the
                // volume holds, and mounted by what was found.
                let data = volumes.prepare(&m.name).map_err(volume_error)?;
                let staged = crate::copy::Root::open(&data)
                    .and_then(|root| root.open_dir(&m.subpath))
                    .map_err(|e| {
                        ContainerError::Invalid(format!(
                            "cannot access path {}/{}: {e}",
                            m.name, m.subpath
                        ))
                    })
                    .and_then(|fd| {
                        super::binds::stage(id, out.len(), &fd).map_err(|e| {
                            ContainerError::Failed(format!("mounting {}: {e}", m.subpath))
                        })
                    })?;
                out.push(Prepared::Bind(
                    staged.display().to_string(),
                    m.destination.clone(),
                    !m.rw,
                    "rprivate".into(),
                ));
            }
            Kind::Volume => {
                let data = volumes.prepare(&m.name).map_err(volume_error)?;
                if !m.no_copy
                    && is_empty_dir(&data)
                    && let Some(src) = inside(rootfs, &m.destination)
                    && src.is_dir()
                    && !is_empty_dir(&src)
                {
                    let root = crate::copy::Root::open(&data);
                    root.and_then(|root| crate::copy::copy_entry(&src, &root, "", None))
                        .map_err(|e| {
                            ContainerError::Failed(format!(
                                "copying {} into volume {}: {e}",
                                m.destination, m.name
                            ))
                        })?;
                }
                out.push(Prepared::Bind(
                    data.display().to_string(),
                    m.destination.clone(),
                    !m.rw,
                    "rprivate".into(),
                ));
            }
            Kind::Bind => {
                // Resolved again at every start, and mounted by what was resolved.
                let staged = super::binds::open_source(&m.source)
                    .map_err(|e| {
                        ContainerError::Invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist or is not shared with the Berth VM: {}: {e}",
                            m.source
                        ))
                    })
                    .and_then(|fd| {
                        super::binds::stage(id, out.len(), &fd).map_err(|e| {
                            ContainerError::Failed(format!("mounting {}: {e}", m.source))
                        })
                    })?;
                out.push(Prepared::Bind(
                    staged.display().to_string(),
                    m.destination.clone(),
                    !m.rw,
                    m.propagation.clone(),
                ));
            }
            Kind::Tmpfs => out.push(Prepared::Tmpfs(
                m.destination.clone(),
                m.tmpfs_options.clone(),
            )),
        }
    }
    Ok(out)
}

/// The archive helper's `--bind SRC DST ro|rw` arguments for `mounts`' volumes and binds,
/// parents first (a tmpfs lives only in the running container and is left out, as dockerd
/// leaves it).
pub fn archive_binds(mounts: &[MountPoint]) -> Vec<String> {
    let mut sorted: Vec<&MountPoint> = mounts.iter().collect();
    sorted.sort_by_key(|m| m.destination.matches('/').count());
    let mut out = Vec::new();
    for m in sorted {
        let source = match m.kind {
            Kind::Volume => match crate::volumes::get().map(|v| v.prepare(&m.name)) {
                Some(Ok(data)) => data,
                _ => continue,
            },
            Kind::Bind => PathBuf::from(format!("{HOST_SHARE_ROOT}{}", m.source)),
            Kind::Tmpfs => continue,
        };
        if source.exists() {
            out.push("--bind".to_owned());
            out.push(source.display().to_string());
            out.push(m.destination.clone());
            out.push(if m.rw { "rw" } else { "ro" }.to_owned());
        }
    }
    out
}

/// The containers (IDs) whose mounts name volume `name`.
pub fn users(store: &ContainerStore, name: &str) -> Vec<String> {
    store
        .ids()
        .into_iter()
        .filter(|id| {
            store.record(id).is_ok_and(|r| {
                r.mounts
                    .iter()
                    .any(|m| m.kind == Kind::Volume && m.name == name)
            })
        })
        .collect()
}

/// How many containers use each volume.
pub fn ref_counts(store: &ContainerStore) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in store.ids() {
        if let Ok(rec) = store.record(&id) {
            for m in rec.mounts.iter().filter(|m| m.kind == Kind::Volume) {
                *counts.entry(m.name.clone()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Removes a removed container's anonymous volumes that nothing else uses.
pub fn remove_anonymous(volumes: &VolumeStore, store: &ContainerStore, rec: &ContainerRecord) {
    for m in rec.mounts.iter().filter(|m| m.kind == Kind::Volume) {
        if volumes.get(&m.name).is_ok_and(|v| v.anonymous())
            && let Err(e) = volumes.remove(&m.name, &users(store, &m.name))
        {
            tracing::warn!(volume = m.name, "keeping an anonymous volume: {e}");
        }
    }
}

/// dockerd's `Mounts` entries for inspect and ps.
pub fn docker_mounts(
    volumes: Option<&VolumeStore>,
    rec: &ContainerRecord,
) -> Vec<bollard_stubs::models::MountPoint> {
    rec.mounts
        .iter()
        .map(|m| bollard_stubs::models::MountPoint {
            typ: Some(match m.kind {
                Kind::Bind => MountPointTypeEnum::BIND,
                Kind::Volume => MountPointTypeEnum::VOLUME,
                Kind::Tmpfs => MountPointTypeEnum::TMPFS,
            }),
            name: (m.kind == Kind::Volume).then(|| m.name.clone()),
            source: Some(match m.kind {
                Kind::Bind => m.source.clone(),
                Kind::Volume => volumes
                    .map(|v| v.mountpoint(&m.name).display().to_string())
                    .unwrap_or_default(),
                Kind::Tmpfs => String::new(),
            }),
            destination: Some(m.destination.clone()),
            driver: (m.kind == Kind::Volume).then(|| "local".into()),
            mode: Some(m.mode.clone()),
            rw: Some(m.rw),
            propagation: Some(m.propagation.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_v_parses_as_dockerd_does() {
        let m = parse_bind("data:/srv/data").unwrap();
        assert_eq!(
            (
                m.kind,
                m.name.as_str(),
                m.destination.as_str(),
                m.mode.as_str(),
                m.rw
            ),
            (Kind::Volume, "data", "/srv/data", "z", true)
        );
        let m = parse_bind("/home/u/src:/app:ro,rshared").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.rw, m.propagation.as_str()),
            (Kind::Bind, "/home/u/src", false, "rshared")
        );
        let m = parse_bind("/cache").unwrap();
        assert_eq!((m.kind, m.name.as_str()), (Kind::Volume, ""));
        assert!(parse_bind("data:/x:nocopy").unwrap().no_copy);

        let err = |s: &str| parse_bind(s).unwrap_err().to_string();
        assert!(err("data:rel").contains("mount path must be absolute"));
        assert!(err("data:/").contains("destination can't be '/'"));
        assert_eq!(err("data:/x:bogus"), "invalid mode: bogus");
        assert_eq!(err("data:/x:ro,rw"), "invalid mode: ro,rw");
        assert_eq!(err("/h:/x:nocopy"), "invalid mode: nocopy");
        assert!(err("a:b:c:d").contains("too many colons"));
        assert!(err("bad/name:/x").contains("invalid characters"));
    }

    #[test]
    fn dash_dash_mount_parses_each_type() {
        use bollard_stubs::models::{Mount, MountTmpfsOptions, MountVolumeOptions};
        let tmpfs = Mount {
            typ: Some(MountTypeEnum::TMPFS),
            target: Some("/scratch".into()),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: Some(1 << 20),
                mode: Some(0o700),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = parse_mount(&tmpfs).unwrap();
        assert_eq!(m.tmpfs_options, "size=1048576,mode=700");
        let vol = Mount {
            typ: Some(MountTypeEnum::VOLUME),
            target: Some("/v".into()),
            source: Some("named".into()),
            read_only: Some(true),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                labels: Some([("k".to_owned(), "v".to_owned())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = parse_mount(&vol).unwrap();
        assert_eq!((m.name.as_str(), m.rw, m.no_copy), ("named", false, true));
        assert_eq!(m.labels["k"], "v");
        let bind_no_source = Mount {
            typ: Some(MountTypeEnum::BIND),
            target: Some("/b".into()),
            ..Default::default()
        };
        assert!(
            parse_mount(&bind_no_source)
                .unwrap_err()
                .to_string()
                .contains("Source must not be empty")
        );
        let tmpfs_with_source = Mount {
            source: Some("x".into()),
            ..tmpfs
        };
        assert!(parse_mount(&tmpfs_with_source).is_err());
    }

    #[test]
    fn image_volumes_become_anonymous_unless_covered() {
        let config = ContainerConfig {
            volumes: Some(
                [
                    ("/data".to_owned(), Default::default()),
                    ("/logs".to_owned(), Default::default()),
                ]
                .into(),
            ),
            ..Default::default()
        };
        let hc = HostConfig {
            binds: Some(vec!["named:/data".into()]),
            ..Default::default()
        };
        let mounts = parse_all(&config, &hc).unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].name, "named");
        assert_eq!(
            (mounts[1].destination.as_str(), mounts[1].name.as_str()),
            ("/logs", "")
        );
        let dup = HostConfig {
            binds: Some(vec!["a1:/x".into(), "b1:/x/".into()]),
            ..Default::default()
        };
        assert_eq!(
            parse_all(&ContainerConfig::default(), &dup)
                .unwrap_err()
                .to_string(),
            "Duplicate mount point: /x"
        );
    }

    #[test]
    fn a_new_volume_is_filled_from_the_image_once() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = VolumeStore::open(dir.path()).unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc/app")).unwrap();
        std::fs::write(rootfs.join("etc/app/conf"), b"from image").unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("escape")).unwrap();
        let mut mounts = vec![
            parse_bind("conf:/etc/app").unwrap(),
            parse_bind("/escape").unwrap(),
        ];
        create_volumes(&volumes, &mut mounts).unwrap();
        assert!(volumes.get(&mounts[1].name).unwrap().anonymous());
        prepare("c1", &volumes, &mounts, &rootfs).unwrap();
        let conf = volumes.mountpoint("conf").join("conf");
        assert_eq!(std::fs::read(&conf).unwrap(), b"from image");
        assert!(
            is_empty_dir(&volumes.mountpoint(&mounts[1].name)),
            "a path through a symlink is not copied from"
        );
        // A volume that already has data keeps it.
        std::fs::write(&conf, b"changed").unwrap();
        prepare("c1", &volumes, &mounts, &rootfs).unwrap();
        assert_eq!(std::fs::read(&conf).unwrap(), b"changed");
    }
}
