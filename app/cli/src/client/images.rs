//! Image verbs: `images`, `pull` (a bar per layer on a terminal, the status lines otherwise),
//! `rmi`, and `version`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bollard::image::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use futures_util::StreamExt;

use super::format::{Row, ago, human_size, short_id};
use super::{CliError, Client, Result};

const IMAGE_FIELDS: [(&str, &str); 7] = [
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
];
const IMAGES_DEFAULT: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images).
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Filter output based on conditions provided.
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a template.
    #[arg(long)]
    format: Option<String>,
    /// Print the engine's documents as a JSON array, for scripts.
    #[arg(long, conflicts_with_all = ["format", "quiet"])]
    json: bool,
    /// Only images whose repository matches.
    repository: Option<String>,
}

pub async fn images(client: &Client, args: ImagesArgs) -> Result<ExitCode> {
    let template = super::template(args.format.as_deref(), IMAGES_DEFAULT, &IMAGE_FIELDS)?;
    let mut filters = super::filters(&args.filter)?;
    if let Some(repo) = &args.repository {
        filters
            .entry("reference".into())
            .or_default()
            .push(repo.clone());
    }
    let list = client
        .docker
        .list_images(Some(ListImagesOptions::<String> {
            all: args.all,
            filters,
            ..Default::default()
        }))
        .await
        .map_err(|e| client.error(e, 1))?;
    if args.json {
        return super::print_json(&list);
    }
    let mut out = std::io::stdout().lock();
    let mut rows: Vec<Row> = Vec::new();
    for i in &list {
        let id = if args.no_trunc {
            i.id.clone()
        } else {
            short_id(&i.id)
        };
        let digest = i
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map_or("<none>".to_owned(), |(_, d)| d.to_owned());
        let mut tags: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .map(|t| {
                let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
                (repo.to_owned(), tag.to_owned())
            })
            .collect();
        // As the docker CLI: a repository known only by digest gets a row of its own, after
        // the tags; an image with neither shows <none> <none>.
        let mut digest_only: Vec<String> = Vec::new();
        for d in &i.repo_digests {
            if let Some((repo, _)) = d.split_once('@')
                && !tags.iter().any(|(r, _)| r == repo)
                && !digest_only.iter().any(|r| r == repo)
            {
                digest_only.push(repo.to_owned());
            }
        }
        tags.extend(digest_only.into_iter().map(|r| (r, "<none>".to_owned())));
        if tags.is_empty() {
            tags.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in tags {
            let field = |name: &'static str, value: String| {
                let header = IMAGE_FIELDS
                    .iter()
                    .find(|(f, _)| *f == name)
                    .map_or("", |f| f.1);
                (name, header, value)
            };
            rows.push(vec![
                field("Repository", repo),
                field("Tag", tag),
                field("Digest", digest.clone()),
                field("ID", id.clone()),
                field("CreatedSince", ago(i.created)),
                field("CreatedAt", i.created.to_string()),
                field("Size", human_size(i.size as f64)),
            ]);
        }
    }
    if args.quiet {
        // One ID per row, as the docker CLI: an image with two tags shows twice.
        for row in &rows {
            let _ = writeln!(out, "{}", row[3].2);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _ = out.write_all(template.render(&rows).as_bytes());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct PullArgs {
    /// Suppress verbose output.
    #[arg(short, long)]
    quiet: bool,
    image: String,
}

/// "busybox" → ("busybox", "latest"); a digest keeps its `@`.
fn split(reference: &str) -> (String, String) {
    if reference.contains('@') {
        return (reference.to_owned(), String::new());
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "latest".to_owned()),
    }
}

/// The docker CLI's progress bar: `[=====>     ]  1.2MB/4.3MB`.
fn bar(current: i64, total: i64) -> String {
    if total <= 0 {
        return human_size(current as f64);
    }
    let width = 50;
    let filled = ((current.min(total) as f64 / total as f64) * width as f64) as usize;
    let mut b = "=".repeat(filled);
    if filled < width {
        b.push('>');
        b.push_str(&" ".repeat(width - filled - 1));
    }
    format!(
        "[{b}]  {}/{}",
        human_size(current as f64),
        human_size(total as f64)
    )
}

/// The engine's pull of `image:tag`, sending the stored login for its registry.
fn start_pull<'a>(
    client: &'a Client,
    image: &str,
    tag: &str,
) -> impl futures_util::Stream<
    Item = std::result::Result<bollard::models::CreateImageInfo, bollard::errors::Error>,
> + 'a {
    client.docker.create_image(
        Some(CreateImageOptions::<String> {
            from_image: image.to_owned(),
            tag: tag.to_owned(),
            ..Default::default()
        }),
        None,
        super::auth::credentials_for(image),
    )
}

/// Pulls `reference` printing nothing (`pull -q`).
async fn pull_quietly(client: &Client, reference: &str) -> Result<()> {
    let (image, tag) = split(reference);
    let mut stream = start_pull(client, &image, &tag);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| client.error(e, 1))?;
        if let Some(err) = info.error {
            return Err(CliError::new(
                1,
                format!("Error response from daemon: {err}"),
            ));
        }
    }
    Ok(())
}

/// Progress of a pull or push as the docker CLI draws it: on a terminal, one line per layer
/// redrawn in place; otherwise the status lines.
pub struct ProgressView {
    tty: bool,
    out: Box<dyn Write>,
    lines: Vec<String>,
}

impl ProgressView {
    /// Drawn on stderr when `to_stderr`, else on stdout.
    pub fn new(to_stderr: bool) -> Self {
        let (tty, out): (bool, Box<dyn Write>) = if to_stderr {
            (std::io::stderr().is_terminal(), Box::new(std::io::stderr()))
        } else {
            (std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
        };
        ProgressView {
            tty,
            out,
            lines: Vec::new(),
        }
    }

    /// One plain line.
    pub fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// One progress message: about layer `id`, or the whole image when `id` is empty.
    pub fn show(&mut self, id: Option<&str>, status: &str, current: i64, total: i64) {
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            self.line(status);
            return;
        };
        let text = if self.tty && total > 0 {
            format!("{id}: {status} {}", bar(current, total))
        } else {
            format!("{id}: {status}")
        };
        let prefix = format!("{id}: ");
        match self.lines.iter().position(|l| l.starts_with(&prefix)) {
            Some(i) if self.tty => {
                // Up to the layer's line, rewrite it, back down.
                let up = self.lines.len() - i;
                let _ = write!(self.out, "\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B");
                self.lines[i] = text;
            }
            Some(_) if total > 0 => {}
            found => {
                let _ = writeln!(self.out, "{text}");
                if found.is_none() {
                    self.lines.push(text);
                }
            }
        }
        let _ = self.out.flush();
    }
}

/// Pulls `reference`, drawing progress on `stderr` when `to_stderr` (as `run` does) else on
/// stdout: on a terminal, one line per layer redrawn in place; otherwise the status lines.
pub async fn pull_to(client: &Client, reference: &str, to_stderr: bool) -> Result<()> {
    let (image, tag) = split(reference);
    let mut stream = start_pull(client, &image, &tag);
    let mut view = ProgressView::new(to_stderr);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| client.error(e, 1))?;
        if let Some(err) = info.error {
            return Err(CliError::new(
                1,
                format!("Error response from daemon: {err}"),
            ));
        }
        let detail = info.progress_detail.unwrap_or_default();
        view.show(
            info.id.as_deref(),
            &info.status.unwrap_or_default(),
            detail.current.unwrap_or(0),
            detail.total.unwrap_or(0),
        );
    }
    let full = if tag.is_empty() {
        image
    } else {
        format!("{image}:{tag}")
    };
    let qualified = if full
        .split('/')
        .next()
        .is_some_and(|h| h.contains('.') || h.contains(':'))
        && full.contains('/')
    {
        full
    } else if full.contains('/') {
        format!("docker.io/{full}")
    } else {
        format!("docker.io/library/{full}")
    };
    if !to_stderr {
        view.line(&qualified);
    }
    Ok(())
}

pub async fn pull(client: &Client, args: PullArgs) -> Result<ExitCode> {
    if args.quiet {
        pull_quietly(client, &args.image).await?;
        println!("{}", args.image);
    } else {
        pull_to(client, &args.image, false).await?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RmiArgs {
    /// Force removal of the image.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

pub async fn rmi(client: &Client, args: RmiArgs) -> Result<ExitCode> {
    let mut failed = false;
    for name in &args.images {
        match client
            .docker
            .remove_image(
                name,
                Some(RemoveImageOptions {
                    force: args.force,
                    noprune: false,
                }),
                None,
            )
            .await
        {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("{}", client.error(e, 1).message);
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `version`: this client and the engine it reaches.
pub async fn version(client: &Client) -> Result<ExitCode> {
    println!("Client: berth");
    println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:       {}", bollard::API_DEFAULT_VERSION);
    println!(
        " OS/Arch:           {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!(" Context:           {}", client.host);
    let v = client
        .docker
        .version()
        .await
        .map_err(|e| client.error(e, 1))?;
    println!();
    println!("Server: {}", v.platform.map(|p| p.name).unwrap_or_default());
    println!(" Engine:");
    println!("  Version:          {}", v.version.unwrap_or_default());
    println!(
        "  API version:      {} (minimum version {})",
        v.api_version.unwrap_or_default(),
        v.min_api_version.unwrap_or_default()
    );
    println!(
        "  OS/Arch:          {}/{}",
        v.os.unwrap_or_default(),
        v.arch.unwrap_or_default()
    );
    println!(
        "  Kernel Version:   {}",
        v.kernel_version.unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// `berth info`: the engine's summary as `docker info` prints its Server part, or the
/// whole document with `--format '{{json .}}'`.
pub async fn info(client: &Client, format: Option<&str>) -> Result<ExitCode> {
    let i = client.docker.info().await.map_err(|e| client.error(e, 1))?;
    match format {
        None => {}
        Some("{{json .}}" | "json") => {
            println!("{}", serde_json::to_string(&i).unwrap_or_default());
            return Ok(ExitCode::SUCCESS);
        }
        Some(other) => {
            return Err(CliError::new(
                125,
                format!("info --format {other:?}: only {{{{json .}}}} for now"),
            ));
        }
    }
    let n = |v: Option<i64>| v.unwrap_or(0);
    println!("Client: berth");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Context:    {}", client.host);
    println!();
    println!("Server:");
    println!(" Containers: {}", n(i.containers));
    println!("  Running: {}", n(i.containers_running));
    println!("  Paused: {}", n(i.containers_paused));
    println!("  Stopped: {}", n(i.containers_stopped));
    println!(" Images: {}", n(i.images));
    println!(" Server Version: {}", i.server_version.unwrap_or_default());
    println!(" Storage Driver: {}", i.driver.unwrap_or_default());
    println!(
        " Cgroup Version: {}",
        i.cgroup_version.map(|v| v.to_string()).unwrap_or_default()
    );
    println!(" Kernel Version: {}", i.kernel_version.unwrap_or_default());
    println!(
        " Operating System: {}",
        i.operating_system.unwrap_or_default()
    );
    println!(" OSType: {}", i.os_type.unwrap_or_default());
    println!(" Architecture: {}", i.architecture.unwrap_or_default());
    println!(" CPUs: {}", n(i.ncpu));
    println!(
        " Total Memory: {}",
        super::format::bytes_size(n(i.mem_total) as f64)
    );
    println!(" Name: {}", i.name.unwrap_or_default());
    println!(
        " Docker Root Dir: {}",
        i.docker_root_dir.unwrap_or_default()
    );
    let mirrors = i
        .registry_config
        .and_then(|r| r.mirrors)
        .unwrap_or_default();
    if !mirrors.is_empty() {
        println!(" Registry Mirrors:");
        for m in mirrors {
            println!("  {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_bars() {
        assert_eq!(split("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split("127.0.0.1:5000/a/b:v2"),
            ("127.0.0.1:5000/a/b".into(), "v2".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b".into(), "latest".into())
        );
        assert!(bar(50, 100).starts_with("[=========================>"));
        assert!(bar(100, 100).ends_with("]  100B/100B"));
    }
}
