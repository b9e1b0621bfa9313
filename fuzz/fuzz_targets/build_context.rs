//! What a build context brings besides its tar (which `layer_unpack` covers): the Dockerfile
//! and the `.dockerignore` rules, parsed and applied as the agent's builder does. Errors, never
//! panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = berth_agent::build::dockerfile::parse(text);
    let rules = berth_agent_proto::dockerignore::rules(text);
    let _ = berth_agent_proto::dockerignore::has_exceptions(&rules);
    for line in text.lines().take(16) {
        let _ = berth_agent_proto::dockerignore::ignored(&rules, line);
        let _ = berth_agent_proto::dockerignore::clean(line);
    }
});
