//! `cp`: files between a container and the host, through the engine's archive API, with the
//! docker CLI's rules for where a copy lands: into an existing directory, else as the named
//! path (its parent must exist); `-` streams a tar on stdin or stdout.

use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use bollard::container::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;

use super::format::human_size;
use super::{CliError, Client, Result};

#[derive(clap::Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar on stdin)
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar on stdout)
    dest: String,
}

/// `CONTAINER:PATH` as (container, path); a host path (absolute, `.`-relative or without a
/// colon) as (None, path).
fn split_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

fn fail(message: impl Into<String>) -> CliError {
    CliError::new(1, message)
}

/// The last component of a path (`/a/b/` is `b`), `.` for the root.
fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map_or_else(|| ".".into(), |n| n.to_string_lossy().into_owned())
}

pub async fn cp(client: &Client, args: CpArgs) -> Result<ExitCode> {
    match (split_arg(&args.src), split_arg(&args.dest)) {
        ((Some(_), _), (Some(_), _)) => Err(fail("copying between containers is not supported")),
        ((None, _), (None, _)) => Err(fail("must specify at least one container source")),
        ((Some(c), path), (None, dest)) => from_container(client, &args, c, path, dest).await,
        ((None, src), (Some(c), path)) => to_container(client, &args, src, c, path).await,
    }
}

async fn from_container(
    client: &Client,
    args: &CpArgs,
    container: &str,
    path: &str,
    dest: &str,
) -> Result<ExitCode> {
    let mut stream = client.docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.map_err(|e| client.error(e, 1))?);
    }
    if dest == "-" {
        std::io::stdout()
            .write_all(&tar)
            .map_err(|e| fail(format!("writing to stdout: {e}")))?;
        return Ok(ExitCode::SUCCESS);
    }
    let dest_path = Path::new(dest);
    // Into an existing directory as is; otherwise the copy's top entry takes the dest's name.
    let (dir, rename) = if dest_path.is_dir() {
        (dest_path.to_path_buf(), None)
    } else {
        let parent = match dest_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(fail(format!("no such directory: {}", parent.display())));
        }
        (parent, Some(base_name(dest)))
    };
    let size = extract(&tar, &dir, rename.as_deref())?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!("Successfully copied {} to {dest}", human_size(size as f64));
    }
    Ok(ExitCode::SUCCESS)
}

/// Unpacks `tar` into `dir`, the first component of each entry replaced by `rename`; returns
/// the bytes written. Entries that would leave `dir` are refused.
fn extract(tar: &[u8], dir: &Path, rename: Option<&str>) -> Result<u64> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut size = 0;
    let bad = |e: std::io::Error| fail(format!("extracting the copy: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let mut parts = path
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .peekable();
        let target = match (rename, parts.peek()) {
            (Some(name), Some(_)) => {
                parts.next();
                std::iter::once(Component::Normal(name.as_ref()))
                    .chain(parts)
                    .collect::<PathBuf>()
            }
            _ => parts.collect(),
        };
        size += entry.header().size().unwrap_or(0);
        if !unpack_entry(&mut entry, dir, &target)? {
            return Err(fail(format!(
                "refusing {}: it leads outside {}",
                path.display(),
                dir.display()
            )));
        }
    }
    Ok(size)
}

/// Unpacks one entry as `dir/target`; false when that would lead outside `dir`.
fn unpack_entry<R: Read>(entry: &mut tar::Entry<'_, R>, dir: &Path, target: &Path) -> Result<bool> {
    {
        if target
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Ok(false);
        }
        if target.as_os_str().is_empty() {
            return Ok(true);
        }
        let full = dir.join(target);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
            // A symlink already in the tree must not carry the copy elsewhere.
            let real = parent
                .canonicalize()
                .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
            let root = dir
                .canonicalize()
                .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            if !real.starts_with(&root) {
                return Ok(false);
            }
        }
        entry
            .unpack(&full)
            .map_err(|e| fail(format!("{}: {e}", full.display())))?;
        Ok(true)
    }
}

async fn to_container(
    client: &Client,
    args: &CpArgs,
    src: &str,
    container: &str,
    path: &str,
) -> Result<ExitCode> {
    let path = if path.is_empty() { "/" } else { path };
    if src == "-" {
        let mut tar = Vec::new();
        std::io::stdin()
            .read_to_end(&mut tar)
            .map_err(|e| fail(format!("reading stdin: {e}")))?;
        upload(client, args, container, path, tar).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let meta = if args.follow_link {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(|e| fail(format!("lstat {src}: {e}")))?;
    let (size, into_dir) = pack(src, &base_name(src), args.follow_link)?;
    // Into the directory `path` names; failing that, as `path` itself in its parent.
    let first = upload(client, args, container, path, into_dir).await;
    let done = match first {
        Ok(()) => Ok(()),
        Err(e)
            if !path.ends_with('/')
                && (e.message.contains("not a directory")
                    || e.message.contains("Could not find")) =>
        {
            if meta.is_dir() && e.message.contains("not a directory") {
                return Err(fail(format!(
                    "cannot overwrite non-directory \"{path}\" with directory \"{src}\""
                )));
            }
            let trimmed = path.trim_end_matches('/');
            let parent = match trimmed.rsplit_once('/') {
                Some(("", _)) | None => "/",
                Some((p, _)) => p,
            };
            let (_, renamed) = pack(src, &base_name(trimmed), args.follow_link)?;
            upload(client, args, container, parent, renamed).await
        }
        Err(e) => Err(e),
    };
    done?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {container}:{path}",
            human_size(size as f64)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A tar of the host path `src` under the name `name`; returns the bytes of file content and
/// the tar.
fn pack(src: &str, name: &str, follow: bool) -> Result<(u64, Vec<u8>)> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(follow);
    let bad = |e: std::io::Error| fail(format!("reading {src}: {e}"));
    let meta = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .map_err(bad)?;
    let size = if meta.is_dir() {
        b.append_dir_all(name, src).map_err(bad)?;
        dir_bytes(Path::new(src))
    } else {
        b.append_path_with_name(src, name).map_err(bad)?;
        meta.len()
    };
    Ok((size, b.into_inner().map_err(bad)?))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

async fn upload(
    client: &Client,
    args: &CpArgs,
    container: &str,
    path: &str,
    tar: Vec<u8>,
) -> Result<()> {
    if args.archive {
        // bollard's upload has no copyUIDGID: the engine's socket is asked directly.
        let socket = client.unix_socket().ok_or_else(|| {
            fail(format!(
                "cp -a needs a unix or ssh host, not {}",
                client.host
            ))
        })?;
        let uri = format!(
            "/containers/{}/archive?path={}&copyUIDGID=1",
            super::query_value(container),
            super::query_value(path)
        );
        let (status, doc) = berth_engine::api::client::request_bytes(
            &socket,
            "PUT",
            &uri,
            "application/x-tar",
            tar,
        )
        .await
        .map_err(|_| fail(super::no_engine(&client.host)))?;
        if status >= 300 {
            return Err(super::refused(&doc));
        }
        return Ok(());
    }
    client
        .docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: path.to_owned(),
                no_overwrite_dir_non_dir: String::new(),
            }),
            tar.into(),
        )
        .await
        .map_err(|e| client.error(e, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_the_docker_cli_does() {
        assert_eq!(split_arg("web:/etc/hosts"), (Some("web"), "/etc/hosts"));
        assert_eq!(split_arg("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split_arg("./x:y"), (None, "./x:y"));
        assert_eq!(split_arg("file.txt"), (None, "file.txt"));
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(crate::client::query_value("/tmp/a b&c"), "/tmp/a%20b%26c");
    }

    #[test]
    fn copies_land_under_the_new_name_and_never_outside() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), b"data").unwrap();
        let (_, tar) = pack(src.to_str().unwrap(), "src", false).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        extract(&tar, &out, Some("renamed")).unwrap();
        assert_eq!(std::fs::read(out.join("renamed/sub/f")).unwrap(), b"data");

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..8].copy_from_slice(b"x/../../");
        h.as_gnu_mut().unwrap().name[8..14].copy_from_slice(b"escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let evil = b.into_inner().unwrap();
        assert!(extract(&evil, &out, None).is_err());
        assert!(!dir.path().join("escape").exists());
    }
}
