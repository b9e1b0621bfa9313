//! What keeps the engine serving under load: the descriptor limit raised to what the system
//! allows, and accept loops that neither die nor spin on an error (EMFILE most of all). Owns
//! no listener; each loop uses [`AcceptBackoff`].

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (each published-port connection
/// costs the engine two descriptors). Returns the limit in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

pub use berth_agent_proto::accept::AcceptBackoff;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_to_the_hard_one() {
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(raise_fd_limit(), hard);
    }
}
