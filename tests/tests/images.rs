//! Images through the real docker CLI against the Berth engine, its VM and a real local
//! registry: pulls with progress (by host and through the Docker Hub mirror), list, inspect,
//! history, tag, rmi with dockerd's conflict rules, and refused bad images.

use std::time::{Duration, Instant};

use berth_tests::registry::{Layer, busybox_config, busybox_layers};
use berth_tests::shared_engine;

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
