//! The engine's handling of what the agent sends: a container document read for its ports,
//! with the bindings kept on the host taking precedence. Whatever the guest writes, the engine
//! errs or opens only what the host's record asks for; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = berth_engine::ports::wanted(&doc);
    let dir = tempfile::tempdir().unwrap();
    let published = berth_engine::published::Published::new(dir.path());
    let asked = serde_json::json!({"HostConfig": {"PortBindings": {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}]}}});
    published.record(ID, &asked).unwrap();
    let bindings = published.bindings(ID, &doc).unwrap();
    assert_eq!(bindings.len(), 1, "the guest's document changed the bindings");
    assert_eq!((bindings[0].container_port, bindings[0].host_port), (80, 8080));
    if let Some(id) = doc["Id"].as_str() {
        let _ = published.bindings(id, &doc);
    }
});
