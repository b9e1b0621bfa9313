//! The containers issue's core flows again through docker-py 7 (PyPI `docker`, installed by
//! `scripts/setup.sh` in a venv under ~/.cache/berth): a third-party client must find the
//! same Docker Engine API dockerd serves. The flows themselves are in tests/py/core_flows.py;
//! the calls docker-py's own integration tests make, beyond the everyday ones, in
//! tests/py/client_compat.py.

use std::time::Duration;

use berth_tests::{root, run_with_limit, shared_engine};

fn venv_python() -> std::path::PathBuf {
    let python = berth_tests::cache_dir().join("venv-docker-py/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (make setup)",
        python.display()
    );
    python
}

/// Runs `tests/py/<script>` against the shared engine and checks that each of `steps` was
/// reported as passed (the script's last line: `passed:` and the checks, spaces as `-`).
fn run_script(script: &str, steps: &[&str]) {
    let e = shared_engine();
    e.busybox();
    let mut cmd = std::process::Command::new(venv_python());
    cmd.arg(root().join("tests/py").join(script))
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("BERTH_IMAGE", "busybox:latest")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY");
    let out = run_with_limit(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in steps {
        assert!(
            stdout.split_whitespace().any(|w| w == *step),
            "{step} not run: {stdout}"
        );
    }
}

#[test]
fn docker_py_runs_the_core_flows() {
    run_script(
        "core_flows.py",
        &[
            "pull-progress",
            "run-exit-code",
            "exec",
            "get_archive",
            "rmi-conflict",
        ],
    );
}

/// Calls as docker-py's own integration tests make them (tests/py/client_compat.py): a TTY
/// exec started without `Tty`, exec sockets and detach keys, attach of an exited container,
/// legacy and network-scoped links, a MAC given at connect, IPv6 networks, IP ranges, `runtime=`, a bad `load`, commit
/// of an exited container, `put_archive` into a volume before the first start, a volume's
/// subpath, and builds with network mode, extra hosts, `cache_from`, `target`, exit codes,
/// stderr and a Dockerfile outside the context. Each answer is dockerd's.
#[test]
fn docker_py_calls_as_its_integration_tests_make_them() {
    run_script(
        "client_compat.py",
        &[
            "tty-exec-framed",
            "exec-detach-keys",
            "attach-tty-line-whole",
            "link-removed",
            "network-link-resolves",
            "ipv6-inside",
            "ipam-range-used",
            "load-error",
            "inspect-empty-fields",
            "image-fields-by-version",
            "put_archive-into-a-volume",
            "volume-subpath",
            "cache_from-only",
            "outside-context-files",
        ],
    );
}
