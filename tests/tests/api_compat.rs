//! The Docker API as clients call it beyond the everyday verbs (issue 22): the swarm family
//! answered as a dockerd in no swarm, `/plugins`, `/distribution/{name}/json`, and every field
//! of `/info` and `/version`. Each check goes through the docker CLI where it has a verb, else
//! a raw HTTP request on the socket, and asserts what dockerd answers. dockerd 20.10's answers
//! were taken from Debian's docker.io 20.10.24 on this machine, not in a swarm.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use berth_tests::registry::{self, Registry, http};
use berth_tests::{SharedEngine, shared_engine};

const LIMIT: Duration = Duration::from_secs(120);

/// dockerd's `errNoManager` for a node in no swarm.
const NO_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A docker command that must fail; its stderr.
fn docker_fails(e: &SharedEngine, args: &[&str]) -> String {
    let out = e.docker(args, LIMIT);
    assert!(
        !out.status.success(),
        "docker {args:?} succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn info_and_version_fill_every_field_dockerd_fills() {
    let e = shared_engine();
    assert_eq!(
        e.docker_ok(&["version", "--format", "{{.Server.MinAPIVersion}}"])
            .trim(),
        "1.24"
    );
    let go = e.docker_ok(&["version", "--format", "{{.Server.GoVersion}}"]);
    assert!(go.starts_with("rustc "), "{go}");
    let (status, version) = e.api("GET", "/v1.47/version", None);
    assert_eq!(status, 200);
    for k in [
        "Version",
        "ApiVersion",
        "MinAPIVersion",
        "GitCommit",
        "GoVersion",
        "Os",
        "Arch",
        "KernelVersion",
    ] {
        assert!(version[k].is_string(), "{k} in {version}");
    }
    assert_eq!(version["Components"][0]["Name"], "Engine");
    assert_eq!(version["Components"][0]["Details"]["MinAPIVersion"], "1.24");

    // The docker CLI prints its view of /info; the fields are checked on the wire, as other
    // clients read them.
    let out = e.docker_ok(&["info"]);
    assert!(out.contains("Swarm: inactive"), "{out}");
    let (status, info) = e.api("GET", "/v1.47/info", None);
    assert_eq!(status, 200);
    // Every field dockerd 20.10 writes, plus 27's CDISpecDirs.
    for k in [
        "ID",
        "Containers",
        "ContainersRunning",
        "ContainersPaused",
        "ContainersStopped",
        "Images",
        "Driver",
        "DriverStatus",
        "Plugins",
        "MemoryLimit",
        "SwapLimit",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "CPUShares",
        "CPUSet",
        "PidsLimit",
        "IPv4Forwarding",
        "BridgeNfIptables",
        "BridgeNfIp6tables",
        "Debug",
        "NFd",
        "OomKillDisable",
        "NGoroutines",
        "SystemTime",
        "LoggingDriver",
        "CgroupDriver",
        "CgroupVersion",
        "NEventsListener",
        "KernelVersion",
        "OperatingSystem",
        "OSVersion",
        "OSType",
        "Architecture",
        "IndexServerAddress",
        "RegistryConfig",
        "NCPU",
        "MemTotal",
        "GenericResources",
        "DockerRootDir",
        "HttpProxy",
        "HttpsProxy",
        "NoProxy",
        "Name",
        "Labels",
        "ExperimentalBuild",
        "ServerVersion",
        "Runtimes",
        "DefaultRuntime",
        "Swarm",
        "LiveRestoreEnabled",
        "Isolation",
        "InitBinary",
        "ContainerdCommit",
        "RuncCommit",
        "InitCommit",
        "SecurityOptions",
        "CDISpecDirs",
        "Warnings",
    ] {
        assert!(info.get(k).is_some(), "no {k} in {info}");
    }
    assert_eq!(info["Debug"], false);
    assert_eq!(info["ExperimentalBuild"], false);
    assert_eq!(info["LoggingDriver"], "json-file");
    assert_eq!(info["OSType"], "linux");
    assert!(info["NCPU"].as_u64().unwrap() > 0, "{info}");
    assert!(info["MemTotal"].as_u64().unwrap() > 0, "{info}");
    assert!(info["NFd"].as_u64().unwrap() > 0, "{info}");
    assert!(!info["KernelVersion"].as_str().unwrap().is_empty());
    assert_eq!(info["KernelVersion"], version["KernelVersion"]);
    let default = info["DefaultRuntime"].as_str().unwrap();
    assert!(info["Runtimes"].get(default).is_some(), "{info}");
    assert!(
        info["SystemTime"].as_str().unwrap().ends_with('Z'),
        "{info}"
    );
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Mirrors"],
        serde_json::json!([format!("http://127.0.0.1:{}/", e.registry)])
    );
    // Older clients get older shapes: security options by name before 1.25.
    let (_, old) = e.api("GET", "/v1.24/info", None);
    assert_eq!(
        old["SecurityOptions"],
        serde_json::json!(["seccomp", "cgroupns"])
    );
    assert_eq!(info["SecurityOptions"][0], "name=seccomp,profile=builtin");

    // `docker events` counts as a listener while it follows.
    let listeners = || {
        e.api("GET", "/v1.47/info", None).1["NEventsListener"]
            .as_u64()
            .unwrap()
    };
    let before = listeners();
    let mut events = std::process::Command::new("docker")
        .arg("events")
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DOCKER_CONFIG", &e.docker_config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |want: u64| {
        let start = Instant::now();
        while listeners() != want {
            assert!(
                start.elapsed() < LIMIT,
                "NEventsListener never became {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(before + 1);
    events.kill().unwrap();
    events.wait().unwrap();
    wait_for(before);
}

#[test]
fn swarm_answers_as_a_dockerd_in_no_swarm() {
    let e = shared_engine();
    // docker-py's and testcontainers' teardown: `leave(force=True)` tolerates exactly this.
    let err = docker_fails(e, &["swarm", "leave", "--force"]);
    assert!(
        err.contains("Error response from daemon: This node is not part of a swarm"),
        "{err}"
    );
    assert_eq!(
        e.api("POST", "/v1.47/swarm/leave?force=True", None),
        (
            503,
            serde_json::json!({"message": "This node is not part of a swarm"})
        )
    );
    assert_eq!(
        e.docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .trim(),
        "inactive"
    );
    for args in [
        &["node", "ls"][..],
        &["service", "ls"],
        &["service", "inspect", "web"],
        &["secret", "ls"],
        &["config", "ls"],
        &["swarm", "unlock-key"],
    ] {
        let err = docker_fails(e, args);
        assert!(err.contains(NO_MANAGER), "docker {args:?}: {err}");
    }
    for (method, path) in [
        ("GET", "/v1.47/swarm"),
        ("GET", "/v1.47/services"),
        ("GET", "/v1.47/nodes"),
        ("GET", "/v1.47/tasks"),
        ("GET", "/v1.47/secrets"),
        ("GET", "/v1.47/configs"),
        ("DELETE", "/v1.47/services/web"),
        ("GET", "/v1.47/services/web/logs?stdout=1"),
    ] {
        assert_eq!(
            e.api(method, path, None),
            (503, serde_json::json!({ "message": NO_MANAGER })),
            "{method} {path}"
        );
    }
    // The request is checked before the cluster is asked (dockerd 20.10: the same words).
    assert_eq!(
        e.api("POST", "/v1.47/swarm/update", Some(serde_json::json!({}))),
        (
            400,
            serde_json::json!({"message": "invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax"})
        )
    );
    // Berth is no swarm node: init is refused with a clear message (dockerd would start one).
    let err = docker_fails(e, &["swarm", "init"]);
    assert!(err.contains("Berth does not run swarm mode"), "{err}");
    let (status, _) = e.api("POST", "/v1.47/swarm/join", Some(serde_json::json!({})));
    assert_eq!(status, 501);
    // `docker info`'s whole Swarm object, as dockerd 20.10 writes it.
    let (_, info) = e.api("GET", "/v1.47/info", None);
    assert_eq!(
        info["Swarm"],
        serde_json::json!({
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null
        })
    );
}

#[test]
fn plugins_are_none_and_installing_is_refused() {
    let e = shared_engine();
    let ls = e.docker_ok(&["plugin", "ls"]);
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");
    assert!(ls.starts_with("ID"), "{ls}");
    assert_eq!(
        e.api("GET", "/v1.47/plugins", None),
        (200, serde_json::json!([]))
    );
    for args in [
        &["plugin", "inspect", "x"][..],
        &["plugin", "rm", "x"],
        &["plugin", "enable", "x"],
        &["plugin", "disable", "x"],
    ] {
        let err = docker_fails(e, args);
        assert!(
            err.contains("Error response from daemon: plugin \"x\" not found"),
            "docker {args:?}: {err}"
        );
    }
    assert_eq!(
        e.api("GET", "/v1.47/plugins/vieux/sshfs/json", None),
        (
            404,
            serde_json::json!({"message": "plugin \"vieux/sshfs\" not found"})
        )
    );
    let err = docker_fails(e, &["plugin", "install", "vieux/sshfs"]);
    assert!(
        err.contains("Berth does not run Docker Engine plugins"),
        "{err}"
    );
    // dockerd 20.10 and 27: the filter keys are checked.
    let (status, body) = e.api(
        "GET",
        "/v1.47/plugins?filters=%7B%22foo%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("invalid filter 'foo'"))
    );
}

/// One request on the engine's socket with extra headers, as a client library sends it; the
/// status and the body parsed as JSON.
fn raw(
    e: &SharedEngine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut s = std::os::unix::net::UnixStream::connect(&e.socket).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = text(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // A chunked body: keep what lies between the chunk sizes.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// The manifest `reg` serves for `repo:tag`, as raw bytes.
fn manifest(reg: &Registry, repo: &str, tag: &str) -> Vec<u8> {
    let (status, head, body) = http(
        reg.port,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    );
    assert_eq!(status, 200, "{head}");
    body
}

fn put_manifest(reg: &Registry, repo: &str, tag: &str, media_type: &str, body: &[u8]) {
    let (status, head, _) = http(
        reg.port,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        body,
    );
    assert_eq!(status, 201, "{head}");
}

#[test]
fn distribution_describes_what_the_registry_holds() {
    let e = shared_engine();
    let reg = e.registry();
    let oci_digest = reg.push(
        "library/distro",
        "latest",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let oci = manifest(&reg, "library/distro", "latest");
    // The same image with a Docker v2 manifest, and an index of it for two platforms.
    let mut v2: serde_json::Value = serde_json::from_slice(&oci).unwrap();
    v2["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    v2["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for l in v2["layers"].as_array_mut().unwrap() {
        l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let v2 = serde_json::to_vec(&v2).unwrap();
    put_manifest(
        &reg,
        "library/distro",
        "v2",
        "application/vnd.docker.distribution.manifest.v2+json",
        &v2,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": oci_digest,
             "size": oci.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": oci_digest,
             "size": oci.len(), "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    put_manifest(
        &reg,
        "library/distro",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let amd64 = serde_json::json!([{"architecture": "amd64", "os": "linux"}]);

    // A Docker Hub name resolves through the mirror, as a pull does. dockerd 20.10 lists no
    // platforms for an OCI image manifest ("Platforms": null); Berth reads its config.
    assert_eq!(
        e.api("GET", "/v1.47/distribution/distro/json", None),
        (
            200,
            serde_json::json!({
                "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": oci_digest, "size": oci.len()},
                "Platforms": amd64,
            })
        )
    );
    // A Docker v2 manifest: its config's platform, as dockerd 20.10 gives it.
    let (status, body) = e.api(
        "GET",
        &format!("/v1.47/distribution/{}/library/distro:v2/json", reg.host()),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["Descriptor"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(body["Descriptor"]["digest"], registry::sha256(&v2));
    assert_eq!(body["Platforms"], amd64);
    // An index: each entry's platform (dockerd 20.10: the same list).
    let (status, body) = e.api("GET", "/v1.47/distribution/distro:multi/json", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["Descriptor"],
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                           "digest": registry::sha256(&index), "size": index.len()})
    );
    assert_eq!(
        body["Platforms"],
        serde_json::json!([{"architecture": "amd64", "os": "linux"},
                           {"architecture": "arm64", "os": "linux", "variant": "v8"}])
    );
    // By digest.
    let (status, body) = e.api(
        "GET",
        &format!("/v1.47/distribution/distro@{oci_digest}/json"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Descriptor"]["digest"], oci_digest.as_str());
    // Unknown: the registry's words, as dockerd 20.10 relays them.
    assert_eq!(
        e.api(
            "GET",
            &format!(
                "/v1.47/distribution/{}/library/distro:nope/json",
                reg.host()
            ),
            None
        ),
        (
            404,
            serde_json::json!({"message": "manifest unknown: manifest unknown"})
        )
    );
    // An image ID is no reference (dockerd: 500, these words).
    let id = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        e.api("GET", &format!("/v1.47/distribution/{id}/json"), None),
        (
            500,
            serde_json::json!({"message": "no manifest found for full image ID"})
        )
    );
    let (status, _) = e.api("GET", "/v1.47/distribution/Upper/json", None);
    assert_eq!(status, 400);

    // A registry that asks for credentials, as dockerd 20.10 answers: without any, a plain
    // error (500, Go's registry client sends nothing); with wrong ones the registry's 401;
    // with X-Registry-Auth holding the right ones, the answer.
    let open = Registry::start();
    open.push(
        "app",
        "v1",
        &registry::busybox_layers(),
        registry::busybox_config(),
    );
    let locked = Registry::with_auth(&open, "berth", "s3cret");
    let path = format!("/v1.47/distribution/{}/app:v1/json", locked.host());
    let (status, body) = raw(e, "GET", &path, &[]);
    assert_eq!(
        (
            status,
            body["message"]
                .as_str()
                .unwrap_or_default()
                .ends_with(": no basic auth credentials")
        ),
        (500, true),
        "{body}"
    );
    let bad = base64_url(br#"{"username":"berth","password":"wrong"}"#);
    assert_eq!(
        raw(e, "GET", &path, &[("X-Registry-Auth", &bad)]),
        (
            401,
            serde_json::json!({"message": "unauthorized: authentication required"})
        )
    );
    let auth = base64_url(br#"{"username":"berth","password":"s3cret"}"#);
    let (status, body) = raw(e, "GET", &path, &[("X-Registry-Auth", &auth)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Platforms"], amd64);
}

/// URL-safe base64, as the docker CLI encodes `X-Registry-Auth`.
fn base64_url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `container prune` takes created and exited containers, never running ones, narrowed by
/// `label` and `until`; `volume prune` answers by the client's API version: every unused
/// volume before 1.42, anonymous ones only from 1.42 on (moby's `volumes/prune` router).
#[test]
fn prunes_take_what_dockerd_takes() {
    let e = shared_engine();
    e.busybox();
    let labelled = ["--label", "prune=yes"];
    e.docker_ok(
        &[
            &["create", "--name", "pr-created"][..],
            &labelled,
            &["busybox", "true"],
        ]
        .concat(),
    );
    e.docker_ok(
        &[
            &["run", "--name", "pr-exited"][..],
            &labelled,
            &["busybox", "true"],
        ]
        .concat(),
    );
    e.docker_ok(&["run", "--name", "pr-other", "busybox", "true"]);
    e.docker_ok(
        &[
            &["run", "-d", "--name", "pr-running"][..],
            &labelled,
            &["busybox", "sleep", "300"],
        ]
        .concat(),
    );
    let names = || e.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    // Nothing here is an hour old.
    e.docker_ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert!(names().contains("pr-created"), "{}", names());
    let out = e.docker_ok(&["container", "prune", "-f", "--filter", "label=prune=yes"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    let left = names();
    assert!(
        !left.contains("pr-created") && !left.contains("pr-exited"),
        "{left}"
    );
    assert!(
        left.contains("pr-other") && left.contains("pr-running"),
        "{left}"
    );
    e.docker_ok(&["container", "prune", "-f"]);
    let left = names();
    assert!(
        !left.contains("pr-other") && left.contains("pr-running"),
        "{left}"
    );
    // Nothing left to take: dockerd says null, not [].
    let (code, body) = e.api("POST", "/containers/prune", None);
    assert_eq!(code, 200, "{body}");
    assert!(body["ContainersDeleted"].is_null(), "{body}");
    let (code, body) = e.api(
        "POST",
        "/containers/prune?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["message"], "invalid filter 'nope'");
    e.docker_ok(&["rm", "-f", "pr-running"]);

    e.docker_ok(&["volume", "create", "vp-named"]);
    e.docker_ok(&["run", "--name", "vp-user", "-v", "/anon", "busybox", "true"]);
    e.docker_ok(&["rm", "vp-user"]);
    let deleted = |version: &str| {
        let (code, body) = e.api("POST", &format!("/{version}/volumes/prune"), None);
        assert_eq!(code, 200, "{body}");
        body["VolumesDeleted"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let now = deleted("v1.47");
    assert!(!now.contains(&"vp-named".to_owned()), "{now:?}");
    assert_eq!(now.len(), 1, "the anonymous volume: {now:?}");
    let old = deleted("v1.41");
    assert!(old.contains(&"vp-named".to_owned()), "{old:?}");
}

/// A container whose restart policy brings it back is `restarting` between an exit and its
/// restart: `rm` says to stop it first (dockerd's 409), never half-removes it, and `rm -f`
/// removes it for good.
#[test]
fn removing_a_flapping_container_is_refused_or_forced_cleanly() {
    let e = shared_engine();
    e.busybox();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flapper",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 1",
    ]);
    for _ in 0..15 {
        let err = docker_fails(e, &["rm", "flapper"]);
        assert!(
            err.contains("You cannot remove a restarting container")
                || err.contains("container is running: stop the container before removing"),
            "{err}"
        );
        std::thread::sleep(Duration::from_millis(70));
    }
    e.docker_ok(&["rm", "-f", "flapper"]);
    std::thread::sleep(Duration::from_secs(1));
    let left = e.docker_ok(&["ps", "-a", "--filter", "name=flapper", "-q"]);
    assert!(left.trim().is_empty(), "flapper came back: {left}");
}

/// An exec whose command cannot start exits as dockerd's does: 126, whether the command is
/// not there or not executable (dockerd 20.10 here: `docker exec c nosuch` exits 126 with
/// "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuch\":
/// executable file not found in $PATH: unknown"); a command that runs keeps its own code; a
/// TTY exec's output arrives whole.
#[test]
fn exec_exit_codes_and_output_are_dockerds() {
    let e = shared_engine();
    e.busybox();
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "exec-codes",
        "busybox",
        "sleep",
        "300",
    ]);
    for tty in [false, true] {
        let flags: &[&str] = if tty { &["exec", "-t"] } else { &["exec"] };
        let out = e.docker(&[flags, &["exec-codes", "nosuch"]].concat(), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(126),
            "tty {tty}: {}",
            text(&out.stderr)
        );
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            said.contains("executable file not found"),
            "tty {tty}: {said}"
        );
        let out = e.docker(&[flags, &["exec-codes", "/etc/passwd"]].concat(), LIMIT);
        assert_eq!(
            out.status.code(),
            Some(126),
            "tty {tty}: {}",
            text(&out.stderr)
        );
        let out = e.docker(
            &[flags, &["exec-codes", "sh", "-c", "exit 3"]].concat(),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(3), "tty {tty}");
        let out = e.docker(
            &[flags, &["exec-codes", "echo", "hello out"]].concat(),
            LIMIT,
        );
        assert_eq!(text(&out.stdout).trim_end(), "hello out", "tty {tty}");
    }
    e.docker_ok(&["rm", "-f", "exec-codes"]);
}

/// `HostConfig.Runtime`: unset means the default runtime, `runc` (what clients ask for by
/// habit) is taken, an unknown one is refused with dockerd's words.
#[test]
fn runtimes_as_dockerd_names_them() {
    let e = shared_engine();
    e.busybox();
    let runtime = |name: &str| e.docker_ok(&["inspect", "-f", "{{.HostConfig.Runtime}}", name]);
    e.docker_ok(&["create", "--name", "rt-default", "busybox", "true"]);
    assert_eq!(runtime("rt-default").trim(), "crun");
    e.docker_ok(&[
        "create",
        "--name",
        "rt-runc",
        "--runtime",
        "runc",
        "busybox",
        "echo",
        "ran",
    ]);
    assert_eq!(runtime("rt-runc").trim(), "runc");
    e.docker_ok(&["start", "rt-runc"]);
    e.docker_ok(&["wait", "rt-runc"]);
    assert_eq!(e.docker_ok(&["logs", "rt-runc"]).trim(), "ran");
    let err = docker_fails(e, &["create", "--runtime", "nope", "busybox", "true"]);
    assert!(
        err.contains("unknown or invalid runtime name: nope"),
        "{err}"
    );
    e.docker_ok(&["rm", "rt-default", "rt-runc"]);
}

/// A chosen MAC address is the container's, on the default bridge and on a user network; a
/// malformed one is refused at create. Aliases and DNSNames show what a user network
/// resolves the container by.
#[test]
fn macs_aliases_and_dns_names_as_dockerd() {
    let e = shared_engine();
    e.busybox();
    let mac = "92:d0:c6:0a:29:33";
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--mac-address",
        mac,
        "busybox",
        "cat",
        "/sys/class/net/eth0/address",
    ]);
    assert_eq!(got.trim(), mac);
    e.docker_ok(&["network", "create", "macnet"]);
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "mac-web",
        "--network",
        "macnet",
        "--network-alias",
        "web",
        "--mac-address",
        "92:d0:c6:0a:29:34",
        "busybox",
        "sleep",
        "300",
    ]);
    let got = e.docker_ok(&["exec", "mac-web", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(got.trim(), "92:d0:c6:0a:29:34");
    let shown = e.docker_ok(&[
        "inspect",
        "-f",
        "{{with index .NetworkSettings.Networks \"macnet\"}}{{.MacAddress}} {{.Aliases}} {{.DNSNames}}{{end}}",
        "mac-web",
    ]);
    assert!(shown.starts_with("92:d0:c6:0a:29:34 "), "{shown}");
    assert!(shown.contains("[web]"), "aliases: {shown}");
    assert!(
        shown.contains("mac-web") && shown.contains(" web]"),
        "DNS names: {shown}"
    );
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "macnet",
        "busybox",
        "nslookup",
        "web",
    ]);
    assert!(got.contains("Address"), "{got}");
    let err = docker_fails(
        e,
        &[
            "run",
            "--rm",
            "--mac-address",
            "01:00:5e:00:00:01",
            "busybox",
            "true",
        ],
    );
    assert!(err.to_lowercase().contains("mac address"), "{err}");
    e.docker_ok(&["rm", "-f", "mac-web"]);
    e.docker_ok(&["network", "rm", "macnet"]);
}

/// Attaching to a TTY container over the API: the detach keys, dockerd's default or the ones
/// the client names, close the connection and leave the container running with its terminal
/// (dockerd 20.10 here does exactly this; it watches only a TTY's input, so a container without
/// one is not detached by any keys).
#[test]
fn detach_keys_end_an_attach_and_the_container_runs_on() {
    use std::os::unix::net::UnixStream;
    let e = shared_engine();
    e.busybox();
    e.docker_ok(&["run", "-d", "-it", "--name", "detachable", "busybox", "cat"]);
    for (query, keys) in [
        ("", &[0x10u8, 0x11][..]),
        ("&detachKeys=ctrl-x,y", &[0x18, b'y'][..]),
    ] {
        let mut s = UnixStream::connect(&e.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "POST /containers/detachable/attach?stream=1&stdin=1&stdout=1{query} HTTP/1.1\r\n\
             Host: x\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n"
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut read_until = |s: &mut UnixStream, want: &str, seen: &mut Vec<u8>| {
            while !text(seen).contains(want) {
                let n = s.read(&mut buf).unwrap_or_else(|err| {
                    panic!("waiting for {want:?}: {err}; saw {:?}", text(seen))
                });
                assert!(n > 0, "closed before {want:?}: {:?}", text(seen));
                seen.extend_from_slice(&buf[..n]);
            }
        };
        read_until(&mut s, "\r\n\r\n", &mut seen);
        assert!(text(&seen).starts_with("HTTP/1.1 101"), "{}", text(&seen));
        s.write_all(b"echoed\n").unwrap();
        read_until(&mut s, "echoed\r\necho", &mut seen);
        s.write_all(keys).unwrap();
        // The engine closes the attach; nothing more comes.
        let started = Instant::now();
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => assert!(started.elapsed() < Duration::from_secs(20)),
                Err(err) => panic!("attach{query} not closed by its detach keys: {err}"),
            }
        }
        let running = e.docker_ok(&["inspect", "-f", "{{.State.Running}}", "detachable"]);
        assert_eq!(running.trim(), "true", "detaching stopped the container");
    }
    let (code, body) = e.api(
        "POST",
        "/containers/detachable/attach?stream=1&stdin=1&detachKeys=ctrl-1",
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["message"], "Invalid detach keys (ctrl-1) provided");
    e.docker_ok(&["rm", "-f", "detachable"]);
}

/// `--group-add` by number and by a name from the image's `/etc/group` reaches the process;
/// an unknown name fails the start with runc's words.
#[test]
fn group_add_gives_the_process_its_groups() {
    let e = shared_engine();
    e.busybox();
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--group-add",
        "4242",
        "--group-add",
        "extra",
        "busybox",
        "id",
        "-G",
    ]);
    let groups: Vec<&str> = got.split_whitespace().collect();
    assert!(
        groups.contains(&"4242") && groups.contains(&"2000"),
        "{got}"
    );
    let got = e.docker_ok(&[
        "run",
        "--rm",
        "--user",
        "app",
        "--group-add",
        "4242",
        "busybox",
        "id",
        "-G",
    ]);
    let groups: Vec<&str> = got.split_whitespace().collect();
    assert!(
        groups.contains(&"1000") && groups.contains(&"4242"),
        "{got}"
    );
    let err = docker_fails(
        e,
        &[
            "run",
            "--rm",
            "--group-add",
            "nogroup-here",
            "busybox",
            "true",
        ],
    );
    assert!(err.contains("unable to find group nogroup-here"), "{err}");
}

/// `docker diff` lists what a container added, changed and deleted, sorted by path, and not
/// the files Berth binds into every container; one that changed nothing has none (null).
#[test]
fn diff_lists_what_a_container_changed() {
    let e = shared_engine();
    e.busybox();
    e.docker_ok(&[
        "run",
        "--name",
        "differ",
        "busybox",
        "sh",
        "-c",
        "mkdir /newdir && echo x > /newdir/f && echo more:x:3000: >> /etc/group && rm /etc/passwd",
    ]);
    let got = e.docker_ok(&["diff", "differ"]);
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        [
            "C /etc",
            "C /etc/group",
            "D /etc/passwd",
            "A /newdir",
            "A /newdir/f"
        ],
        "{got}"
    );
    e.docker_ok(&["create", "--name", "untouched", "busybox", "true"]);
    let (code, body) = e.api("GET", "/containers/untouched/changes", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.is_null(), "{body}");
    let (code, _) = e.api("GET", "/containers/nosuch/changes", None);
    assert_eq!(code, 404);
    e.docker_ok(&["rm", "differ", "untouched"]);
}

/// `docker update` on a running container: its limits reach its cgroup at once and show in
/// inspect, the restart policy changes, and an AutoRemove container keeps no restart policy
/// (dockerd's words).
#[test]
fn update_changes_limits_and_the_restart_policy_of_a_live_container() {
    let e = shared_engine();
    e.busybox();
    e.docker_ok(&["run", "-d", "--name", "updated", "busybox", "sleep", "300"]);
    e.docker_ok(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "updated",
    ]);
    let shown = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
        "updated",
    ]);
    assert_eq!(shown.trim(), "67108864 134217728 500000000 50 on-failure:3");
    let cgroup = e.docker_ok(&[
        "exec",
        "updated",
        "cat",
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/cpu.max",
        "/sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(
        cgroup.lines().collect::<Vec<_>>(),
        ["67108864", "50000 100000", "50"],
        "{cgroup}"
    );
    // Only what is given changes.
    e.docker_ok(&["update", "--cpus", "1", "updated"]);
    let shown = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}",
        "updated",
    ]);
    assert_eq!(shown.trim(), "67108864 1000000000 on-failure");
    let err = docker_fails(e, &["update", "--memory", "1k", "updated"]);
    assert!(err.to_lowercase().contains("memory"), "{err}");
    e.docker_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "removable",
        "busybox",
        "sleep",
        "300",
    ]);
    let err = docker_fails(e, &["update", "--restart", "always", "removable"]);
    assert!(
        err.contains(
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        ),
        "{err}"
    );
    e.docker_ok(&["rm", "-f", "updated", "removable"]);
}

/// A known path asked with a method it does not take is dockerd's 404 `page not found` (with
/// a JSON message), never a bare 405.
#[test]
fn wrong_methods_are_pages_not_found() {
    let e = shared_engine();
    for (method, path) in [
        ("GET", "/containers/create"),
        ("POST", "/containers/json"),
        ("PUT", "/v1.41/info"),
    ] {
        let (code, body) = e.api(method, path, None);
        assert_eq!(code, 404, "{method} {path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("page not found")),
            "{method} {path}: {body}"
        );
    }
}
