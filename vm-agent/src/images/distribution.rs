//! What a registry holds for a reference, without pulling it (`GET /distribution/{name}/json`):
//! the manifest's descriptor and the platforms it serves, fetched through the host's proxy with
//! Docker Hub's mirrors tried first, as a pull resolves. Stores nothing.
//!
//! dockerd lists platforms for a manifest list (each entry's) and for a Docker v2 manifest (its
//! config's); for an OCI image manifest it lists none. Berth reads the config of both kinds of
//! single manifest, so a client asking "does it run on linux/amd64?" gets an answer for OCI
//! images too.

use oci_client::Client;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_client::secrets::RegistryAuth;
use serde_json::{Value, json};

use super::pull::{PullRequest, client_for, sources};
use super::reference::{self, Reference};

const ACCEPTED: &[&str] = &[
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Why a registry could not describe a reference; the texts are dockerd's (`code: message`,
/// as Docker's registry client prints a registry's error).
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error("{0}")]
    Reference(#[from] reference::BadReference),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Registry(String),
}

/// The registry's words for its error codes, as Docker's registry client has them.
fn code_text(code: &str) -> String {
    match code {
        "MANIFEST_UNKNOWN" => "manifest unknown".into(),
        "NAME_UNKNOWN" => "repository name not known to registry".into(),
        "BLOB_UNKNOWN" => "blob unknown to registry".into(),
        "UNAUTHORIZED" => "authentication required".into(),
        "DENIED" => "requested access to the resource is denied".into(),
        "NAME_INVALID" => "invalid repository name".into(),
        "TOOMANYREQUESTS" => "too many requests".into(),
        other => other.to_ascii_lowercase().replace('_', " "),
    }
}

/// A registry's refusal in dockerd's words. dockerd's registry client sends no request
/// without credentials to a registry that asks for Basic auth; its refusal is a plain error.
fn registry_error(e: OciDistributionError, auth: &RegistryAuth) -> DistributionError {
    use OciDistributionError as E;
    match e {
        E::UnauthorizedError { url } if matches!(auth, RegistryAuth::Anonymous) => {
            DistributionError::Registry(format!("Head {url:?}: no basic auth credentials"))
        }
        E::ImageManifestNotFoundError(_) => {
            DistributionError::NotFound("manifest unknown: manifest unknown".into())
        }
        E::UnauthorizedError { .. } => {
            DistributionError::Unauthorized("unauthorized: authentication required".into())
        }
        E::RegistryError { envelope, url } => {
            let Some(first) = envelope.errors.first() else {
                return DistributionError::Registry(format!("{url}: an empty error"));
            };
            let code = serde_json::to_value(&first.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let text = if first.message.is_empty() {
                code_text(&code)
            } else {
                format!("{}: {}", code_text(&code), first.message)
            };
            match code.as_str() {
                "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND" => {
                    DistributionError::NotFound(text)
                }
                "UNAUTHORIZED" => DistributionError::Unauthorized(text),
                "DENIED" => DistributionError::Denied(text),
                _ => DistributionError::Registry(text),
            }
        }
        other => DistributionError::Registry(other.to_string()),
    }
}

/// An OCI platform as dockerd writes one: `architecture` and `os` always, the rest when set.
fn platform(p: &Value) -> Value {
    let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
    let mut out = json!({ "architecture": text("architecture"), "os": text("os") });
    for k in ["os.version", "variant"] {
        if !text(k).is_empty() {
            out[k] = json!(text(k));
        }
    }
    if p["os.features"].as_array().is_some_and(|f| !f.is_empty()) {
        out["os.features"] = p["os.features"].clone();
    }
    out
}

/// The manifest's media type: its own field, else what its shape says (OCI leaves it out).
fn media_type(manifest: &Value) -> String {
    match manifest["mediaType"].as_str() {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ if manifest["manifests"].is_array() => OCI_IMAGE_INDEX_MEDIA_TYPE.into(),
        _ => OCI_IMAGE_MEDIA_TYPE.into(),
    }
}

/// The platform in a single manifest's config; `None` when the config cannot be read or
/// names neither an OS nor an architecture (dockerd lists nothing then).
async fn config_platform(client: &Client, source: &Reference, manifest: &Value) -> Option<Value> {
    let desc: OciDescriptor = serde_json::from_value(manifest["config"].clone()).ok()?;
    let mut config = Vec::new();
    client.pull_blob(source, &desc, &mut config).await.ok()?;
    let config: Value = serde_json::from_slice(&config).ok()?;
    let p = platform(&config);
    (p["os"] != "" || p["architecture"] != "").then_some(p)
}

async fn describe(
    client: &Client,
    source: &Reference,
    auth: &RegistryAuth,
) -> Result<Value, DistributionError> {
    let (bytes, digest) = client
        .pull_manifest_raw(source, auth, ACCEPTED)
        .await
        .map_err(|e| registry_error(e, auth))?;
    let manifest: Value = serde_json::from_slice(&bytes)
        .map_err(|e| DistributionError::Registry(format!("the manifest is not JSON: {e}")))?;
    let platforms: Vec<Value> = match manifest["manifests"].as_array() {
        Some(list) => list.iter().map(|m| platform(&m["platform"])).collect(),
        None => config_platform(client, source, &manifest)
            .await
            .into_iter()
            .collect(),
    };
    Ok(json!({
        "Descriptor": {
            "mediaType": media_type(&manifest),
            "digest": digest,
            "size": bytes.len(),
        },
        "Platforms": if platforms.is_empty() { Value::Null } else { Value::Array(platforms) },
    }))
}

/// Describes `req.reference` from the first source that has it (mirrors, then the registry);
/// the last source's error otherwise, as dockerd returns it.
pub async fn inspect(req: &PullRequest) -> Result<Value, DistributionError> {
    let r = reference::parse(&req.reference)?;
    let mut last = None;
    for source in sources(&r, &req.mirrors) {
        let client = client_for(source.resolve_registry(), &req.insecure, req.proxy.clone());
        match describe(&client, &source, &req.auth).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::info!(registry = source.resolve_registry(), "distribution: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("at least one source"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError, OciErrorCode};

    #[test]
    fn platforms_and_media_types_as_dockerd_writes_them() {
        assert_eq!(
            platform(&json!({"architecture": "arm64", "os": "linux", "variant": "v8"})),
            json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
        );
        assert_eq!(
            platform(&json!({"os": "windows", "os.version": "10.0", "os.features": []})),
            json!({"architecture": "", "os": "windows", "os.version": "10.0"})
        );
        assert_eq!(
            platform(&Value::Null),
            json!({"architecture": "", "os": ""})
        );
        assert_eq!(
            media_type(&json!({"manifests": []})),
            OCI_IMAGE_INDEX_MEDIA_TYPE
        );
        assert_eq!(media_type(&json!({"config": {}})), OCI_IMAGE_MEDIA_TYPE);
        assert_eq!(
            media_type(&json!({"mediaType": IMAGE_MANIFEST_MEDIA_TYPE})),
            IMAGE_MANIFEST_MEDIA_TYPE
        );
    }

    #[test]
    fn registry_errors_read_as_dockerds() {
        let envelope = |code| OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: "manifest unknown".into(),
                    detail: Value::Null,
                }],
            },
            url: "http://127.0.0.1:5000/v2/x/manifests/latest".into(),
        };
        let anonymous = RegistryAuth::Anonymous;
        let e = registry_error(envelope(OciErrorCode::ManifestUnknown), &anonymous);
        assert!(matches!(&e, DistributionError::NotFound(_)));
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
        assert!(matches!(
            registry_error(envelope(OciErrorCode::Denied), &anonymous),
            DistributionError::Denied(_)
        ));
        // dockerd 20.10 against a registry asking for Basic auth: without credentials a plain
        // error (500), with wrong ones the registry's 401.
        let unauthorized = || OciDistributionError::UnauthorizedError {
            url: "http://127.0.0.1:5056/v2/t/s2/manifests/latest".into(),
        };
        assert_eq!(
            registry_error(unauthorized(), &anonymous).to_string(),
            "Head \"http://127.0.0.1:5056/v2/t/s2/manifests/latest\": no basic auth credentials"
        );
        let basic = RegistryAuth::Basic("berth".into(), "bad".into());
        assert!(matches!(
            registry_error(unauthorized(), &basic),
            DistributionError::Unauthorized(m) if m == "unauthorized: authentication required"
        ));
    }
}
