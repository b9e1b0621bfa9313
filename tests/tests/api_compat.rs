//! The Docker API as clients call it beyond the everyday verbs (issue 22): every field of
//! `/info` and `/version`. Each check goes through the docker CLI where it has a verb, else a
//! request on the socket, and asserts what dockerd answers. dockerd 20.10's answers were taken
//! from Debian's docker.io 20.10.24 on this machine, not in a swarm.

use std::time::{Duration, Instant};

use berth_tests::shared_engine;

const LIMIT: Duration = Duration::from_secs(120);

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
