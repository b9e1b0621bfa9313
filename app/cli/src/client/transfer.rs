//! Moving images in and out of the engine: `tag`, `push` (with the stored login for the
//! registry, a line per layer as the docker CLI shows it), `save` (to a file or stdout), `load` and `import` (from a file or stdin).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use bollard::image::{CreateImageOptions, ImportImageOptions, PushImageOptions, TagImageOptions};
use futures_util::StreamExt;

use super::{CliError, Client, Result};

#[derive(clap::Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    source: String,
    /// TARGET_IMAGE[:TAG]
    target: String,
}

/// `repo:tag` split at the tag (a registry port is not a tag); the tag defaults to latest.
fn split_tag(name: &str) -> (String, String) {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) if !name.contains('@') => (
            name[..name.len() - tag.len() - 1].to_owned(),
            tag.to_owned(),
        ),
        _ => (name.to_owned(), "latest".to_owned()),
    }
}

pub async fn tag(client: &Client, args: TagArgs) -> Result<ExitCode> {
    let (repo, tag) = split_tag(&args.target);
    client
        .docker
        .tag_image(&args.source, Some(TagImageOptions { repo, tag }))
        .await
        .map_err(|e| client.error(e, 1))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository.
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// Suppress verbose output.
    #[arg(short, long)]
    quiet: bool,
    /// NAME[:TAG]
    name: String,
}

pub async fn push(client: &Client, args: PushArgs) -> Result<ExitCode> {
    let (repo, tag) = if args.all_tags {
        if split_tag(&args.name).0 != args.name {
            return Err(CliError::new(125, "tag can't be used with --all-tags/-a"));
        }
        (args.name.clone(), String::new())
    } else {
        split_tag(&args.name)
    };
    if let Some(socket) = client.unix_socket() {
        return push_with_layers(client, &socket, &args, &repo, &tag).await;
    }
    // Over TCP, through bollard, whose push messages carry no layer IDs: whole-image lines.
    let mut stream = client.docker.push_image(
        &repo,
        Some(PushImageOptions { tag: tag.clone() }),
        super::auth::credentials_for(&repo),
    );
    let tty = std::io::stdout().is_terminal() && !args.quiet;
    let mut drawing = false;
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| client.error(e, 1))?;
        if let Some(err) = info.error {
            if drawing {
                println!();
            }
            return Err(CliError::new(1, err));
        }
        if args.quiet {
            continue;
        }
        let status = info.status.unwrap_or_default();
        match status.as_str() {
            "Preparing" | "Waiting" => {}
            "Pushing" if tty => {
                let d = info.progress_detail.unwrap_or_default();
                print!(
                    "\r\x1b[2KPushing {}",
                    info.progress.unwrap_or_else(|| format!(
                        "{}/{}",
                        d.current.unwrap_or(0),
                        d.total.unwrap_or(0)
                    ))
                );
                let _ = std::io::stdout().flush();
                drawing = true;
            }
            "Pushing" => {}
            _ => {
                if drawing {
                    print!("\r\x1b[2K");
                    drawing = false;
                }
                println!("{status}");
            }
        }
    }
    if args.quiet {
        println!("{}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// `push` over the engine's socket, read line by line so each layer's progress shows as the
/// docker CLI draws it.
async fn push_with_layers(
    client: &Client,
    socket: &std::path::Path,
    args: &PushArgs,
    repo: &str,
    tag: &str,
) -> Result<ExitCode> {
    use base64::Engine as _;
    let auth = super::auth::credentials_for(repo)
        .map(|c| {
            serde_json::json!({
                "username": c.username,
                "password": c.password,
                "serveraddress": c.serveraddress,
            })
        })
        .unwrap_or_else(|| serde_json::json!({}));
    let auth = base64::engine::general_purpose::URL_SAFE.encode(auth.to_string());
    let path = format!("/images/{repo}/push?tag={tag}");
    let (status, mut lines) = berth_engine::api::client::json_lines(
        socket,
        "POST",
        &path,
        &[("X-Registry-Auth", auth.as_str())],
    )
    .await
    .map_err(|_| CliError::new(1, super::no_engine(&client.host)))?;
    if status >= 400 {
        return Err(super::refused(&lines.recv().await.unwrap_or_default()));
    }
    let mut view = (!args.quiet).then(|| super::images::ProgressView::new(false));
    while let Some(line) = lines.recv().await {
        if let Some(err) = line["error"].as_str() {
            return Err(CliError::new(1, err));
        }
        if let (Some(view), Some(status)) = (view.as_mut(), line["status"].as_str()) {
            let detail = &line["progressDetail"];
            view.show(
                line["id"].as_str(),
                status,
                detail["current"].as_i64().unwrap_or(0),
                detail["total"].as_i64().unwrap_or(0),
            );
        }
    }
    if args.quiet {
        println!("{}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    #[arg(required = true)]
    images: Vec<String>,
}

pub async fn save(client: &Client, args: SaveArgs) -> Result<ExitCode> {
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::new(1, format!("failed to save image: {e}")))?,
        )),
        None if std::io::stdout().is_terminal() => {
            return Err(CliError::new(
                1,
                "cowardly refusing to save to a terminal. Use the -o flag or redirect",
            ));
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let names: Vec<&str> = args.images.iter().map(String::as_str).collect();
    let mut stream = client.docker.export_images(&names);
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| client.error(e, 1))?;
            out.write_all(&chunk)
                .map_err(|e| CliError::new(1, format!("failed to save image: {e}")))?;
        }
        out.flush()
            .map_err(|e| CliError::new(1, format!("failed to save image: {e}")))
    }
    .await;
    if result.is_err()
        && let Some(path) = &args.output
    {
        drop(out);
        let _ = std::fs::remove_file(path);
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// The whole of `path`, or of stdin for `-` or none.
fn read_input(path: Option<&str>, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        Some(p) if p != "-" => {
            data = std::fs::read(p).map_err(|e| CliError::new(1, format!("{what}: {p}: {e}")))?;
        }
        _ => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::new(
                    1,
                    "requested load from stdin, but stdin is empty",
                ));
            }
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| CliError::new(1, format!("{what}: {e}")))?;
        }
    }
    Ok(data)
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short, long)]
    input: Option<String>,
    /// Suppress the load output.
    #[arg(short, long)]
    quiet: bool,
}

/// The archive at `path` (stdin for `-` or none) as chunks read while they are sent.
fn archive_chunks(
    path: Option<&str>,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
    use tokio::io::AsyncReadExt;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match path {
        Some(p) if p != "-" => Box::new(tokio::fs::File::from_std(
            std::fs::File::open(p).map_err(|e| CliError::new(1, format!("open {p}: {e}")))?,
        )),
        _ if std::io::stdin().is_terminal() => {
            return Err(CliError::new(
                1,
                "requested load from stdin, but stdin is empty",
            ));
        }
        _ => Box::new(tokio::io::stdin()),
    };
    Ok(futures_util::stream::unfold(
        Some(reader),
        |state| async move {
            let mut r = state?;
            let mut buf = vec![0u8; 1 << 20];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), Some(r)))
                }
                Err(e) => Some((Err(e), None)),
            }
        },
    ))
}

/// Sends the archive at `input` to `uri` on the engine's socket as it is read, printing what
/// `field` of each answer line says; an `error` line fails the command.
async fn send_archive(
    client: &Client,
    socket: &std::path::Path,
    input: Option<&str>,
    uri: &str,
    field: &str,
) -> Result<ExitCode> {
    let body = archive_chunks(input)?;
    let (status, mut lines) = berth_engine::api::client::upload_json_lines(
        socket,
        "POST",
        uri,
        &[("Content-Type", "application/x-tar")],
        body,
    )
    .await
    .map_err(|_| CliError::new(1, super::no_engine(&client.host)))?;
    if status >= 400 {
        return Err(super::refused(&lines.recv().await.unwrap_or_default()));
    }
    while let Some(line) = lines.recv().await {
        if let Some(err) = line["error"].as_str() {
            return Err(CliError::new(1, err));
        }
        match line[field].as_str() {
            Some(text) if field == "stream" => print!("{text}"),
            Some(text) => println!("{text}"),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn load(client: &Client, args: LoadArgs) -> Result<ExitCode> {
    if let Some(socket) = client.unix_socket() {
        let uri = format!("/images/load?quiet={}", u8::from(args.quiet));
        return send_archive(client, &socket, args.input.as_deref(), &uri, "stream").await;
    }
    // Over TCP, through bollard, which takes the archive whole.
    let data = read_input(args.input.as_deref(), "open")?;
    let mut stream =
        client
            .docker
            .import_image(ImportImageOptions { quiet: args.quiet }, data.into(), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| client.error(e, 1))?;
        if let Some(err) = info.error {
            return Err(CliError::new(1, err));
        }
        if let Some(text) = info.stream {
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image.
    #[arg(short, long)]
    message: Option<String>,
    /// file|- (a root filesystem tar, plain or compressed)
    file: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

pub async fn import(client: &Client, args: ImportArgs) -> Result<ExitCode> {
    if args.file.contains("://") {
        return Err(CliError::new(
            1,
            "importing from a URL is not supported yet: download the file and import it",
        ));
    }
    let (repo, tag) = match &args.reference {
        Some(r) => split_tag(r),
        None => (String::new(), String::new()),
    };
    if let Some(socket) = client.unix_socket() {
        let q = super::query_value;
        let mut uri = format!("/images/create?fromSrc=-&repo={}&tag={}", q(&repo), q(&tag));
        if let Some(m) = &args.message {
            uri.push_str(&format!("&message={}", q(m)));
        }
        for c in &args.change {
            uri.push_str(&format!("&changes={}", q(c)));
        }
        return send_archive(client, &socket, Some(&args.file), &uri, "status").await;
    }
    // Over TCP, through bollard, which takes the archive whole and has no message.
    if args.message.is_some() {
        return Err(CliError::new(
            1,
            format!("import -m needs a unix or ssh host, not {}", client.host),
        ));
    }
    let data = read_input(Some(&args.file), "open")?;
    let changes: Vec<&str> = args.change.iter().map(String::as_str).collect();
    let mut stream = client.docker.create_image(
        Some(CreateImageOptions {
            from_src: "-".to_owned(),
            repo,
            tag,
            changes,
            ..Default::default()
        }),
        Some(data.into()),
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| client.error(e, 1))?;
        if let Some(err) = info.error {
            return Err(CliError::new(1, err));
        }
        if let Some(status) = info.status {
            println!("{status}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app:v1"),
            ("127.0.0.1:5000/app".into(), "v1".into())
        );
        assert_eq!(split_tag("busybox"), ("busybox".into(), "latest".into()));
    }
}
