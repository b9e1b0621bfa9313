//! What each client asked to publish, kept on the host: the `PortBindings` and
//! `PublishAllPorts` of a container's create request, one 0600 file per container under
//! `<home>/published/`. The engine opens host listeners from these alone, never from the
//! guest's documents, so a compromised guest cannot make the host listen on an address or port
//! of its choosing. The guest's part is only which ports an image exposes, and with `-P` those
//! still get free ports on the default address, as dockerd gives them.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::ports::{Binding, wanted};

/// Whether `id` is a full container ID (64 lowercase hex digits), and so safe as a file name.
fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The publishing part of a create body's `HostConfig`, as a document [`wanted`] reads.
fn request_of(create_body: &Value) -> Value {
    let host = &create_body["HostConfig"];
    json!({"HostConfig": {
        "PortBindings": host.get("PortBindings").cloned().unwrap_or(Value::Null),
        "PublishAllPorts": host["PublishAllPorts"].as_bool().unwrap_or(false),
    }})
}

/// Checks what a create body asks to publish, before the container exists: a malformed
/// binding is the client's error (400), as dockerd answers it.
pub fn check(create_body: &Value) -> Result<(), String> {
    wanted(&request_of(create_body)).map(|_| ())
}

/// The host-side records of published ports.
#[derive(Debug, Clone)]
pub struct Published {
    dir: PathBuf,
}

impl Published {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Published { dir: dir.into() }
    }

    fn file(&self, id: &str) -> Option<PathBuf> {
        is_container_id(id).then(|| self.dir.join(format!("{id}.json")))
    }

    /// Keeps what container `id`'s create body asked to publish (nothing is kept when it asked
    /// for nothing).
    pub fn record(&self, id: &str, create_body: &Value) -> std::io::Result<()> {
        let file = self.file(id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{id:?} is not a container ID"),
            )
        })?;
        let request = request_of(create_body);
        let asks = request["HostConfig"]["PublishAllPorts"] == true
            || request["HostConfig"]["PortBindings"]
                .as_object()
                .is_some_and(|m| !m.is_empty());
        if !asks {
            return Ok(());
        }
        crate::paths::ensure_private_dir(&self.dir).map_err(std::io::Error::other)?;
        crate::paths::write_private_atomic(&file, &serde_json::to_vec(&request)?)
    }

    /// The bindings to open for container `id`: its recorded request, with the ports the
    /// guest says its image exposes for `-P`. Nothing when nothing was recorded.
    pub fn bindings(&self, id: &str, guest_doc: &Value) -> Result<Vec<Binding>, String> {
        let Some(file) = self.file(id) else {
            return Err(format!("{id:?} is not a container ID"));
        };
        let mut request: Value = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading {}: {e}", file.display())),
        };
        if request["HostConfig"]["PublishAllPorts"] == true {
            request["Config"]["ExposedPorts"] = guest_doc["Config"]["ExposedPorts"].clone();
        }
        wanted(&request)
    }

    /// Drops container `id`'s record.
    pub fn forget(&self, id: &str) {
        if let Some(file) = self.file(id) {
            let _ = std::fs::remove_file(file);
        }
    }

    /// Drops the records of containers that no longer exist. A record younger than a minute
    /// stays: its container may have been made after `existing` was listed.
    pub fn sweep(&self, existing: &std::collections::HashSet<String>) {
        self.sweep_older_than(existing, std::time::Duration::from_secs(60));
    }

    fn sweep_older_than(
        &self,
        existing: &std::collections::HashSet<String>,
        age: std::time::Duration,
    ) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= age));
            if let Some(id) = name.strip_suffix(".json")
                && !existing.contains(id)
                && old
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn listeners_come_from_the_request_not_from_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let p = Published::new(dir.path().join("published"));
        let body = json!({"HostConfig": {"PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}});
        p.record(ID, &body).unwrap();
        // The guest claims other bindings: they are not read.
        let guest = json!({"HostConfig": {"PortBindings": {
            "22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "22"}]}, "PublishAllPorts": true},
            "Config": {"ExposedPorts": {"443/tcp": {}}}});
        let b = p.bindings(ID, &guest).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].container_port, b[0].host_port), (80, 8080));
        assert_eq!(b[0].host_ip, "");
        // A container the host never created publishes nothing.
        let other = ID.replace('0', "f");
        assert!(p.bindings(&other, &guest).unwrap().is_empty());
        // An ID that is not one never becomes a path.
        assert!(p.bindings("../../etc/passwd", &guest).is_err());
        assert!(p.record("../x", &body).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(format!("published/{ID}.json")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn publish_all_takes_the_images_exposed_ports_on_free_host_ports() {
        let dir = tempfile::tempdir().unwrap();
        let p = Published::new(dir.path());
        p.record(ID, &json!({"HostConfig": {"PublishAllPorts": true}}))
            .unwrap();
        let guest = json!({"Config": {"ExposedPorts": {"443/tcp": {}, "53/udp": {}}}});
        let b = p.bindings(ID, &guest).unwrap();
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|b| b.host_port == 0 && b.host_ip.is_empty()));
    }

    #[test]
    fn nothing_asked_nothing_kept_and_sweep_drops_the_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = Published::new(dir.path());
        p.record(ID, &json!({"HostConfig": {}})).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        p.record(ID, &json!({"HostConfig": {"PublishAllPorts": true}}))
            .unwrap();
        let none = std::time::Duration::ZERO;
        p.sweep_older_than(&[ID.to_owned()].into_iter().collect(), none);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A fresh record may belong to a container made after the list: it stays.
        p.sweep(&Default::default());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        p.sweep_older_than(&Default::default(), none);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(check(&json!({"HostConfig": {"PortBindings": {"x/tcp": []}}})).is_err());
        assert!(
            check(&json!({"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "no"}]}}}))
                .is_err()
        );
    }
}
