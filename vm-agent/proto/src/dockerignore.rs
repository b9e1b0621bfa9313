//! `.dockerignore`: its rules and Docker's matching (`*`, `?`, `[...]` within a path component,
//! `**` across components, `!` exceptions, later rules winning). Shared by the guest's builder,
//! which leaves ignored files out of the unpacked context, and by `berth build`, which leaves
//! them out of the context it sends, as the docker CLI does.

/// `path` made plain and rooted: `a/./b/../c` is `/a/c`; `..` stops at the root.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Whether an exception (`!pattern`) is among `rules`: then an ignored directory may still
/// hold files to keep, and must be looked into.
pub fn has_exceptions(rules: &[(String, bool)]) -> bool {
    rules.iter().any(|(_, excluded)| !excluded)
}

/// Matches `name` against a `.dockerignore`-style glob: `*`, `?`, `[...]` within a path
/// component, `**` across components.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=n.len()).any(|i| (i == 0 || n[i - 1] == b'/') && m(rest, &n[i..]))
                    || m(rest, n)
            }
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && n[0] != b'/' && m(p, &n[1..])),
            (Some(b'?'), Some(&c)) if c != b'/' => m(&p[1..], &n[1..]),
            (Some(b'['), Some(&c)) => match p.iter().position(|&x| x == b']') {
                Some(end) => {
                    let set = &p[1..end];
                    let (neg, set) = match set.first() {
                        Some(b'^' | b'!') => (true, &set[1..]),
                        _ => (false, set),
                    };
                    let mut hit = false;
                    let mut i = 0;
                    while i < set.len() {
                        if i + 2 < set.len() && set[i + 1] == b'-' {
                            hit |= set[i] <= c && c <= set[i + 2];
                            i += 3;
                        } else {
                            hit |= set[i] == c;
                            i += 1;
                        }
                    }
                    hit != neg && m(&p[end + 1..], &n[1..])
                }
                None => false,
            },
            (Some(&a), Some(&b)) => a == b && m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), name.as_bytes())
}

/// `.dockerignore` rules: (pattern, excluded); later rules win, `!` re-includes.
pub fn rules(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (p, excluded) = match l.strip_prefix('!') {
                Some(p) => (p.trim(), false),
                None => (l, true),
            };
            let p = clean(&format!("/{p}"));
            (p.trim_start_matches('/').to_owned(), excluded)
        })
        .filter(|(p, _)| !p.is_empty())
        .collect()
}

/// Whether `rel` (or a directory above it) is excluded by `rules`.
pub fn ignored(rules: &[(String, bool)], rel: &str) -> bool {
    let mut out = false;
    for (pattern, excluded) in rules {
        let mut prefix = String::new();
        let mut hit = false;
        for c in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            if glob(pattern, &prefix) {
                hit = true;
                break;
            }
        }
        if hit {
            out = *excluded;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_ignore_rules_as_docker() {
        assert!(glob("*.md", "README.md"));
        assert!(!glob("*.md", "docs/a.md"));
        assert!(glob("**/*.md", "docs/a.md"));
        assert!(glob("**/*.md", "a.md"));
        assert!(glob("te?t", "test"));
        assert!(glob("[a-c]x", "bx"));
        let rules = rules("# comment\nsecret.txt\nlogs\n*.tmp\n!keep.tmp\n");
        assert!(ignored(&rules, "secret.txt"));
        assert!(ignored(&rules, "logs/today.log"), "a directory's contents");
        assert!(ignored(&rules, "x.tmp"));
        assert!(!ignored(&rules, "keep.tmp"));
        assert!(!ignored(&rules, "src/main.rs"));
    }
}
