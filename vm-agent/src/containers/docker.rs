//! Docker Engine API views of containers (bollard-stubs models): `docker ps` rows and the
//! `docker inspect` document.

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHostConfig, DriverData,
};

use super::{ContainerRecord, ContainerStore, State, Status};
use crate::clock;

fn ago(rfc3339: &str) -> String {
    let then = clock::parse(rfc3339).unwrap_or(0.0);
    let secs = (clock::unix_now() as f64 - then).max(0.0) as i64;
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 * 2 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

/// `Up 5 seconds`, `Exited (0) 3 seconds ago`, `Created`: the STATUS column.
pub fn status_text(st: &State) -> String {
    match st.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(&st.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(&st.started_at)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
    }
}

fn state_name(st: &State) -> &'static str {
    match st.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Exited => "exited",
    }
}

fn command_line(rec: &ContainerRecord) -> String {
    let mut parts = vec![rec.path.clone()];
    parts.extend(rec.args.iter().cloned());
    parts.join(" ")
}

pub fn summary(rec: &ContainerRecord, st: &State) -> ContainerSummary {
    ContainerSummary {
        id: Some(rec.id.clone()),
        names: Some(vec![format!("/{}", rec.name)]),
        image: Some(rec.image.clone()),
        image_id: Some(rec.image_id.clone()),
        command: Some(command_line(rec)),
        created: Some(clock::parse(&rec.created).unwrap_or(0.0) as i64),
        ports: Some(vec![]),
        labels: rec.config.labels.clone(),
        state: Some(state_name(st).into()),
        status: Some(status_text(st)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(
                rec.host_config
                    .network_mode
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            ..Default::default()
        }),
        mounts: Some(super::volumes::docker_mounts(crate::volumes::get(), rec)),
        ..Default::default()
    }
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The host config as dockerd shows it: defaults it fills in made explicit (clients such as
/// docker-py read LogConfig and RestartPolicy without checking).
fn host_config_shown(hc: &bollard_stubs::models::HostConfig) -> bollard_stubs::models::HostConfig {
    use bollard_stubs::models::{HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
    let mut hc = hc.clone();
    if hc
        .log_config
        .as_ref()
        .and_then(|l| l.typ.as_deref())
        .is_none_or(str::is_empty)
    {
        // Unset or empty (what the docker CLI sends without --log-driver): json-file.
        let config = hc.log_config.and_then(|l| l.config);
        hc.log_config = Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(config.unwrap_or_default()),
        });
    }
    if hc.restart_policy.is_none() {
        hc.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: Some(0),
        });
    }
    if hc.network_mode.is_none() {
        hc.network_mode = Some("default".into());
    }
    if hc.runtime.as_deref().is_none_or(str::is_empty) {
        // A body without HostConfig (the engine fills it in otherwise): the default runtime.
        hc.runtime = Some("crun".into());
    }
    hc
}

pub fn inspect(
    store: &ContainerStore,
    rec: &ContainerRecord,
    st: &State,
) -> ContainerInspectResponse {
    let dir = store.dir(&rec.id);
    let status = match st.status {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Exited => ContainerStateStatusEnum::EXITED,
    };
    let or_zero = |s: &str| {
        if s.is_empty() {
            ZERO_TIME.to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut graph = std::collections::HashMap::new();
    graph.insert(
        "MergedDir".to_owned(),
        dir.join("rootfs").display().to_string(),
    );
    graph.insert(
        "UpperDir".to_owned(),
        dir.join("upper").display().to_string(),
    );
    graph.insert("WorkDir".to_owned(), dir.join("work").display().to_string());
    ContainerInspectResponse {
        id: Some(rec.id.clone()),
        created: Some(rec.created.clone()),
        path: Some(rec.path.clone()),
        args: Some(rec.args.clone()),
        state: Some(ContainerState {
            status: Some(status),
            running: Some(st.status.is_live()),
            paused: Some(st.status == Status::Paused),
            restarting: Some(false),
            oom_killed: Some(st.oom_killed),
            dead: Some(false),
            pid: Some(i64::from(st.pid)),
            exit_code: Some(st.exit_code),
            error: Some(st.error.clone()),
            started_at: Some(or_zero(&st.started_at)),
            finished_at: Some(or_zero(&st.finished_at)),
            health: super::health::load(&dir)
                .filter(|_| rec.config.healthcheck.is_some())
                .map(|h| super::health::docker_health(&h)),
        }),
        image: Some(rec.image_id.clone()),
        resolv_conf_path: Some(dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(dir.join("hostname").display().to_string()),
        hosts_path: Some(dir.join("hosts").display().to_string()),
        log_path: Some(dir.join("log.json").display().to_string()),
        name: Some(format!("/{}", rec.name)),
        restart_count: Some(st.restart_count as i64),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        host_config: Some(host_config_shown(&rec.host_config)),
        graph_driver: Some(DriverData {
            name: "overlay2".into(),
            data: graph,
        }),
        mounts: Some(super::volumes::docker_mounts(crate::volumes::get(), rec)),
        config: Some(rec.config.clone()),
        network_settings: Some(crate::net::docker::network_settings(
            rec,
            &dir,
            st.status.is_live(),
        )),
        ..Default::default()
    }
}
