//! Docker `User` resolution against the container's own `/etc/passwd` and
//! `/etc/group`, reading them without ever leaving the rootfs (symlinks, absolute
//! or relative, are resolved as if the rootfs were `/`).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::SpecError;

/// Largest passwd/group file read (bigger files are truncated).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Symlinks followed while resolving one path, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;
/// Docker's accepted id range.
const MAX_ID: i64 = i32::MAX as i64;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves Docker's User string against the container rootfs's /etc/passwd and
/// /etc/group. Returns (uid, gid, supplementary gids): the supplementary gids are the
/// groups listing the matched user as a member, and only when no group was given
/// explicitly (dockerd's rules). Unknown user name -> "unable to find user NAME: no
/// matching entries in passwd file". Numeric uid not in passwd is fine (gid 0 unless
/// given).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), SpecError> {
    if user.contains('\0') {
        return Err(SpecError::InvalidUser(
            user.into(),
            "it contains a NUL byte".into(),
        ));
    }
    let mut parts = user.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");

    let user_num = parse_id(user, user_arg, "uid")?;
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|text| parse_passwd(&text))
        .unwrap_or_default();

    let matched = passwd.iter().find(|e| match (user_arg, user_num) {
        ("", _) => e.uid == 0,
        (_, Some(n)) => e.uid == n,
        (name, None) => e.name == name,
    });
    let (uid, mut gid, matched_name) = match (matched, user_num) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.as_str())),
        (None, Some(n)) => (n, 0, None),
        (None, None) if user_arg.is_empty() => (0, 0, None),
        (None, None) => return Err(SpecError::UnknownUser(user_arg.to_string())),
    };

    let mut sgids = Vec::new();
    if !group_arg.is_empty() || matched_name.is_some() {
        let groups = read_in_root(rootfs, "etc/group")?
            .map(|text| parse_group(&text))
            .unwrap_or_default();
        if group_arg.is_empty() {
            let name = matched_name.unwrap_or_default();
            sgids = groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid)
                .collect();
        } else {
            let group_num = parse_id(user, group_arg, "gid")?;
            gid = match (
                groups.iter().find(|g| match group_num {
                    Some(n) => g.gid == n,
                    None => g.name == group_arg,
                }),
                group_num,
            ) {
                (Some(g), _) => g.gid,
                (None, Some(n)) => n,
                (None, None) => return Err(SpecError::UnknownGroup(group_arg.to_string())),
            };
        }
    }
    Ok((uid, gid, sgids))
}

/// `GroupAdd`: each entry a gid or a group name from the container's `/etc/group`; an unknown
/// name is an error, as runc's (and so dockerd's) "Unable to find group".
pub fn resolve_groups(rootfs: &Path, names: &[String]) -> Result<Vec<u32>, SpecError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let groups = read_in_root(rootfs, "etc/group")?
        .map(|text| parse_group(&text))
        .unwrap_or_default();
    names
        .iter()
        .map(|name| match parse_id(name, name, "gid")? {
            Some(n) => Ok(n),
            None => groups
                .iter()
                .find(|g| &g.name == name)
                .map(|g| g.gid)
                .ok_or_else(|| SpecError::UnknownGroup(name.clone())),
        })
        .collect()
}

/// `Some(id)` when `arg` is numeric (and in Docker's range), `None` for a name.
fn parse_id(user: &str, arg: &str, what: &str) -> Result<Option<u32>, SpecError> {
    let numeric = !arg.is_empty()
        && arg
            .strip_prefix(['-', '+'])
            .unwrap_or(arg)
            .bytes()
            .all(|b| b.is_ascii_digit())
        && arg.len() > usize::from(arg.starts_with(['-', '+']));
    if !numeric {
        return Ok(None);
    }
    match arg.parse::<i64>() {
        Ok(n) if (0..=MAX_ID).contains(&n) => Ok(Some(n as u32)),
        _ => Err(SpecError::InvalidUser(
            user.into(),
            format!("{what} {arg} is out of range 0..={MAX_ID}"),
        )),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `rel` inside `root` as if `root` were `/`: absolute symlink targets
/// restart at `root`, and `..` never climbs above it. `Ok(None)` if it does not exist.
pub(crate) fn resolve_in_root(root: &Path, rel: &str) -> io::Result<Option<PathBuf>> {
    // Pending components, next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, Path::new(rel));
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp.as_bytes() == b".." {
            current.pop();
            continue;
        }
        let candidate = root.join(&current).join(&comp);
        let md = match fs::symlink_metadata(&candidate) {
            Ok(md) => md,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if md.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other(format!(
                    "too many levels of symbolic links resolving {rel} in {}",
                    root.display()
                )));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                current = PathBuf::new();
            }
            push_components(&mut pending, &target);
        } else {
            current.push(&comp);
        }
    }
    Ok(Some(root.join(current)))
}

fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let comps: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    pending.extend(comps.into_iter().rev());
}

/// Reads a regular file at `rel` inside `root` without leaving it. Missing files,
/// and paths that are not regular files, read as `None`.
fn read_in_root(root: &Path, rel: &str) -> Result<Option<String>, SpecError> {
    let io_err = |path: PathBuf| {
        move |source| SpecError::Io {
            op: "reading",
            path,
            source,
        }
    };
    let Some(path) = resolve_in_root(root, rel).map_err(io_err(root.join(rel)))? else {
        return Ok(None);
    };
    // O_NOFOLLOW: the resolved path has no symlinks left unless the tree changed
    // under us; O_NONBLOCK: a FIFO planted there must not hang the agent.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let md = file.metadata().map_err(io_err(path.clone()))?;
    if !md.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
