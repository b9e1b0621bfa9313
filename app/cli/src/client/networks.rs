//! `network ls | create | rm | inspect | connect | disconnect`, printed as the docker CLI does.

use std::process::ExitCode;

use bollard::models::{Ipam, IpamConfig};
use bollard::network::{
    ConnectNetworkOptions, CreateNetworkOptions, DisconnectNetworkOptions, InspectNetworkOptions,
    ListNetworksOptions,
};

use super::format::{Row, short_id};
use super::{CliError, Client, Result};

const FIELDS: [(&str, &str); 6] = [
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
];
const DEFAULT: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

#[derive(clap::Subcommand)]
pub enum NetworkVerb {
    /// List networks.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(long)]
        no_trunc: bool,
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        /// Print the engine's documents as a JSON array, for scripts.
        #[arg(long, conflicts_with_all = ["format", "quiet"])]
        json: bool,
    },
    /// Create a network.
    Create {
        name: String,
        /// Driver to manage the network.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format.
        #[arg(long)]
        subnet: Option<String>,
        /// IPv4 gateway for the subnet.
        #[arg(long)]
        gateway: Option<String>,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Set metadata on a network (key=value).
        #[arg(long = "label")]
        label: Vec<String>,
    },
    /// Remove networks.
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Display detailed information on networks.
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a container to a network.
    Connect { network: String, container: String },
    /// Disconnect a container from a network.
    Disconnect {
        network: String,
        container: String,
        #[arg(short, long)]
        force: bool,
    },
}

pub async fn network(client: &Client, verb: NetworkVerb) -> Result<ExitCode> {
    let d = &client.docker;
    match verb {
        NetworkVerb::Ls {
            quiet,
            no_trunc,
            filter,
            format,
            json,
        } => {
            let filters = super::filters(&filter)?;
            let mut list = d
                .list_networks(Some(ListNetworksOptions::<String> { filters }))
                .await
                .map_err(|e| client.error(e, 1))?;
            // By name, as the docker CLI sorts them.
            list.sort_by(|a, b| a.name.cmp(&b.name));
            if json {
                return super::print_json(&list);
            }
            let format = quiet.then_some("{{.ID}}").or(format.as_deref());
            let template = super::template(format, DEFAULT, &FIELDS)?;
            let rows: Vec<Row> = list
                .into_iter()
                .map(|n| {
                    let id = n.id.unwrap_or_default();
                    let mut labels: Vec<String> = n
                        .labels
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    labels.sort();
                    vec![
                        (
                            "ID",
                            "NETWORK ID",
                            if no_trunc { id } else { short_id(&id) },
                        ),
                        ("Name", "NAME", n.name.unwrap_or_default()),
                        ("Driver", "DRIVER", n.driver.unwrap_or_default()),
                        ("Scope", "SCOPE", n.scope.unwrap_or_default()),
                        (
                            "Internal",
                            "INTERNAL",
                            n.internal.unwrap_or(false).to_string(),
                        ),
                        ("Labels", "LABELS", labels.join(",")),
                    ]
                })
                .collect();
            print!("{}", template.render(&rows));
            Ok(ExitCode::SUCCESS)
        }
        NetworkVerb::Create {
            name,
            driver,
            subnet,
            gateway,
            internal,
            label,
        } => {
            let ipam = Ipam {
                config: subnet.map(|subnet| {
                    vec![IpamConfig {
                        subnet: Some(subnet),
                        gateway,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            };
            let created = d
                .create_network(CreateNetworkOptions {
                    name,
                    driver,
                    internal,
                    ipam,
                    labels: super::kv(&label),
                    ..Default::default()
                })
                .await
                .map_err(|e| client.error(e, 1))?;
            println!("{}", created.id);
            Ok(ExitCode::SUCCESS)
        }
        NetworkVerb::Rm { networks } => {
            let mut failed = false;
            for n in networks {
                match d.remove_network(&n).await {
                    Ok(()) => println!("{n}"),
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
        NetworkVerb::Inspect { networks } => {
            let mut docs = Vec::new();
            let mut failed = false;
            for n in networks {
                match d
                    .inspect_network(&n, None::<InspectNetworkOptions<String>>)
                    .await
                {
                    Ok(doc) => docs.push(doc),
                    Err(e) => {
                        failed = true;
                        eprintln!("{}", client.error(e, 1).message);
                    }
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&docs).map_err(|e| CliError::new(1, e.to_string()))?
            );
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        NetworkVerb::Connect { network, container } => {
            d.connect_network(
                &network,
                ConnectNetworkOptions {
                    container,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| client.error(e, 1))?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkVerb::Disconnect {
            network,
            container,
            force,
        } => {
            d.disconnect_network(&network, DisconnectNetworkOptions { container, force })
                .await
                .map_err(|e| client.error(e, 1))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
