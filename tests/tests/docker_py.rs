//! The containers issue's core flows again through docker-py 7 (PyPI `docker`, installed by
//! `scripts/setup.sh` in a venv under ~/.cache/berth): a third-party client must find the
//! same Docker Engine API dockerd serves. The flows themselves are in tests/py/core_flows.py.

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

#[test]
fn docker_py_runs_the_core_flows() {
    let e = shared_engine();
    e.busybox();
    let mut cmd = std::process::Command::new(venv_python());
    cmd.arg(root().join("tests/py/core_flows.py"))
        .env("DOCKER_HOST", format!("unix://{}", e.socket.display()))
        .env("BERTH_IMAGE", "busybox:latest")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY");
    let out = run_with_limit(cmd, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-py flows failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "pull-progress",
        "run-exit-code",
        "exec",
        "get_archive",
        "rmi-conflict",
    ] {
        assert!(
            stdout.split_whitespace().any(|w| w == step),
            "{step} not run: {stdout}"
        );
    }
}
