//! `berth build`: the context directory as a tar, less what its `.dockerignore` excludes (as
//! the docker CLI leaves it out), sent to the engine's classic builder (`/build`), whose
//! messages print as `docker build` prints them; extra `-t` tags are applied after.

use std::path::Path;
use std::process::ExitCode;

use bollard::image::{BuildImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::{CliError, Client, Result};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable.
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile).
    #[arg(short, long)]
    file: Option<String>,
    /// Set build-time variables (KEY=VALUE).
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Set metadata for the image (key=value).
    #[arg(long = "label")]
    label: Vec<String>,
    /// Do not use the cache.
    #[arg(long)]
    no_cache: bool,
    /// Set the target build stage.
    #[arg(long)]
    target: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// The build context: a directory.
    path: String,
}

/// The context directory as an uncompressed tar, paths relative to it, links kept as links,
/// without what `.dockerignore` excludes (the Dockerfile and `.dockerignore` always go). An
/// ignored directory is not even read unless an exception (`!pattern`) may keep something in
/// it.
pub fn context_tar(dir: &Path, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    use berth_agent_proto::dockerignore;
    fn walk(
        b: &mut tar::Builder<Vec<u8>>,
        root: &Path,
        dir: &Path,
        rules: &[(String, bool)],
        keep: &[&str],
    ) -> std::io::Result<()> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let out = dockerignore::ignored(rules, &rel) && !keep.contains(&rel.as_str());
            if std::fs::symlink_metadata(&path)?.is_dir() {
                if out && !dockerignore::has_exceptions(rules) {
                    continue;
                }
                b.append_dir(&rel, &path)?;
                walk(b, root, &path, rules, keep)?;
            } else if !out {
                b.append_path_with_name(&path, &rel)?;
            }
        }
        Ok(())
    }
    let rules = std::fs::read_to_string(dir.join(".dockerignore"))
        .map(|t| dockerignore::rules(&t))
        .unwrap_or_default();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    walk(&mut b, dir, dir, &rules, &[dockerfile, ".dockerignore"])?;
    b.into_inner()
}

pub async fn build(client: &Client, args: BuildArgs) -> Result<ExitCode> {
    let dir = Path::new(&args.path);
    if !dir.is_dir() {
        return Err(CliError::new(
            1,
            format!("unable to prepare context: path {:?} not found", args.path),
        ));
    }
    let dockerfile = match &args.file {
        // -f names a file; the builder wants it relative to the context.
        Some(f) => {
            let p = Path::new(f);
            let rel = std::fs::canonicalize(p)
                .ok()
                .zip(std::fs::canonicalize(dir).ok())
                .and_then(|(f, d)| f.strip_prefix(d).ok().map(|r| r.display().to_string()));
            rel.ok_or_else(|| {
                CliError::new(
                    1,
                    format!("the Dockerfile ({f}) must be within the build context"),
                )
            })?
        }
        None => "Dockerfile".to_owned(),
    };
    let tar = context_tar(dir, &dockerfile)
        .map_err(|e| CliError::new(1, format!("reading the context: {e}")))?;
    if !args.quiet {
        println!(
            "Sending build context to Berth  {}",
            super::format::human_size(tar.len() as f64)
        );
    }
    let options = BuildImageOptions {
        dockerfile,
        t: args.tag.first().cloned().unwrap_or_default(),
        nocache: args.no_cache,
        rm: true,
        buildargs: super::kv(&args.build_arg),
        labels: super::kv(&args.label),
        target: args.target.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut stream = client.docker.build_image(options, None, Some(tar.into()));
    let mut id = None;
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| client.error(e, 1))?;
        if let Some(err) = msg.error {
            return Err(CliError::new(1, err));
        }
        if let Some(aux) = msg.aux {
            id = aux.id;
        }
        if let Some(text) = msg.stream
            && !args.quiet
        {
            print!("{text}");
        }
    }
    let id = id.ok_or_else(|| CliError::new(1, "the build ended without an image"))?;
    for t in args.tag.iter().skip(1) {
        let (repo, tag) = match t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
            Some((r, tag)) => (r.to_owned(), tag.to_owned()),
            None => (t.clone(), "latest".to_owned()),
        };
        client
            .docker
            .tag_image(&id, Some(TagImageOptions { repo, tag }))
            .await
            .map_err(|e| client.error(e, 1))?;
        if !args.quiet {
            println!("Successfully tagged {t}");
        }
    }
    if args.quiet {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_leaves_out_what_dockerignore_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, data) in [
            ("Dockerfile", "FROM busybox\n"),
            (
                ".dockerignore",
                "node_modules\n*.log\nDockerfile\nlogs\n!logs/keep.txt\n",
            ),
            ("node_modules/dep/index.js", "x"),
            ("a.log", "x"),
            ("src/main.rs", "x"),
            ("logs/drop.txt", "x"),
            ("logs/keep.txt", "x"),
        ] {
            let p = d.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let tar = context_tar(d, "Dockerfile").unwrap();
        let mut names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| e.path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "logs/keep.txt",
                "src/main.rs"
            ]
        );
    }
}
