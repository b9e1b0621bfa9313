//! Images through the real docker CLI against the Berth engine, its VM and a real local
//! registry: pulls with progress (by host and through the Docker Hub mirror), list, inspect,
//! history, tag, rmi with dockerd's conflict rules, refused bad images, push (pulled back on
//! a fresh engine), save, load and import.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::registry::{Layer, busybox_config, busybox_layers, http, sha256};
use berth_tests::{run_with_limit, shared_engine, spawn_engine};

#[test]
fn pull_by_registry_host_shows_progress_and_lists_the_image() {
    let e = shared_engine();
    let reg = e.registry();
    // A layer no other test pushes, so this pull downloads something.
    let mut layers = busybox_layers();
    layers.push(
        Layer::new()
            .file("multi-test", 0o644, b"only in test/multi")
            .build(),
    );
    let digest = reg.push("test/multi", "v1", &layers, busybox_config());
    let name = format!("{}/test/multi:v1", reg.host());
    let out = e.docker_ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Downloaded newer image for {name}")),
        "{out}"
    );

    let images = e.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"]);
    assert!(
        images.contains(&format!("{}/test/multi:v1", reg.host())),
        "{images}"
    );
    let count = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &name,
    ]);
    assert_eq!(count.trim(), "4");
    let digests = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &name,
    ]);
    assert!(digests.contains(&digest), "{digests}");
    let history = e.docker_ok(&["history", "--format", "{{.CreatedBy}}", &name]);
    assert!(history.contains("berth test layer 3"), "{history}");

    // A second pull finds every layer present.
    let again = e.docker_ok(&["pull", &name]);
    assert!(again.contains("Image is up to date"), "{again}");
}

#[test]
fn docker_hub_names_resolve_through_the_mirror() {
    let e = shared_engine();
    e.registry().push(
        "library/busybox",
        "latest",
        &busybox_layers(),
        busybox_config(),
    );
    let out = e.docker_ok(&["pull", "busybox"]);
    assert!(out.contains("Digest: sha256:"), "{out}");
    let tags = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        "busybox",
    ]);
    assert!(tags.contains("\"busybox:latest\""), "{tags}");
}

#[test]
fn tag_and_rmi_follow_dockerds_conflict_rules() {
    let e = shared_engine();
    let reg = e.registry();
    let mut layers = busybox_layers();
    layers.push(
        Layer::new()
            .file("rmi-test", 0o644, b"unique to this image")
            .build(),
    );
    reg.push("test/rmi", "v1", &layers, busybox_config());
    let name = format!("{}/test/rmi:v1", reg.host());
    e.docker_ok(&["pull", &name]);
    e.docker_ok(&["tag", &name, "rmi-extra:two"]);
    let id = e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "rmi-extra:two"]);
    let id = id.trim();

    // By ID with two names: refused without force.
    let out = e.docker(&["rmi", id], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be forced") && err.contains("referenced in multiple repositories"),
        "{err}"
    );

    // By name: only untags.
    let out = e.docker_ok(&["rmi", "rmi-extra:two"]);
    assert!(out.contains("Untagged: rmi-extra:two"), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    e.docker_ok(&["image", "inspect", &name]);

    // The last name goes: the image and its own layer are deleted.
    let out = e.docker_ok(&["rmi", &name]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    let out = e.docker(&["image", "inspect", &name], Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image"));
}

#[test]
fn layer_escaping_its_snapshot_is_refused_and_nothing_is_recorded() {
    let e = shared_engine();
    let reg = e.registry();
    let mut layers = busybox_layers();
    layers.push(
        Layer::new()
            .raw_file("../../../../etc/berth-escape", b"owned")
            .build(),
    );
    reg.push("test/evil", "v1", &layers, busybox_config());
    let name = format!("{}/test/evil:v1", reg.host());
    let out = e.docker(&["pull", &name], Duration::from_secs(120));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("escapes the snapshot"), "{err}");
    let images = e.docker_ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("test/evil"), "{images}");
}

#[test]
fn layer_whose_content_does_not_match_its_diff_id_is_refused() {
    let e = shared_engine();
    let reg = e.registry();
    let layers = vec![Layer::new().file("a", 0o644, b"real content").build()];
    let fake = vec![format!("sha256:{}", "0".repeat(64))];
    reg.push_with_diff_ids("test/liar", "v1", &layers, busybox_config(), Some(fake));
    let out = e.docker(
        &["pull", &format!("{}/test/liar:v1", reg.host())],
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("digest mismatch"), "{err}");
}

#[test]
fn missing_images_and_unreachable_registries_fail_in_bounded_time() {
    let e = shared_engine();
    let out = e.docker(
        &["pull", &format!("127.0.0.1:{}/test/none:v1", e.registry)],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );

    let start = Instant::now();
    let out = e.docker(
        &["pull", "127.0.0.1:1/nothing/here:v1"],
        Duration::from_secs(90),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "{err}");

    let out = e.docker(&["pull", "Not/Valid"], Duration::from_secs(30));
    assert!(!out.status.success());
}

#[test]
fn api_errors_are_json_with_dockerds_codes() {
    let e = shared_engine();
    let (code, body) = e.api("POST", "/v1.47/images/create", None);
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].is_string());
    let (code, body) = e.api("GET", "/v1.47/images/no-such-image/json", None);
    assert_eq!(code, 404);
    assert!(
        body["message"].as_str().unwrap().contains("No such image"),
        "{body}"
    );
    let (code, _) = e.api("GET", "/v1.47/nonsense", None);
    assert_eq!(code, 404);
}

/// The `TAG: digest: sha256:... size: N` line of a push.
fn pushed_digest(out: &str, tag: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{tag}: digest: ")))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no digest line in:\n{out}"))
        .to_owned()
}

#[test]
fn pushed_images_pull_back_on_a_fresh_engine_with_the_same_digest() {
    let e = shared_engine();
    e.busybox();
    let reg = e.registry();
    // A layer made here (commit) over the pulled busybox layers.
    let name = format!("{}/pushed/app:1", reg.host());
    let _ = e.docker(&["rm", "-f", "push-src"], Duration::from_secs(60));
    e.docker_ok(&[
        "run",
        "--name",
        "push-src",
        "busybox",
        "sh",
        "-c",
        "echo made-here > /greeting",
    ]);
    e.docker_ok(&["commit", "push-src", &name]);
    e.docker_ok(&["rm", "push-src"]);
    let id = e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &name]);

    let out = e.docker_ok(&["push", &name]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/pushed/app]",
            reg.host()
        )),
        "{out}"
    );
    assert!(out.contains("Pushed"), "{out}");
    let digest = pushed_digest(&out, "1");
    // The registry serves that very manifest, naming the image's config.
    let accept = [(
        "Accept",
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    )];
    let (status, _, manifest) = http(reg.port, "GET", "/v2/pushed/app/manifests/1", &accept, b"");
    assert_eq!(status, 200);
    assert_eq!(sha256(&manifest), digest);
    let doc: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(doc["config"]["digest"].as_str(), Some(id.trim()));
    let layers = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        &name,
    ]);
    assert_eq!(
        doc["layers"].as_array().unwrap().len().to_string(),
        layers.trim()
    );
    let digests = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &name,
    ]);
    assert!(digests.contains(&digest), "{digests}");

    // A second push finds every layer there and makes the same manifest.
    let again = e.docker_ok(&["push", &name]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains("Pushed"), "{again}");
    assert_eq!(pushed_digest(&again, "1"), digest);

    // A pulled image pushed unchanged keeps the manifest it was pulled with.
    let (_, _, original) = http(
        reg.port,
        "GET",
        "/v2/library/busybox/manifests/latest",
        &accept,
        b"",
    );
    let copy = format!("{}/pushed/busybox:1", reg.host());
    e.docker_ok(&["tag", "busybox", &copy]);
    let out = e.docker_ok(&["push", &copy]);
    assert_eq!(pushed_digest(&out, "1"), sha256(&original));

    // A tag that does not exist is refused by name.
    let out = e.docker(
        &["push", &format!("{}/pushed/none:1", reg.host())],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("An image does not exist locally"), "{err}");

    // On a fresh BERTH_HOME the image pulls back by tag with the same digest and ID, and runs.
    let home = tempfile::Builder::new()
        .prefix("berth-t")
        .tempdir_in("/tmp")
        .unwrap();
    let config = home.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let (mut engine, socket) = spawn_engine(home.path(), &reg.host());
    let fresh = |args: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_CONTEXT");
        let out = run_with_limit(cmd, Duration::from_secs(180));
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = fresh(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(
        fresh(&["image", "inspect", "--format", "{{.Id}}", &name]),
        id
    );
    assert_eq!(
        fresh(&["run", "--rm", &name, "cat", "/greeting"]),
        "made-here\n"
    );
    let _ = engine.kill();
    let _ = engine.wait();
}

/// The entries of a tar, by name.
fn tar_entries(data: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        out.insert(name, body);
    }
    out
}

/// A tar whose entries are written as given, names unchecked.
fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn save_load_and_import_round_trip_and_bad_archives_load_nothing() {
    let e = shared_engine();
    e.busybox();
    let dir = tempfile::tempdir().unwrap();
    let _ = e.docker(&["rm", "-f", "save-src"], Duration::from_secs(60));
    e.docker_ok(&[
        "run",
        "--name",
        "save-src",
        "busybox",
        "sh",
        "-c",
        "echo saved-content > /saved",
    ]);
    e.docker_ok(&["commit", "save-src", "saved:1"]);
    let id = e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "saved:1"]);

    // Save: a docker-archive and an OCI layout in one tar.
    let file = dir.path().join("saved.tar");
    e.docker_ok(&["save", "-o", file.to_str().unwrap(), "saved:1", "busybox"]);
    let entries = tar_entries(&std::fs::read(&file).unwrap());
    assert!(entries.contains_key("oci-layout"), "{:?}", entries.keys());
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let tags: Vec<&str> = manifest
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["RepoTags"].as_array().unwrap())
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tags, ["saved:1", "busybox:latest"]);
    let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    for (name, body) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            assert_eq!(sha256(body), format!("sha256:{hex}"), "blob {name}");
        }
    }

    // Load brings the removed image back with the same ID, and it runs.
    let rootfs = dir.path().join("rootfs.tar");
    e.docker_ok(&["export", "-o", rootfs.to_str().unwrap(), "save-src"]);
    e.docker_ok(&["rm", "save-src"]);
    e.docker_ok(&["rmi", "saved:1"]);
    let out = e.docker_ok(&["load", "-i", file.to_str().unwrap()]);
    assert!(out.contains("Loaded image: saved:1"), "{out}");
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert_eq!(
        e.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "saved:1"]),
        id
    );
    assert_eq!(
        e.docker_ok(&["run", "--rm", "saved:1", "cat", "/saved"]),
        "saved-content\n"
    );
    // The same through a pipe.
    let out = e.docker_with_input(
        &["load"],
        &std::fs::read(&file).unwrap(),
        Duration::from_secs(180),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Import: a container's filesystem as a one-layer image, with a change applied.
    let out = e.docker_ok(&[
        "import",
        "--change",
        "CMD [\"cat\", \"/saved\"]",
        rootfs.to_str().unwrap(),
        "imported:1",
    ]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let layers = e.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "imported:1",
    ]);
    assert_eq!(layers.trim(), "1");
    assert_eq!(
        e.docker_ok(&["run", "--rm", "imported:1"]),
        "saved-content\n"
    );

    // A member outside the archive refuses the whole load.
    let before = e.docker_ok(&["images", "-q", "--no-trunc"]);
    let evil = dir.path().join("evil.tar");
    std::fs::write(
        &evil,
        raw_tar(&[
            (
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["evil:1"],"Layers":["../../l.tar"]}]"#,
            ),
            ("../../../berth-load-escape", b"x"),
        ]),
    )
    .unwrap();
    let out = e.docker(
        &["load", "-i", evil.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leads outside the archive"), "{err}");

    // A layer with a path escape, its diff ID true, is refused and leaves no image.
    let layer = Layer::new()
        .raw_file("../../../../etc/berth-load-escape", b"owned")
        .build();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    std::fs::write(
        &evil,
        raw_tar(&[
            (
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["evil:2"],"Layers":["l.tar"]}]"#,
            ),
            ("c.json", &config),
            ("l.tar", &layer),
        ]),
    )
    .unwrap();
    let out = e.docker(
        &["load", "-i", evil.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("escapes the snapshot"), "{err}");
    assert_eq!(e.docker_ok(&["images", "-q", "--no-trunc"]), before);
    // Not an archive of images at all.
    std::fs::write(&evil, raw_tar(&[("hello.txt", b"hi")])).unwrap();
    let out = e.docker(
        &["load", "-i", evil.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neither manifest.json nor index.json"),
        "{err}"
    );
}
