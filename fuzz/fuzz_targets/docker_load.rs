//! `docker load` archives (plain or compressed tar of a manifest, configs and layers) loaded
//! into a fresh image store: any input is refused or loaded, never a panic, and nothing is
//! written outside the store's directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let store = berth_agent::images::store::ImageStore::open(&dir.path().join("root")).unwrap();
    let src = dir.path().join("archive.tar");
    std::fs::write(&src, data).unwrap();
    let _ = berth_agent::images::archive::load(&store, &src);
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "root" && n != "archive.tar")
        .collect();
    assert!(outside.is_empty(), "written outside the store: {outside:?}");
});
