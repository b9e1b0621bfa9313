//! `docker commit`: a container's changes (its overlay upper directory, copied while the
//! container is paused) become a layer on top of its image, with the container's config,
//! `--change` instructions applied, as a new image.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{State, layer};
use crate::containers::{ContainerStore, lifecycle, shim};
use crate::images::store::ImageStore;

/// The `/commit` query and body, as the engine passes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommitParams {
    pub container: String,
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    /// Dockerfile instructions (`CMD ["x"]`, `ENV A=1`, ...).
    pub changes: Vec<String>,
    /// Config fields to set over the container's.
    pub config: Option<Value>,
}

/// Parses `--change` instructions (`CMD ["x"]`, `ENV A=1`), refusing those that are not
/// config changes, as dockerd does.
pub fn parse_changes(changes: &[String]) -> Result<Vec<super::dockerfile::Instruction>, String> {
    let mut out = Vec::new();
    for c in changes {
        let parsed = super::dockerfile::parse(&format!("FROM scratch\n{c}"))
            .map_err(|e| format!("invalid change {c:?}: {}", e.message))?;
        for ins in parsed.into_iter().skip(1) {
            if !matches!(
                ins.cmd.as_str(),
                "CMD"
                    | "ENTRYPOINT"
                    | "ENV"
                    | "EXPOSE"
                    | "LABEL"
                    | "ONBUILD"
                    | "USER"
                    | "VOLUME"
                    | "WORKDIR"
                    | "STOPSIGNAL"
                    | "HEALTHCHECK"
            ) {
                return Err(format!("{} is not a valid change command", ins.cmd));
            }
            out.push(ins);
        }
    }
    Ok(out)
}

fn apply_changes(
    changes: &[super::dockerfile::Instruction],
    state: &mut State,
) -> Result<(), String> {
    for ins in changes {
        super::metadata(ins, state)?;
    }
    Ok(())
}

/// An image config document's `config` with `changes` applied (for `docker import`).
pub fn changed_config(
    doc: Value,
    changes: &[super::dockerfile::Instruction],
) -> Result<Value, String> {
    let mut state = State {
        doc,
        layers: Vec::new(),
        key: String::new(),
        args: BTreeMap::new(),
        cmd_set: false,
    };
    apply_changes(changes, &mut state)?;
    Ok(state.doc)
}

/// Commits; the new image's ID.
pub fn commit(
    images: &ImageStore,
    containers: &ContainerStore,
    p: &CommitParams,
) -> Result<String, String> {
    let id = containers
        .resolve(&p.container)
        .map_err(|e| e.to_string())?;
    let rec = containers.record(&id).map_err(|e| e.to_string())?;
    let mut tag = None;
    if !p.repo.is_empty() {
        let name = if p.tag.is_empty() {
            p.repo.clone()
        } else {
            format!("{}:{}", p.repo, p.tag)
        };
        let r = crate::images::reference::parse(&name).map_err(|e| e.to_string())?;
        tag = crate::images::reference::familiar_tag(&r);
    }
    // The changes are checked before anything is copied.
    let changes = parse_changes(&p.changes)?;
    let base: Value =
        serde_json::from_slice(&images.blob(&rec.image_id).map_err(|e| e.to_string())?)
            .map_err(|e| format!("the container's image: {e}"))?;
    let base_layers: Vec<String> = rec.layers.clone();

    let st = lifecycle::refresh(containers, &id);
    let mut paused = p.pause && st.status == crate::containers::Status::Running;
    if paused && let Err(e) = shim::crun_pause(&id) {
        // It exited between the look and the pause (its exit is recorded a moment later): a
        // stopped container needs no pause.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while lifecycle::refresh(containers, &id).status == crate::containers::Status::Running {
            if std::time::Instant::now() > deadline {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        paused = false;
    }
    let tmp = images
        .tmp_dir()
        .join(format!("commit-{}", crate::containers::random_hex(6)));
    let copied = layer::copy_upper(&containers.dir(&id).join("upper"), &tmp);
    if paused {
        let _ = shim::crun_resume(&id);
    }
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("copying the container's changes: {e}"));
    }
    let diff = layer::commit(images, &tmp).map_err(|e| format!("saving the layer: {e}"))?;
    let _ = std::fs::remove_dir_all(&tmp);

    let mut state = State {
        doc: base,
        layers: base_layers,
        key: String::new(),
        args: BTreeMap::new(),
        cmd_set: false,
    };
    let mut config = serde_json::to_value(&rec.config).map_err(|e| e.to_string())?;
    if let (Some(over), Some(obj)) = (
        p.config.as_ref().and_then(Value::as_object),
        config.as_object_mut(),
    ) {
        for (k, v) in over {
            if !v.is_null() {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    state.doc["config"] = config;
    apply_changes(&changes, &mut state)?;
    if let Some(d) = &diff {
        state.layers.push(d.clone());
    }
    let now = crate::clock::now();
    state.doc["rootfs"] = json!({"type": "layers", "diff_ids": state.layers});
    state.doc["created"] = json!(now);
    state.doc["container"] = json!(id);
    if !p.author.is_empty() {
        state.doc["author"] = json!(p.author);
    }
    let entry = json!({
        "created": now,
        "author": p.author,
        "comment": p.comment,
        "empty_layer": diff.is_none(),
    });
    match state.doc["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => state.doc["history"] = json!([entry]),
    }
    let bytes = serde_json::to_vec(&state.doc).map_err(|e| e.to_string())?;
    let image_id = images
        .add_config(&bytes, tag.into_iter().collect())
        .map_err(|e| e.to_string())?
        .id;
    images
        .set_parent(&image_id, &rec.image_id)
        .map_err(|e| e.to_string())?;
    lifecycle::event(&rec, "commit", &[("comment", p.comment.clone())]);
    Ok(image_id)
}
