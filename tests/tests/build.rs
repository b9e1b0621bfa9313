//! `docker build` through the real docker CLI (classic builder, `DOCKER_BUILDKIT=0`) and a real
//! VM: a multi-stage Dockerfile builds and runs; a rebuild with no change uses the cache for
//! every step, and a change to one copied file rebuilds from that step on; `.dockerignore` keeps
//! files out; a syntax error names the line; a COPY from outside the context and a failing RUN
//! are refused with Docker's words.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::{SharedEngine, run_with_limit, shared_engine};

const LIMIT: Duration = Duration::from_secs(300);

fn engine() -> &'static SharedEngine {
    let e = shared_engine();
    e.busybox();
    e
}

fn build(e: &SharedEngine, dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.arg("build")
        .args(extra)
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("DOCKER_CONFIG", &e.docker_config)
        .env_remove("DOCKER_CONTEXT");
    run_with_limit(cmd, LIMIT)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn write(dir: &Path, name: &str, content: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const MULTI_STAGE: &str = r#"ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /src
COPY greeting.txt .
RUN tr a-z A-Z < greeting.txt > shout.txt
FROM busybox
LABEL org.example.built-by=berth
ENV APP_MODE=prod
COPY --from=build /src/shout.txt /app/shout.txt
COPY data/ /app/data/
COPY . /ctx/
RUN echo built > /app/stamp
CMD ["sh", "-c", "cat /app/shout.txt; echo $APP_MODE; cat /app/data/a.txt; ls /ctx"]
"#;

#[test]
fn a_multi_stage_build_runs_and_rebuilds_from_the_cache() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "Dockerfile", MULTI_STAGE);
    write(d, "greeting.txt", "hello\n");
    write(d, "data/a.txt", "first\n");
    write(d, "secret.txt", "do not ship\n");
    write(d, ".dockerignore", "secret.txt\n*.log\n");
    write(d, "noise.log", "x\n");

    let out = build(e, d, &["-t", "built:1"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("Step 1/13 : ARG BASE=busybox"), "{log}");
    assert!(log.contains("Successfully tagged built:1"), "{log}");

    let run = e.docker_ok(&["run", "--rm", "built:1"]);
    assert_eq!(run, "HELLO\nprod\nfirst\nDockerfile\ndata\ngreeting.txt\n");
    let label = e.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.example.built-by\"}}",
        "built:1",
    ]);
    assert_eq!(label.trim(), "berth");

    // No change: every step after each FROM comes from the cache.
    let again = build(e, d, &["-t", "built:1"]);
    assert!(again.status.success(), "{}", text(&again));
    let log = text(&again);
    assert_eq!(log.matches("Using cache").count(), 10, "{log}");

    // One copied file changes: the steps before its COPY are cached, it and those after not.
    write(d, "data/a.txt", "second\n");
    let changed = build(e, d, &["-t", "built:2"]);
    assert!(changed.status.success(), "{}", text(&changed));
    let log = text(&changed);
    let step_of = |n: usize| {
        let start = log.find(&format!("Step {n}/13")).unwrap();
        let end = log[start + 1..]
            .find("Step ")
            .map_or(log.len(), |i| start + 1 + i);
        log[start..end].to_owned()
    };
    assert!(step_of(9).contains("Using cache"), "{log}");
    assert!(!step_of(10).contains("Using cache"), "{log}");
    assert!(!step_of(12).contains("Using cache"), "{log}");
    let run = e.docker_ok(&["run", "--rm", "built:2"]);
    assert!(run.contains("second\n"), "{run}");
    e.docker_ok(&["rmi", "built:1", "built:2"]);
}

#[test]
fn bad_dockerfiles_are_refused_with_the_reason() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "Dockerfile", "FROM busybox\nRUN true\nRUNN false\n");
    let out = build(e, d, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("line 3: unknown instruction: RUNN"),
        "{}",
        text(&out)
    );

    write(d, "Dockerfile", "FROM busybox\nCOPY ../outside /x\n");
    let out = build(e, d, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("forbidden path outside the build context"),
        "{}",
        text(&out)
    );

    write(
        d,
        "Dockerfile",
        "FROM busybox\nRUN echo about to fail; exit 3\n",
    );
    let out = build(e, d, &[]);
    // The docker CLI exits with the failed step's code, which the error stream carries as
    // `errorDetail.code` (as dockerd's classic builder sends it).
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("returned a non-zero code: 3"), "{log}");

    write(d, "Dockerfile", "FROM busybox\nCOPY missing.txt /x\n");
    let out = build(e, d, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("file not found in build context"),
        "{}",
        text(&out)
    );
}

/// A user's first build on a fresh Berth: its base image is not here yet, so the build pulls
/// it and goes on, as dockerd does; a base that no registry has ends the build with the error.
#[test]
fn a_first_build_pulls_its_base_image() {
    let e = engine();
    e.registry().push(
        "library/firstbase",
        "latest",
        &berth_tests::registry::busybox_layers(),
        berth_tests::registry::busybox_config(),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Dockerfile",
        "FROM firstbase\nRUN echo built > /stamp\nCMD [\"cat\", \"/stamp\"]\n",
    );
    let out = build(e, d, &["-t", "first-build"]);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Step 1/3 : FROM firstbase"), "{log}");
    assert!(
        log.contains("Successfully tagged first-build:latest"),
        "{log}"
    );
    assert_eq!(e.docker_ok(&["run", "--rm", "first-build"]), "built\n");
    assert!(
        !e.docker_ok(&["images", "-q", "firstbase"])
            .trim()
            .is_empty()
    );

    write(d, "Dockerfile", "FROM nosuchbase-berth\nRUN true\n");
    let out = build(e, d, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nosuchbase-berth"), "{}", text(&out));
    e.docker_ok(&["rmi", "first-build", "firstbase"]);
}

/// Polls `docker inspect -f FORMAT name` until it prints `want`.
fn wait_inspect(e: &SharedEngine, name: &str, format: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = e.docker_ok(&["inspect", "-f", format, name]);
        if got.trim() == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: {format} is {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn healthchecks_from_the_image_and_from_run_flags_run_in_the_guest() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Dockerfile",
        "FROM busybox\nHEALTHCHECK --interval=1s --timeout=5s --retries=2 CMD test -e /tmp/ok\nCMD [\"sleep\", \"300\"]\n",
    );
    let out = build(e, d, &["-t", "checked:1"]);
    assert!(out.status.success(), "{}", text(&out));
    let hc = e.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck}}",
        "checked:1",
    ]);
    assert!(
        hc.contains(r#""Test":["CMD-SHELL","test -e /tmp/ok"]"#),
        "{hc}"
    );
    assert!(hc.contains(r#""Interval":1000000000"#), "{hc}");

    e.docker_ok(&["run", "-d", "--name", "checked", "checked:1"]);
    wait_inspect(e, "checked", "{{.State.Health.Status}}", "unhealthy");
    e.docker_ok(&["exec", "checked", "touch", "/tmp/ok"]);
    wait_inspect(e, "checked", "{{.State.Health.Status}}", "healthy");
    let ps = e.docker_ok(&["ps", "--filter", "name=checked", "--format", "{{.Status}}"]);
    assert!(ps.trim().ends_with("(healthy)"), "{ps}");
    let streak = e.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Health.FailingStreak}}",
        "checked",
    ]);
    assert_eq!(streak.trim(), "0");

    // docker run's own flags, over an image without a check.
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flagged",
        "--health-cmd",
        "echo probing; exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    wait_inspect(e, "flagged", "{{.State.Health.Status}}", "unhealthy");
    let log = e.docker_ok(&[
        "inspect",
        "-f",
        "{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}",
        "flagged",
    ]);
    assert!(log.starts_with("1 probing"), "{log}");
    e.docker_ok(&["rm", "-f", "checked", "flagged"]);
    e.docker_ok(&["rmi", "checked:1"]);
}

#[test]
fn berth_build_sends_the_context_and_tags() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Dockerfile",
        "FROM busybox\nARG MSG=unset\nRUN echo \"$MSG\" > /msg\nCMD [\"cat\", \"/msg\"]\n",
    );
    // 3 MB that .dockerignore keeps out of what is sent.
    write(d, ".dockerignore", "heavy\n");
    write(d, "heavy/blob", &"x".repeat(3 << 20));
    let path = d.display().to_string();
    let out = e.berth(
        &[
            "build",
            "-t",
            "cli-built:1",
            "-t",
            "cli-built:extra",
            "--build-arg",
            "MSG=from berth",
            &path,
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let sent = text(&out);
    let sent = sent
        .lines()
        .find_map(|l| l.strip_prefix("Sending build context to Berth"))
        .unwrap_or_else(|| panic!("no context size in:\n{sent}"));
    assert!(sent.trim().ends_with("kB"), "sent {sent}");
    assert!(
        text(&out).contains("Successfully tagged cli-built:extra"),
        "{}",
        text(&out)
    );
    assert_eq!(e.docker_ok(&["run", "--rm", "cli-built:1"]), "from berth\n");
    let tags = e.docker_ok(&["images", "cli-built", "--format", "{{.Tag}}"]);
    assert!(tags.contains("1") && tags.contains("extra"), "{tags}");
    let quiet = e.berth(&["build", "-q", &path], LIMIT);
    assert!(
        text(&quiet).trim().starts_with("sha256:"),
        "{}",
        text(&quiet)
    );

    write(d, "Dockerfile", "FROM busybox\nWORKDIR\n");
    let out = e.berth(&["build", &path], LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("line 2"), "{}", text(&out));
    e.docker_ok(&["rmi", "cli-built:1", "cli-built:extra"]);
}

#[test]
fn commit_makes_an_image_of_a_containers_changes() {
    let e = engine();
    e.docker_ok(&[
        "run",
        "--name",
        "to-commit",
        "busybox",
        "sh",
        "-c",
        "echo kept > /hello; rm /etc/group",
    ]);
    let id = e.docker_ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/hello\"]",
        "-c",
        "ENV COMMITTED=yes",
        "-m",
        "by the test",
        "to-commit",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(e.docker_ok(&["run", "--rm", "committed:1"]), "kept\n");
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "committed:1",
        "sh",
        "-c",
        "test -e /etc/group && echo still there; echo $COMMITTED",
    ]);
    assert_eq!(out, "yes\n", "the deletion is part of the layer");

    // A running container is paused for the copy and runs on.
    e.docker_ok(&[
        "run",
        "-d",
        "--name",
        "live-commit",
        "busybox",
        "sh",
        "-c",
        "echo live > /live; sleep 300",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    e.docker_ok(&["commit", "live-commit", "live-commit:1"]);
    assert_eq!(
        e.docker_ok(&["run", "--rm", "live-commit:1", "cat", "/live"]),
        "live\n"
    );
    let state = e.docker_ok(&["inspect", "-f", "{{.State.Status}}", "live-commit"]);
    assert_eq!(state.trim(), "running");

    let out = e.docker(&["commit", "-c", "RUN true", "to-commit", "bad:1"], LIMIT);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out).contains("not a valid change"), "{}", text(&out));
    e.docker_ok(&["rm", "-f", "to-commit", "live-commit"]);
    e.docker_ok(&["rmi", "committed:1", "live-commit:1"]);
}

#[test]
fn the_build_cache_shows_in_system_df_and_prune_frees_what_only_it_kept() {
    let e = engine();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Dockerfile",
        "FROM busybox AS stage\nRUN echo stage-only > /stage.txt\nFROM busybox\nCOPY --from=stage /stage.txt /kept.txt\n",
    );
    let out = build(e, d, &["-t", "pruned:1"]);
    assert!(out.status.success(), "{}", text(&out));
    let cache_count = || -> usize {
        let df = e.docker_ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
        df.lines()
            .find_map(|l| l.strip_prefix("Build Cache "))
            .unwrap_or_else(|| panic!("no build cache line:\n{df}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(cache_count() >= 2);

    // The stage's RUN layer reached no image: the prune deletes it and says how much it freed.
    let pruned = e.docker_ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Deleted build cache objects:"), "{pruned}");
    let freed = pruned
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_else(|| panic!("no total in:\n{pruned}"));
    assert_ne!(freed.trim(), "0B", "{pruned}");
    assert_eq!(cache_count(), 0);

    // The image keeps its layers and runs; a rebuild finds nothing cached.
    assert_eq!(
        e.docker_ok(&["run", "--rm", "pruned:1", "cat", "/kept.txt"]),
        "stage-only\n"
    );
    let again = build(e, d, &["-t", "pruned:1"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(!text(&again).contains("Using cache"), "{}", text(&again));
    e.docker_ok(&["rmi", "pruned:1"]);
}

#[test]
fn a_build_context_over_the_limit_is_refused_while_it_uploads() {
    let e = engine();
    let settings = e.home.join("settings.json");
    let before = std::fs::read(&settings).ok();
    let mut doc: serde_json::Value = before.as_deref().map_or(serde_json::json!({}), |d| {
        serde_json::from_slice(d).unwrap()
    });
    doc["build-context-limit-mib"] = serde_json::json!(1);
    std::fs::write(&settings, doc.to_string()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "Dockerfile", "FROM busybox\nCOPY big /big\n");
    // 4 MiB that does not compress, in a context limited to 1 MiB.
    let mut big = vec![0u8; 4 << 20];
    let mut x = 0x9e37_79b9_u32;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(d.join("big"), &big).unwrap();
    let out = build(e, d, &["-t", "too-big:1"]);
    match before {
        Some(b) => std::fs::write(&settings, b).unwrap(),
        None => std::fs::remove_file(&settings).unwrap(),
    }
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("over 1 MiB"), "{}", text(&out));
    let images = e.docker_ok(&["images", "-q", "too-big:1"]);
    assert!(images.is_empty(), "{images}");
    // Nothing of the upload is left spooled.
    let spooled: Vec<_> = std::fs::read_dir(e.home.join("run"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(spooled.is_empty(), "{spooled:?}");
}

#[test]
fn add_downloads_urls_and_run_flags_need_buildkit() {
    let e = engine();
    let reg = e.registry();
    let (status, _, manifest) = berth_tests::registry::http(
        reg.port,
        "GET",
        "/v2/library/busybox/manifests/latest",
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )],
        b"",
    );
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let url = format!("http://{}/v2/library/busybox/blobs/{config}", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "Dockerfile",
        &format!(
            "FROM busybox\nADD {url} /fetched/config.json\nRUN grep -q diff_ids /fetched/config.json && stat -c %a /fetched/config.json > /mode\nCMD [\"cat\", \"/mode\"]\n"
        ),
    );
    let out = build(e, d, &["-t", "added:1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(e.docker_ok(&["run", "--rm", "added:1"]), "600\n");
    // Downloaded again, unchanged: the step comes from the cache.
    let again = build(e, d, &["-t", "added:1"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches("Using cache").count(),
        3,
        "{}",
        text(&again)
    );

    write(
        d,
        "Dockerfile",
        &format!(
            "FROM busybox\nADD http://{}/v2/none/blobs/sha256:00 /x\n",
            reg.host()
        ),
    );
    let out = build(e, d, &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("ADD failed: GET"), "{}", text(&out));
    write(d, "Dockerfile", &format!("FROM busybox\nCOPY {url} /x\n"));
    let out = build(e, d, &[]);
    assert!(
        text(&out).contains("source can't be a URL for COPY"),
        "{}",
        text(&out)
    );
    write(
        d,
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/c true\n",
    );
    let out = build(e, d, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the --mount option requires BuildKit"),
        "{}",
        text(&out)
    );
    e.docker_ok(&["rmi", "added:1"]);
}
