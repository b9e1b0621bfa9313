//! Request bodies and query values as the engine's routes parse them, and a container create
//! body checked against an image's defaults as the agent's create does: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = berth_engine::api::parse_body::<serde_json::Value>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_engine::api::system::parse_time(text);
        let _ = berth_engine::api::system::parse_filters(Some(&text.to_owned()));
    }
    if let Ok(body) = serde_json::from_slice::<berth_agent::containers::CreateBody>(data) {
        let image = bollard_stubs::models::ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        };
        let _ = berth_agent::containers::lifecycle::check_create(&body, &image);
    }
});
