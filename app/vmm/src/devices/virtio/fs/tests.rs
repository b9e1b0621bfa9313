//! virtio-fs against a real virtiofsd: the test plays the guest's driver, writing FUSE
//! requests into the request queue of memfd-backed guest memory, and reads virtiofsd's answers
//! from the used ring, as the guest kernel would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Fs;
use crate::devices::virtio::test_utils::{Buf, GuestQueue};
use crate::devices::virtio::{TYPE_FS, VIRTIO_F_VERSION_1, VirtioDevice};

/// The virtiofsd the project's setup installs (`BERTH_VIRTIOFSD` names another).
fn virtiofsd() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_VIRTIOFSD") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("virtiofsd"))
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/virtiofsd")))
        .find(|p| p.is_file());
    on_path.expect("virtiofsd is needed for the virtio-fs tests: `make setup` installs it")
}

struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_backend(shared: &Path, socket: &Path) -> Backend {
    let child = Command::new(virtiofsd())
        .arg("--socket-path")
        .arg(socket)
        .arg("--shared-dir")
        .arg(shared)
        .args([
            "--sandbox",
            "none",
            "--cache",
            "never",
            "--log-level",
            "error",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting virtiofsd");
    let backend = Backend(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "virtiofsd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    backend
}

const FUSE_LOOKUP: u32 = 1;
const FUSE_INIT: u32 = 26;
const REQ: u64 = 0x10_0000;
const RESP: u64 = 0x20_0000;

/// One FUSE request on the request queue (queue 1); waits for the answer and returns it.
fn ask(
    fs: &Fs,
    mem: &GuestMemoryMmap,
    queue: &mut GuestQueue,
    opcode: u32,
    unique: u64,
    nodeid: u64,
    body: &[u8],
) -> Vec<u8> {
    let len = 40 + body.len() as u32;
    let mut req = Vec::new();
    req.extend_from_slice(&len.to_le_bytes());
    req.extend_from_slice(&opcode.to_le_bytes());
    req.extend_from_slice(&unique.to_le_bytes());
    req.extend_from_slice(&nodeid.to_le_bytes());
    req.extend_from_slice(&[0u8; 16]); // uid, gid, pid, extension length, padding
    req.extend_from_slice(body);
    mem.write_slice(&req, GuestAddress(REQ)).unwrap();
    mem.write_slice(&[0u8; 4096], GuestAddress(RESP)).unwrap();
    let before = queue.used_idx();
    queue.add_chain(&[Buf::r(REQ, len), Buf::w(RESP, 4096)]);
    fs.queue_events()[1].write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.used_idx() == before {
        assert!(Instant::now() < deadline, "virtiofsd did not answer");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        fs.calls[1].read().unwrap_or(0) > 0,
        "the backend signals used buffers on the call eventfd"
    );
    let (_, written) = queue.used_elem(before);
    let mut out = vec![0u8; written as usize];
    mem.read_slice(&mut out, GuestAddress(RESP)).unwrap();
    let unique_back = u64::from_le_bytes(out[8..16].try_into().unwrap());
    assert_eq!(unique_back, unique);
    out
}

fn error_of(resp: &[u8]) -> i32 {
    i32::from_le_bytes(resp[4..8].try_into().unwrap())
}

#[test]
fn fuse_requests_reach_virtiofsd_through_the_guests_queues() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), b"hi from the host").unwrap();
    let socket = dir.path().join("fs.sock");
    let _backend = start_backend(&shared, &socket);

    let mem = crate::memory::create_guest_memory(&[(0, 16 << 20)]).unwrap();
    let mut fs = Fs::new("berth0", &socket).unwrap();
    assert_eq!(fs.device_type(), TYPE_FS);
    let mut config = [0u8; 40];
    fs.read_config(0, &mut config);
    assert_eq!(&config[..7], b"berth0\0");
    assert_eq!(u32::from_le_bytes(config[36..40].try_into().unwrap()), 1);
    assert_ne!(fs.avail_features() & VIRTIO_F_VERSION_1, 0);
    fs.set_acked_features(VIRTIO_F_VERSION_1);

    let hiprio = GuestQueue::new(&mem, 0x1_0000, 1024);
    let mut requests = GuestQueue::new(&mem, 0x2_0000, 1024);
    fs.activate(mem.clone(), vec![hiprio.queue(), requests.queue()])
        .unwrap();

    // FUSE_INIT, protocol 7.31.
    let mut init = Vec::new();
    for v in [7u32, 31, 0x2_0000, 0] {
        init.extend_from_slice(&v.to_le_bytes());
    }
    let resp = ask(&fs, &mem, &mut requests, FUSE_INIT, 1, 0, &init);
    assert_eq!(error_of(&resp), 0, "FUSE_INIT: {resp:?}");
    assert_eq!(u32::from_le_bytes(resp[16..20].try_into().unwrap()), 7);

    // A file the host wrote, looked up in the shared root: its size comes back.
    let resp = ask(&fs, &mem, &mut requests, FUSE_LOOKUP, 2, 1, b"hello.txt\0");
    assert_eq!(error_of(&resp), 0, "FUSE_LOOKUP: {resp:?}");
    // fuse_entry_out: nodeid, generation, entry_valid, attr_valid, two nsecs, then the
    // attributes (ino, size, ...).
    let size = u64::from_le_bytes(resp[16 + 40 + 8..16 + 40 + 16].try_into().unwrap());
    assert_eq!(size, b"hi from the host".len() as u64);
    let resp = ask(&fs, &mem, &mut requests, FUSE_LOOKUP, 3, 1, b"nope\0");
    assert_eq!(error_of(&resp), -2, "ENOENT for a missing name");

    fs.reset();
    assert!(!fs.is_activated());
}

#[test]
fn bad_tags_and_absent_backends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    assert!(Fs::new("", &missing).is_err());
    assert!(Fs::new(&"t".repeat(37), &missing).is_err());
    let err = Fs::new("berth0", &missing).err().expect("no backend there");
    assert!(err.to_string().contains("none.sock"), "{err}");
}
