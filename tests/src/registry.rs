//! A real registry for the suites: Debian's docker-registry on 127.0.0.1 with its own storage,
//! and images made here (busybox-static root filesystems, several layers) pushed to it over the
//! registry HTTP API. Nothing comes from the internet.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub struct Registry {
    pub port: u16,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP port nothing listens on at the moment, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange with `Connection: close`; returns (status, headers, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect registry");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, resp[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

impl Registry {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Self::serve(dir, &data, "")
    }

    /// A registry that asks for `user` and `password` (htpasswd, Basic auth), serving the same
    /// storage as `open` (so images pushed to `open` can be pulled here with credentials).
    pub fn with_auth(open: &Registry, user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash(password, 5).unwrap();
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let data = open
            ._dir
            .as_ref()
            .expect("a registry this test started")
            .path()
            .join("data");
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            htpasswd.display()
        );
        Self::serve(dir, &data, &auth)
    }

    fn serve(dir: tempfile::TempDir, data: &std::path::Path, extra: &str) -> Self {
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                data.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        super::die_with_parent(&mut cmd, libc::SIGKILL);
        let child = cmd
            .spawn()
            .expect("docker-registry (Debian's docker-registry package) must be installed");
        let reg = Registry {
            port,
            child: Some(child),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && matches!(http(port, "GET", "/v2/", &[], b"").0, 200 | 401)
            {
                return reg;
            }
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A registry someone else runs on 127.0.0.1:`port`.
    pub fn attach(port: u16) -> Self {
        Registry {
            port,
            child: None,
            _dir: None,
        }
    }

    /// `library/busybox:latest`, the test image, as a Docker Hub mirror would serve it.
    pub fn push_busybox(&self) {
        self.push(
            "library/busybox",
            "latest",
            &busybox_layers(),
            busybox_config(),
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let (status, head, _) = http(
            self.port,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(status, 202, "start upload: {head}");
        let location = header(&head, "Location").expect("upload location");
        let path = location
            .strip_prefix(&format!("http://{}", self.host()))
            .unwrap_or(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, head, _) = http(
            self.port,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(status, 201, "finish upload: {head}");
        digest
    }

    /// Pushes an image with gzip-compressed `layers` (uncompressed tars) and `config`
    /// (the `config` section of the image config); returns the manifest digest.
    pub fn push(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
        config: serde_json::Value,
    ) -> String {
        self.push_with_diff_ids(repo, tag, layers, config, None)
    }

    /// As [`Registry::push`], with the config's diff IDs replaced (to make a lying image).
    pub fn push_with_diff_ids(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
        config: serde_json::Value,
        fake_diff_ids: Option<Vec<String>>,
    ) -> String {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for tar in layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            let gz = gz.finish().unwrap();
            diff_ids.push(sha256(tar));
            let digest = self.put_blob(repo, &gz);
            descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest, "size": gz.len(),
            }));
        }
        let diff_ids = fake_diff_ids.unwrap_or(diff_ids);
        let history: Vec<serde_json::Value> = (0..layers.len())
            .map(|i| serde_json::json!({"created": "2026-01-01T00:00:00Z", "created_by": format!("berth test layer {i}")}))
            .collect();
        let image_config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        });
        let config_bytes = serde_json::to_vec(&image_config).unwrap();
        let config_digest = self.put_blob(repo, &config_bytes);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len() },
            "layers": descs,
        });
        let body = serde_json::to_vec(&manifest).unwrap();
        let (status, head, _) = http(
            self.port,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &body,
        );
        assert_eq!(status, 201, "push manifest: {head}");
        sha256(&body)
    }
}

/// A tar layer builder.
pub struct Layer(tar::Builder<Vec<u8>>);

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        Layer(b)
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// An entry whose raw name is `raw` (which the tar crate would refuse to write), to make
    /// layers that try to escape.
    pub fn raw_file(mut self, raw: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        let name = &mut h.as_gnu_mut().unwrap().name;
        name[..raw.len()].copy_from_slice(raw.as_bytes());
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Applets the test images link to busybox.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "id", "pwd", "env", "true", "false", "head", "wc",
    "hostname", "ps", "kill", "dd", "mkdir", "touch", "rm", "grep", "stat", "tail", "uname", "yes",
    "seq", "test", "printf", "date", "whoami", "stty", "tty", "httpd", "wget", "nslookup", "ip",
    "nc", "cut", "timeout",
];

/// A busybox-static image in three layers: the binary, the applet links and /etc, a file.
pub fn busybox_layers() -> Vec<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static at /bin/busybox");
    let l1 = Layer::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .build();
    let mut l2 = Layer::new()
        .dir("etc", 0o755)
        .dir("tmp", 0o1777)
        .dir("root", 0o700);
    for a in APPLETS {
        l2 = l2.symlink(&format!("bin/{a}"), "busybox");
    }
    let l2 = l2
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/sh\napp:x:1000:1000:app:/work:/bin/sh\n")
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n")
        .build();
    let l3 = Layer::new()
        .file("hello.txt", 0o644, b"hello from layer three\n")
        .build();
    vec![l1, l2, l3]
}

pub fn busybox_config() -> serde_json::Value {
    serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    })
}
