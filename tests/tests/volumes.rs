//! Volumes through the real docker CLI and a real VM: named volumes keep their data across
//! containers and a VM restart and cannot be removed while in use; anonymous volumes come and go
//! with their containers; a new volume is filled from the image; tmpfs and read-only mounts;
//! driver options; prune, filters and `system df`; bad input refused before anything is made.

use std::time::Duration;

use berth_tests::{SharedEngine, shared_engine};

const LIMIT: Duration = Duration::from_secs(120);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn volume_names(e: &SharedEngine) -> Vec<String> {
    e.docker_ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_named_volume_keeps_its_data_across_containers_and_a_vm_restart() {
    let e = engine();
    let created = e.docker_ok(&["volume", "create", "--label", "team=web", "keep"]);
    assert_eq!(created.trim(), "keep");
    let inspect = e.docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Driver}} {{.Scope}} {{.Labels.team}} {{.Name}}",
        "keep",
    ]);
    assert_eq!(inspect.trim(), "local local web keep");
    let ls = e.docker_ok(&["volume", "ls", "--filter", "label=team=web"]);
    assert!(
        ls.lines()
            .any(|l| l.split_whitespace().eq(["local", "keep"])),
        "{ls}"
    );

    e.docker_ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/note && mkdir /data/sub && chown 1000:1000 /data/sub",
    ]);
    let mounts = e.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.RW}}{{end}}",
        "writer",
    ]);
    assert_eq!(mounts.trim(), "volume keep /data true");
    let ps = e.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "volume=keep",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(ps.trim(), "writer");

    // In use by a stopped container: refused, data untouched.
    let out = e.docker(&["volume", "rm", "keep"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("volume is in use"),
        "{}",
        stderr(&out)
    );

    e.docker_ok(&["rm", "writer"]);
    let read = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/again",
        "busybox",
        "sh",
        "-c",
        "cat /again/note; stat -c %u /again/sub",
    ]);
    assert_eq!(read, "kept\n1000\n");

    let (code, body) = e.api("POST", "/berth/v1/vm/stop", None);
    assert_eq!(code, 204, "{body}");
    let (code, body) = e.api("POST", "/berth/v1/vm/start", None);
    assert_eq!(code, 200, "{body}");
    let read = e.docker_ok(&["run", "--rm", "-v", "keep:/d", "busybox", "cat", "/d/note"]);
    assert_eq!(read, "kept\n", "the volume survives a VM restart");

    e.docker_ok(&["volume", "rm", "keep"]);
    let out = e.docker(&["volume", "inspect", "keep"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such volume"), "{}", stderr(&out));
}

#[test]
fn anonymous_volumes_go_with_their_container_and_new_volumes_fill_from_the_image() {
    let e = engine();
    let before = volume_names(e);
    // `-v /path` makes an anonymous volume; `--rm` takes it away again.
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo x > /scratch/f && cat /scratch/f",
    ]);
    assert_eq!(out, "x\n");
    assert_eq!(volume_names(e), before, "--rm removes the anonymous volume");

    e.docker_ok(&[
        "create", "--name", "anon", "-v", "/cache", "busybox", "true",
    ]);
    let name = e.docker_ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "anon"]);
    let name = name.trim().to_owned();
    assert_eq!(name.len(), 64, "{name}");
    let label = e.docker_ok(&["volume", "inspect", "-f", "{{json .Labels}}", &name]);
    assert!(label.contains("com.docker.volume.anonymous"), "{label}");
    e.docker_ok(&["rm", "-v", "anon"]);
    assert!(!volume_names(e).contains(&name), "rm -v removes it");

    // A new volume over /etc gets the image's /etc; its second use keeps what was changed.
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etc-copy:/etc",
        "busybox",
        "sh",
        "-c",
        "grep -c ^root: /etc/passwd; echo changed > /etc/marker",
    ]);
    assert_eq!(out, "1\n");
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etc-copy:/x",
        "busybox",
        "cat",
        "/x/marker",
    ]);
    assert_eq!(out, "changed\n");
    // nocopy leaves it empty (but for the mount points of /etc/hosts and its kin).
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "etc-empty:/etc:nocopy",
        "busybox",
        "sh",
        "-c",
        "test -e /etc/passwd && echo copied || echo empty",
    ]);
    assert_eq!(out, "empty\n");
    e.docker_ok(&["volume", "rm", "etc-copy", "etc-empty"]);
}

#[test]
fn tmpfs_read_only_and_driver_option_mounts() {
    let e = engine();
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=2m,tmpfs-mode=0700",
        "busybox",
        "sh",
        "-c",
        "stat -c %a /t; df -k /t | tail -1 | awk '{print $2}'; grep ' /t ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(out, "700\n2048\ntmpfs\n");

    e.docker_ok(&["volume", "create", "ro-vol"]);
    let out = e.docker(
        &[
            "run",
            "--rm",
            "--mount",
            "source=ro-vol,target=/ro,readonly",
            "busybox",
            "touch",
            "/ro/f",
        ],
        LIMIT,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    e.docker_ok(&["volume", "rm", "ro-vol"]);

    e.docker_ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=3m,uid=1000",
        "tmpvol",
    ]);
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "tmpvol:/v",
        "busybox",
        "sh",
        "-c",
        "df -k /v | tail -1 | awk '{print $2}'; stat -c %u /v",
    ]);
    assert_eq!(out, "3072\n1000\n");
    e.docker_ok(&["volume", "rm", "tmpvol"]);
}

#[test]
fn prune_filters_and_disk_usage() {
    let e = engine();
    e.docker_ok(&["volume", "create", "--label", "keep=yes", "prune-kept"]);
    e.docker_ok(&["volume", "create", "prune-named"]);
    e.docker_ok(&[
        "create",
        "--name",
        "prune-user",
        "-v",
        "prune-used:/u",
        "busybox",
        "true",
    ]);
    e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "prune-named:/n",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /n/blob",
    ]);
    // dangling: no container uses it.
    let dangling = e.docker_ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert!(dangling.lines().any(|l| l == "prune-named"), "{dangling}");
    assert!(!dangling.lines().any(|l| l == "prune-used"), "{dangling}");

    let df = e.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    let count = df
        .lines()
        .find_map(|l| l.strip_prefix("Local Volumes "))
        .unwrap_or_default();
    assert!(count.parse::<usize>().unwrap_or(0) >= 3, "{df}");
    let verbose = e.docker_ok(&["system", "df", "-v"]);
    let row = verbose
        .lines()
        .find(|l| l.starts_with("prune-named"))
        .unwrap_or_else(|| panic!("{verbose}"));
    assert!(row.contains("kB"), "the 300 kB blob shows: {row}");

    // Without -a only anonymous volumes go; named ones stay.
    e.docker_ok(&["volume", "prune", "-f"]);
    let names = volume_names(e);
    assert!(names.contains(&"prune-named".to_owned()), "{names:?}");
    let out = e.docker_ok(&["volume", "prune", "-a", "-f", "--filter", "label!=keep"]);
    assert!(out.contains("prune-named"), "{out}");
    let names = volume_names(e);
    assert!(!names.contains(&"prune-named".to_owned()), "{names:?}");
    assert!(
        names.contains(&"prune-kept".to_owned()),
        "label! keeps it: {names:?}"
    );
    assert!(
        names.contains(&"prune-used".to_owned()),
        "in use: {names:?}"
    );
    e.docker_ok(&["rm", "prune-user"]);
    e.docker_ok(&["volume", "rm", "prune-used", "prune-kept"]);
}

#[test]
fn bad_volume_input_is_refused_before_anything_is_made() {
    let e = engine();
    let before = volume_names(e);
    let out = e.docker(&["volume", "create", "bad name"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid characters"),
        "{}",
        stderr(&out)
    );
    let out = e.docker(&["volume", "create", "-o", "bogus=1", "optvol"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid option"), "{}", stderr(&out));
    let out = e.docker(&["volume", "create", "-d", "nfs-plugin", "drvvol"], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("plugin"), "{}", stderr(&out));

    let out = e.docker(
        &["run", "--rm", "-v", "newvol:relative", "busybox", "true"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("must be absolute"),
        "{}",
        stderr(&out)
    );
    let out = e.docker(
        &["run", "--rm", "-v", "newvol:/x:bogus", "busybox", "true"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("invalid mode"), "{}", stderr(&out));
    let out = e.docker(
        &[
            "run", "--rm", "-v", "a1:/same", "-v", "b1:/same", "busybox", "true",
        ],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("Duplicate mount point"),
        "{}",
        stderr(&out)
    );
    assert_eq!(volume_names(e), before, "no volume was made");

    // A malformed body over the API is a 400 with a JSON message.
    let (code, body) = e.api("POST", "/volumes/create", Some(serde_json::json!([1])));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[test]
fn host_directories_under_the_shared_paths_bind_both_ways() {
    use std::os::unix::fs::MetadataExt;
    let e = engine();
    let dir = tempfile::Builder::new()
        .prefix("berth-bind-")
        .tempdir_in("/tmp")
        .unwrap();
    let host = dir.path();
    std::fs::write(host.join("from-host.txt"), "hello from the host\n").unwrap();
    let spec = format!("{}:/work", host.display());
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /work/from-host.txt; echo from-the-container > /work/made.txt; mkdir /work/sub",
    ]);
    assert_eq!(out, "hello from the host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("made.txt")).unwrap(),
        "from-the-container\n"
    );
    let made = std::fs::metadata(host.join("made.txt")).unwrap();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    assert_eq!(
        made.uid(),
        me,
        "files made in the container belong to the host user"
    );
    assert!(host.join("sub").is_dir());

    // A running container sees a file the host writes after it started.
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "bind-watch",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "while ! test -e /work/later.txt; do sleep 0.2; done; cat /work/later.txt",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(host.join("later.txt"), "written later\n").unwrap();
    let code = e.docker_ok(&["wait", "bind-watch"]);
    assert_eq!(code.trim(), "0");
    assert_eq!(e.docker_ok(&["logs", "bind-watch"]), "written later\n");
    e.docker_ok(&["rm", "bind-watch"]);

    // Read-only, through --mount.
    let mount = format!("type=bind,source={},target=/ro,readonly", host.display());
    let out = e.docker(
        &[
            "run", "--rm", "--mount", &mount, "busybox", "touch", "/ro/x",
        ],
        LIMIT,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert!(!host.join("x").exists());

    // -v makes a missing directory under a share; --mount refuses one.
    let missing = host.join("made-by-v");
    let spec = format!("{}:/m", missing.display());
    e.docker_ok(&["run", "--rm", "-v", &spec, "busybox", "true"]);
    assert!(missing.is_dir());
    let mount = format!("type=bind,source={}/absent,target=/a", host.display());
    let out = e.docker(
        &["run", "--rm", "--mount", &mount, "busybox", "true"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("bind source path does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_host_path_outside_the_shared_paths_is_refused() {
    let e = engine();
    let outside = tempfile::Builder::new()
        .prefix("berth-outside-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let spec = format!("{}:/x", outside.path().display());
    let out = e.docker(&["run", "--rm", "-v", &spec, "busybox", "true"], LIMIT);
    assert_eq!(out.status.code(), Some(125));
    let err = stderr(&out);
    assert!(
        err.contains("is not shared with the Berth VM") && err.contains("shared-paths"),
        "{err}"
    );
    let nested = outside.path().join("new");
    let spec = format!("{}:/x", nested.display());
    let out = e.docker(&["run", "--rm", "-v", &spec, "busybox", "true"], LIMIT);
    assert_eq!(out.status.code(), Some(125));
    assert!(!nested.exists(), "nothing is made outside the shared paths");
}

#[test]
fn docker_cp_sees_into_volumes_running_or_stopped() {
    let e = engine();
    let _ = e.docker(&["rm", "-f", "cp-vols"], LIMIT);
    let _ = e.docker(&["volume", "rm", "cp-vol"], LIMIT);
    e.docker_ok(&["volume", "create", "cp-vol"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "cp-vols",
        "-v",
        "cp-vol:/data",
        "-v",
        "cp-vol:/ro:ro",
        "busybox",
        "sleep",
        "600",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-host");
    std::fs::write(&file, "host-data\n").unwrap();
    // Into the volume of a running container: the container and the volume have it.
    e.docker_ok(&["cp", file.to_str().unwrap(), "cp-vols:/data/from-host"]);
    assert_eq!(
        e.docker_ok(&["exec", "cp-vols", "cat", "/data/from-host"]),
        "host-data\n"
    );
    // Out of it, what the container wrote.
    e.docker_ok(&["exec", "cp-vols", "sh", "-c", "echo inside > /data/inside"]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    e.docker_ok(&["cp", "cp-vols:/data/inside", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(out.join("inside")).unwrap(),
        "inside\n"
    );
    // A read-only mount of it refuses a copy in.
    let refused = e.docker(&["cp", file.to_str().unwrap(), "cp-vols:/ro/nope"], LIMIT);
    assert!(!refused.status.success(), "copied into a read-only volume");
    // A stopped container's volume too.
    e.docker_ok(&["stop", "-t", "1", "cp-vols"]);
    e.docker_ok(&[
        "cp",
        "cp-vols:/data/from-host",
        dir.path().join("again").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("again")).unwrap(),
        "host-data\n"
    );
    e.docker_ok(&["rm", "cp-vols"]);
    assert_eq!(
        e.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "cp-vol:/v",
            "busybox",
            "cat",
            "/v/from-host",
            "/v/inside"
        ]),
        "host-data\ninside\n"
    );
    e.docker_ok(&["volume", "rm", "cp-vol"]);
}
