//! `docker cp` into a container: a tar from the client unpacked into a directory. Entries that
//! would leave it are refused; nothing appears beside it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("tempdir");
    let dest = base.path().join("dest");
    std::fs::create_dir(&dest).expect("dest");
    let _ = berth_agent::containers::archive::unpack(data, &dest, false);
    let beside: Vec<_> = std::fs::read_dir(base.path())
        .expect("read base")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("dest")], "an entry escaped");
});
