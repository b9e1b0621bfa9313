//! Path rules for extracting tar archives that a peer sent (a layer, a `docker cp` stream):
//! shared by the agent's unpacker and the CLI's `cp`, so both refuse the same names.

/// Splits a tar path into its components. `.` and empty components (a leading `./`, doubled or
/// trailing slashes) are dropped; an absolute path or any `..` is refused.
pub fn parse_rel_path(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.starts_with(b"/") {
        return Err("absolute path".into());
    }
    let mut comps = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path has a `..` component".into()),
            comp => comps.push(comp),
        }
    }
    Ok(comps)
}

/// Whether a relative symlink target, read from a link whose directory is `depth` levels below
/// the extraction root, climbs above that root.
pub fn climbs_out(depth: usize, target: &[u8]) -> bool {
    let mut depth = depth;
    for comp in target.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_link_targets() {
        assert_eq!(parse_rel_path(b"./a//b/").unwrap(), [b"a", b"b"]);
        assert!(parse_rel_path(b"/etc").is_err());
        assert!(parse_rel_path(b"a/../b").is_err());
        assert!(!climbs_out(1, b"../x"));
        assert!(climbs_out(1, b"../../x"));
        assert!(!climbs_out(0, b"a/../b"));
    }
}
