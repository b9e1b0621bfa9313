//! `volume ls | create | rm | inspect | prune`, printed as the docker CLI does.

use std::collections::HashMap;
use std::process::ExitCode;

use bollard::volume::{
    CreateVolumeOptions, ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions,
};

use super::format::{Row, human_size_4};
use super::{Client, Result};

const FIELDS: [(&str, &str); 5] = [
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
];
const DEFAULT: &str = "table {{.Driver}}\t{{.Name}}";

#[derive(clap::Subcommand)]
pub enum VolumeVerb {
    /// List volumes.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        /// Print the engine's documents as a JSON array, for scripts.
        #[arg(long, conflicts_with_all = ["format", "quiet"])]
        json: bool,
    },
    /// Create a volume (a random name when none is given).
    Create {
        name: Option<String>,
        /// Volume driver name.
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Driver options: type, device, o (as mount(8) takes them).
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        /// Set metadata for a volume (key=value).
        #[arg(long = "label")]
        label: Vec<String>,
    },
    /// Remove one or more volumes.
    Rm {
        /// Force the removal of one or more volumes.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Display detailed information on one or more volumes.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused local volumes (anonymous ones unless --all).
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short, long)]
        force: bool,
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
}

fn row(v: bollard::models::Volume) -> Row {
    let mut labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    vec![
        ("Driver", "DRIVER", v.driver),
        ("Name", "VOLUME NAME", v.name),
        (
            "Scope",
            "SCOPE",
            v.scope.map(|s| s.to_string()).unwrap_or_default(),
        ),
        ("Mountpoint", "MOUNTPOINT", v.mountpoint),
        ("Labels", "LABELS", labels.join(",")),
    ]
}

pub async fn volume(client: &Client, verb: VolumeVerb) -> Result<ExitCode> {
    let d = &client.docker;
    match verb {
        VolumeVerb::Ls {
            quiet,
            filter,
            format,
            json,
        } => {
            let filters = super::filters(&filter)?;
            let mut list = d
                .list_volumes(Some(ListVolumesOptions::<String> { filters }))
                .await
                .map_err(|e| client.error(e, 1))?
                .volumes
                .unwrap_or_default();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return super::print_json(&list);
            }
            let format = quiet.then_some("{{.Name}}").or(format.as_deref());
            let template = super::template(format, DEFAULT, &FIELDS)?;
            let rows: Vec<Row> = list.into_iter().map(row).collect();
            print!("{}", template.render(&rows));
            Ok(ExitCode::SUCCESS)
        }
        VolumeVerb::Create {
            name,
            driver,
            opt,
            label,
        } => {
            let v = d
                .create_volume(CreateVolumeOptions {
                    name: name.unwrap_or_default(),
                    driver,
                    driver_opts: super::kv(&opt),
                    labels: super::kv(&label),
                })
                .await
                .map_err(|e| client.error(e, 1))?;
            println!("{}", v.name);
            Ok(ExitCode::SUCCESS)
        }
        VolumeVerb::Rm { force, volumes } => {
            let mut failed = false;
            for name in volumes {
                match d
                    .remove_volume(&name, Some(RemoveVolumeOptions { force }))
                    .await
                {
                    Ok(()) => println!("{name}"),
                    // As the docker CLI: -f makes a missing volume no error.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) if force => {}
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
        VolumeVerb::Inspect { format, volumes } => {
            let mut docs = Vec::new();
            let mut failed = false;
            for name in &volumes {
                match d.inspect_volume(name).await {
                    Ok(v) => docs.push(serde_json::to_value(v).unwrap_or_default()),
                    Err(e) => {
                        failed = true;
                        eprintln!("{}", client.error(e, 1).message);
                    }
                }
            }
            super::containers::print_inspect(&docs, format.as_deref())?;
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        VolumeVerb::Prune { all, force, filter } => {
            let warning = if all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !force && !super::confirm(&[warning]) {
                return Ok(ExitCode::SUCCESS);
            }
            let mut filters = super::filters(&filter)?;
            if all {
                filters.insert("all".into(), vec!["true".into()]);
            }
            let (deleted, reclaimed) = prune(client, filters).await?;
            if !deleted.is_empty() {
                println!("Deleted Volumes:\n{}\n", deleted.join("\n"));
            }
            println!("Total reclaimed space: {}", human_size_4(reclaimed as f64));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prunes volumes; the names deleted and the bytes reclaimed.
pub async fn prune(
    client: &Client,
    filters: HashMap<String, Vec<String>>,
) -> Result<(Vec<String>, i64)> {
    let r = client
        .docker
        .prune_volumes(Some(PruneVolumesOptions { filters }))
        .await
        .map_err(|e| client.error(e, 1))?;
    Ok((
        r.volumes_deleted.unwrap_or_default(),
        r.space_reclaimed.unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_labels_and_name_the_docker_columns() {
        let v = bollard::models::Volume {
            name: "data".into(),
            driver: "local".into(),
            mountpoint: "/var/lib/berth/volumes/data/_data".into(),
            labels: HashMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
            ..Default::default()
        };
        let r = row(v);
        assert_eq!(r[1], ("Name", "VOLUME NAME", "data".to_owned()));
        assert_eq!(r[4].2, "a=1,b=2");
        let t = super::super::template(None, DEFAULT, &FIELDS).unwrap();
        assert_eq!(t.render(&[r]), "DRIVER    VOLUME NAME\nlocal     data\n");
    }
}
