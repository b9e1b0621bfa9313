//! Every field dockerd writes, even when it is empty: clients index inspect documents
//! (`inspect["HostConfig"]["Privileged"]`) and fail on a missing key where dockerd wrote
//! `false`, `0`, `""` or `null`. The agent's documents leave unset fields out; these fill
//! what is missing with dockerd's empty values (taken from dockerd 20.10's inspect of a plain
//! `docker create busybox`), never overwriting a value.

use std::sync::LazyLock;

use serde_json::{Value, json};

use super::ApiVersion;

/// A container's `Config` and an image's, as dockerd writes them when nothing is set.
fn config() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    })
}

/// dockerd's `HostConfig` of a container created with nothing set.
const HOST_CONFIG: &str = r#"{
    "Binds": null, "ContainerIDFile": "", "NetworkMode": "default", "PortBindings": null,
    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "AutoRemove": false,
    "VolumeDriver": "", "VolumesFrom": null, "CapAdd": null, "CapDrop": null,
    "CgroupnsMode": "private", "Dns": null, "DnsOptions": null, "DnsSearch": null,
    "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private", "Cgroup": "", "Links": null,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
    "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 67108864, "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0,
    "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
    "BlkioWeightDevice": null, "BlkioDeviceReadBps": null, "BlkioDeviceWriteBps": null,
    "BlkioDeviceReadIOps": null, "BlkioDeviceWriteIOps": null, "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
    "CpusetMems": "", "Devices": null, "DeviceCgroupRules": null, "DeviceRequests": null,
    "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0,
    "MemorySwappiness": null, "OomKillDisable": false, "PidsLimit": null, "Ulimits": null,
    "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0
}"#;

fn host_config() -> Value {
    serde_json::from_str(HOST_CONFIG).expect("a JSON constant")
}

/// One network's entry in a container's `NetworkSettings.Networks`.
static ENDPOINT: LazyLock<Value> = LazyLock::new(
    || json!({ "IPAMConfig": null, "Links": null, "Aliases": null, "DriverOpts": null }),
);

/// A container's inspect document.
static CONTAINER: LazyLock<Value> = LazyLock::new(|| {
    let mut container_config = config();
    container_config["Labels"] = json!({});
    json!({
        "ExecIDs": null, "Config": container_config, "HostConfig": host_config(),
        "NetworkSettings": { "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null },
    })
});

/// An image's inspect document; before API 1.45 dockerd also writes `Container` and
/// `ContainerConfig` (empty for images it did not commit).
static IMAGE: LazyLock<Value> = LazyLock::new(
    || json!({ "Config": config(), "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" } }),
);
static IMAGE_BEFORE_1_45: LazyLock<Value> = LazyLock::new(|| {
    let mut image = IMAGE.clone();
    image["Container"] = json!("");
    image["ContainerConfig"] = config();
    image
});

/// Puts into `doc` each key of `defaults` it lacks; objects present in both are filled in
/// turn.
fn fill(doc: &mut Value, defaults: &Value) {
    let (Some(doc), Some(defaults)) = (doc.as_object_mut(), defaults.as_object()) else {
        return;
    };
    for (k, v) in defaults {
        match doc.get_mut(k) {
            None => {
                doc.insert(k.clone(), v.clone());
            }
            Some(have) if v.is_object() => fill(have, v),
            Some(_) => {}
        }
    }
}

/// A container's inspect document.
pub fn container(doc: &mut Value) {
    fill(doc, &CONTAINER);
    container_summary(doc);
}

/// A container of `GET /containers/json` (and of `system df`): its networks' entries.
pub fn container_summary(row: &mut Value) {
    if let Some(nets) = row["NetworkSettings"]["Networks"].as_object_mut() {
        for ep in nets.values_mut() {
            fill(ep, &ENDPOINT);
        }
    }
}

/// An image's inspect document, for a client speaking `version`.
pub fn image(doc: &mut Value, version: ApiVersion) {
    if version < ApiVersion(1, 45) {
        fill(doc, &IMAGE_BEFORE_1_45);
    } else {
        fill(doc, &IMAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_filled_and_values_kept() {
        let mut doc = json!({
            "Config": {"User": "app", "Labels": {"a": "b"}},
            "HostConfig": {"Privileged": true, "RestartPolicy": {"Name": "always"}},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        });
        container(&mut doc);
        assert_eq!(doc["Config"]["User"], "app");
        assert_eq!(doc["Config"]["Labels"], json!({"a": "b"}));
        assert_eq!(doc["Config"]["WorkingDir"], "");
        assert_eq!(doc["HostConfig"]["Privileged"], true);
        assert_eq!(doc["HostConfig"]["CapAdd"], Value::Null);
        assert_eq!(doc["HostConfig"]["RestartPolicy"]["Name"], "always");
        assert_eq!(doc["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 0);
        let ep = &doc["NetworkSettings"]["Networks"]["bridge"];
        assert_eq!(ep["IPAddress"], "172.17.0.2");
        assert!(ep.as_object().unwrap().contains_key("IPAMConfig"));
        assert!(doc.as_object().unwrap().contains_key("ExecIDs"));
    }

    #[test]
    fn images_get_container_config_only_before_1_45() {
        let mut old = json!({"Config": {"Cmd": ["sh"]}});
        image(&mut old, ApiVersion(1, 41));
        assert_eq!(old["Container"], "");
        assert_eq!(old["ContainerConfig"]["Tty"], false);
        assert_eq!(old["Config"]["Cmd"], json!(["sh"]));
        let mut new = json!({});
        image(&mut new, ApiVersion(1, 47));
        assert!(new.get("ContainerConfig").is_none());
        assert_eq!(new["Metadata"]["LastTagTime"], "0001-01-01T00:00:00Z");
    }
}
