//! Helm v3 release records and the Secret storage driver's encoding, so that releases
//! plumb writes are read by the `helm` CLI (`helm list`, `helm history`, `helm rollback`)
//! and releases `helm` wrote are read by plumb.
//!
//! The record is Helm's `release.Release` as JSON (snake_case keys for `info` and hooks,
//! chart metadata camelCase as in `Chart.yaml`, file contents as base64 as Go encodes
//! `[]byte`). The Secret driver stores it gzipped and base64-encoded under the `release`
//! key of a Secret `sh.helm.release.v1.<name>.v<version>` of type `helm.sh/release.v1`
//! labelled `owner=helm`, `name`, `status` and `version`. This module is pure: it builds
//! and reads the Secret as JSON and leaves the API calls to the caller.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chart::Chart;
use crate::error::HelmError;
use crate::render::{Hook, Manifest};

/// Secret type of Helm v3 release Secrets.
pub const SECRET_TYPE: &str = "helm.sh/release.v1";
/// Prefix of release Secret names.
pub const SECRET_PREFIX: &str = "sh.helm.release.v1.";
/// Label keys the Secret driver sets (system labels, not user labels).
pub const SYSTEM_LABELS: &[&str] = &[
    "name",
    "owner",
    "status",
    "version",
    "createdAt",
    "modifiedAt",
];
/// Longest release name Helm accepts.
pub const MAX_RELEASE_NAME: usize = 53;
/// Largest decompressed release record accepted when decoding (Secrets are ≤ 1 MiB
/// compressed; this bounds a gzip bomb).
pub const MAX_RECORD: u64 = 64 << 20;

/// Release status values (`release.Status`).
pub mod status {
    /// The release is in use.
    pub const DEPLOYED: &str = "deployed";
    /// A newer release replaced it.
    pub const SUPERSEDED: &str = "superseded";
    /// The release failed.
    pub const FAILED: &str = "failed";
    /// The release was uninstalled (history kept).
    pub const UNINSTALLED: &str = "uninstalled";
    /// An uninstall is in progress.
    pub const UNINSTALLING: &str = "uninstalling";
    /// An install is in progress.
    pub const PENDING_INSTALL: &str = "pending-install";
    /// An upgrade is in progress.
    pub const PENDING_UPGRADE: &str = "pending-upgrade";
    /// A rollback is in progress.
    pub const PENDING_ROLLBACK: &str = "pending-rollback";
}

/// `release.Release`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Release name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Release information.
    #[serde(default)]
    pub info: Info,
    /// The chart the release was made from.
    #[serde(default)]
    pub chart: ChartRecord,
    /// The user-supplied values.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The rendered non-hook manifests (`---\n# Source: path\ncontent\n` each).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// The hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
    /// Revision, from 1.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: i64,
    /// Release namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// How the release's objects were applied (Helm 4): `ssa` (server-side apply) or
    /// `csa` (client-side: create and three-way patches); empty in older records.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub apply_method: String,
    /// User labels; stored as Secret labels, not in the record.
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

fn is_empty_map(m: &serde_json::Map<String, serde_json::Value>) -> bool {
    m.is_empty()
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `release.Info`. Times are RFC 3339 strings; an unset time is `""` as Helm writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// First deployment of the release.
    #[serde(default, deserialize_with = "nullable_string")]
    pub first_deployed: String,
    /// Last deployment of the release.
    #[serde(default, deserialize_with = "nullable_string")]
    pub last_deployed: String,
    /// When the release was deleted.
    #[serde(default, deserialize_with = "nullable_string")]
    pub deleted: String,
    /// Human description of the last operation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Status (see [`status`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Rendered NOTES.txt.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

fn nullable_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// `chart.Chart` as stored (subcharts are not stored, as in Helm).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChartRecord {
    /// `Chart.yaml`.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// `Chart.lock`.
    #[serde(default)]
    pub lock: serde_json::Value,
    /// Template files.
    #[serde(default, deserialize_with = "nullable_files")]
    pub templates: Vec<File>,
    /// `values.yaml`.
    #[serde(default)]
    pub values: serde_json::Value,
    /// `values.schema.json`, base64 (Go `[]byte`), `None` when absent.
    #[serde(default)]
    pub schema: Option<String>,
    /// Other files.
    #[serde(default, deserialize_with = "nullable_files")]
    pub files: Vec<File>,
}

fn nullable_files<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<File>, D::Error> {
    Ok(Option::<Vec<File>>::deserialize(d)?.unwrap_or_default())
}

impl ChartRecord {
    /// Chart name from the metadata.
    pub fn name(&self) -> &str {
        self.metadata
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }

    /// Chart version from the metadata.
    pub fn version(&self) -> &str {
        self.metadata
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }

    /// App version from the metadata.
    pub fn app_version(&self) -> Option<&str> {
        self.metadata.get("appVersion").and_then(|v| v.as_str())
    }
}

/// `chart.File`: a name and base64 data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct File {
    /// Path relative to the chart root.
    pub name: String,
    /// Contents, base64 (Go `[]byte`).
    #[serde(default)]
    pub data: String,
}

/// `release.Hook`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookRecord {
    /// Object name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Object kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Template path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The document.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// Events, e.g. `pre-install`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The last run.
    #[serde(default)]
    pub last_run: HookExecution,
    /// Weight.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: i64,
    /// Delete policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<String>,
}

/// `release.HookExecution`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HookExecution {
    /// Start time (RFC 3339), `""` when never run.
    #[serde(default, deserialize_with = "nullable_string")]
    pub started_at: String,
    /// Completion time.
    #[serde(default, deserialize_with = "nullable_string")]
    pub completed_at: String,
    /// `Unknown`, `Running`, `Succeeded` or `Failed`.
    #[serde(default)]
    pub phase: String,
}

/// The current time as Helm writes it (RFC 3339 with fractional seconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Flux's release name: `name` as is when it fits in 53 characters, else its first 40
/// characters, a dash and the first 12 hex digits of its SHA-256.
pub fn shorten_name(name: &str) -> String {
    if name.len() <= MAX_RELEASE_NAME {
        return name.to_string();
    }
    let sum = hex::encode(Sha256::digest(name.as_bytes()));
    let mut cut = MAX_RELEASE_NAME - 13;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &name[..cut], &sum[..12])
}

/// Name of the Secret holding `version` of release `name`.
pub fn secret_name(name: &str, version: i64) -> String {
    format!("{SECRET_PREFIX}{name}.v{version}")
}

/// The text Helm stores as a release's manifest.
pub fn manifest_text(manifests: &[Manifest]) -> String {
    let mut out = String::new();
    for m in manifests {
        out.push_str(&format!("---\n# Source: {}\n{}\n", m.path, m.content));
    }
    out
}

/// The stored form of a chart.
pub fn chart_record(chart: &Chart) -> ChartRecord {
    let meta = match chart.meta.to_json() {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    };
    ChartRecord {
        metadata: meta,
        lock: serde_json::Value::Null,
        templates: chart
            .templates
            .iter()
            .map(|(n, t)| File {
                name: n.clone(),
                data: B64.encode(t.as_bytes()),
            })
            .collect(),
        values: chart.values.to_json(),
        schema: chart.schema.as_ref().map(|s| B64.encode(s)),
        files: chart
            .files
            .iter()
            .map(|(n, d)| File {
                name: n.clone(),
                data: B64.encode(d),
            })
            .collect(),
    }
}

/// The stored form of a rendered hook (never run yet).
pub fn hook_record(h: &Hook) -> HookRecord {
    HookRecord {
        name: h.manifest.name.clone(),
        kind: h.manifest.kind.clone(),
        path: h.manifest.path.clone(),
        manifest: h.manifest.content.clone(),
        events: h.events.clone(),
        last_run: HookExecution::default(),
        weight: h.weight,
        delete_policies: h.delete_policies.clone(),
    }
}

/// Encodes a release as the Secret driver does: JSON, gzip, base64.
pub fn encode(rel: &Release) -> Result<String, HelmError> {
    let json = serde_json::to_vec(rel).map_err(|e| storage_err(rel, &e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&json)
        .map_err(|e| storage_err(rel, &e.to_string()))?;
    let bytes = gz.finish().map_err(|e| storage_err(rel, &e.to_string()))?;
    Ok(B64.encode(bytes))
}

fn storage_err(rel: &Release, msg: &str) -> HelmError {
    HelmError::Storage {
        release: format!("{}.v{}", rel.name, rel.version),
        msg: msg.to_string(),
    }
}

/// Decodes the Secret driver's `release` value (base64 of gzip of JSON; plain JSON
/// inside the base64 is accepted too, as Helm does).
pub fn decode(data: &[u8]) -> Result<Release, HelmError> {
    let err = |msg: String| HelmError::Storage {
        release: "release record".into(),
        msg,
    };
    let text: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = B64
        .decode(&text)
        .map_err(|e| err(format!("invalid base64: {e}")))?;
    let json = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_RECORD + 1)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("invalid gzip: {e}")))?;
        if out.len() as u64 > MAX_RECORD {
            return Err(err(format!("record exceeds {MAX_RECORD} bytes")));
        }
        out
    } else {
        raw
    };
    serde_json::from_slice(&json).map_err(|e| err(format!("invalid release JSON: {e}")))
}

/// The labels of a release Secret.
pub fn secret_labels(rel: &Release) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = rel
        .labels
        .iter()
        .filter(|(k, _)| !SYSTEM_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("name".into(), rel.name.clone());
    labels.insert("owner".into(), "helm".into());
    labels.insert("status".into(), rel.info.status.clone());
    labels.insert("version".into(), rel.version.to_string());
    labels
}

/// The Secret object (JSON, for the API) storing `rel` in `namespace`.
pub fn secret_object(rel: &Release, namespace: &str) -> Result<serde_json::Value, HelmError> {
    let encoded = encode(rel)?;
    let mut labels = secret_labels(rel);
    labels.insert(
        "createdAt".into(),
        chrono::Utc::now().timestamp().to_string(),
    );
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(&rel.name, rel.version),
            "namespace": namespace,
            "labels": labels,
        },
        "type": SECRET_TYPE,
        "data": { "release": B64.encode(encoded.as_bytes()) },
    }))
}

/// `sha256:<hex>` of the values as Flux digests them (canonical JSON of the map).
pub fn values_digest(values: &serde_json::Map<String, serde_json::Value>) -> String {
    let json = serde_json::to_vec(values).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// `sha256:<hex>` of the release record, for status history snapshots.
pub fn release_digest(rel: &Release) -> String {
    let json = serde_json::to_vec(rel).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&json)))
}

/// Hooks of `rel` bound to `event`, ordered by weight then name (Helm's order).
pub fn hooks_for<'r>(rel: &'r Release, event: &str) -> Vec<&'r HookRecord> {
    let mut hs: Vec<&HookRecord> = rel
        .hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == event))
        .collect();
    hs.sort_by(|a, b| a.weight.cmp(&b.weight).then_with(|| a.name.cmp(&b.name)));
    hs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Release {
        let mut config = serde_json::Map::new();
        config.insert("replicas".into(), serde_json::json!(2));
        Release {
            name: "demo".into(),
            info: Info {
                first_deployed: "2024-01-02T03:04:05.123Z".into(),
                last_deployed: "2024-01-02T03:04:05.123Z".into(),
                status: status::DEPLOYED.into(),
                description: "Install complete".into(),
                ..Info::default()
            },
            chart: ChartRecord {
                metadata: serde_json::json!({"apiVersion": "v2", "name": "demo", "version": "1.0.0"}),
                templates: vec![File {
                    name: "templates/cm.yaml".into(),
                    data: B64.encode("kind: ConfigMap"),
                }],
                values: serde_json::json!({"replicas": 1}),
                ..ChartRecord::default()
            },
            config,
            manifest: "---\n# Source: demo/templates/cm.yaml\nkind: ConfigMap\n".into(),
            hooks: vec![HookRecord {
                name: "pre".into(),
                kind: "Job".into(),
                events: vec!["pre-install".into()],
                weight: -1,
                ..HookRecord::default()
            }],
            version: 3,
            namespace: "apps".into(),
            apply_method: "csa".into(),
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
        }
    }

    #[test]
    fn encode_decode_round_trip_with_helm_keys() {
        let rel = sample();
        let enc = encode(&rel).unwrap();
        let raw = B64.decode(&enc).unwrap();
        assert_eq!(&raw[..3], &[0x1f, 0x8b, 0x08], "gzip magic");
        let mut back = decode(enc.as_bytes()).unwrap();
        back.labels = rel.labels.clone();
        assert_eq!(back, rel);
        let json = serde_json::to_value(&rel).unwrap();
        assert_eq!(json["info"]["first_deployed"], "2024-01-02T03:04:05.123Z");
        assert_eq!(json["info"]["deleted"], "");
        assert_eq!(json["hooks"][0]["last_run"]["phase"], "");
        assert_eq!(json["hooks"][0]["weight"], -1);
        assert_eq!(json["chart"]["schema"], serde_json::Value::Null);
        assert!(json.get("labels").is_none());
        assert_eq!(json["apply_method"], "csa", "Helm 4's key");
    }

    #[test]
    fn decodes_helm_written_records_with_nulls_and_plain_json() {
        let json = r#"{"name":"x","info":{"first_deployed":"2024-01-01T00:00:00Z","last_deployed":"2024-01-01T00:00:00Z","deleted":"","status":"superseded"},"chart":{"metadata":{"name":"c","version":"0.1.0"},"lock":null,"templates":null,"values":null,"schema":null,"files":null},"version":1,"namespace":"d"}"#;
        let rel = decode(B64.encode(json).as_bytes()).unwrap();
        assert_eq!(rel.info.status, "superseded");
        assert_eq!(rel.chart.name(), "c");
        assert!(decode(b"!!!").is_err());
        assert!(decode(B64.encode("{").as_bytes()).is_err());
    }

    #[test]
    fn secret_has_driver_name_type_and_labels() {
        let rel = sample();
        let s = secret_object(&rel, "store").unwrap();
        assert_eq!(s["metadata"]["name"], "sh.helm.release.v1.demo.v3");
        assert_eq!(s["type"], "helm.sh/release.v1");
        let l = &s["metadata"]["labels"];
        assert_eq!(l["owner"], "helm");
        assert_eq!(l["name"], "demo");
        assert_eq!(l["status"], "deployed");
        assert_eq!(l["version"], "3");
        assert_eq!(l["team"], "a");
        let inner = B64.decode(s["data"]["release"].as_str().unwrap()).unwrap();
        assert_eq!(decode(&inner).unwrap().version, 3);
    }

    #[test]
    fn shorten_name_follows_flux() {
        assert_eq!(shorten_name("short"), "short");
        let long = "a".repeat(60);
        let s = shorten_name(&long);
        assert_eq!(s.len(), 53);
        assert!(s.starts_with(&"a".repeat(40)));
        assert_eq!(&s[40..41], "-");
    }

    #[test]
    fn hooks_ordered_by_weight_then_name() {
        let mut rel = sample();
        rel.hooks.push(HookRecord {
            name: "a".into(),
            events: vec!["pre-install".into()],
            weight: -1,
            ..HookRecord::default()
        });
        rel.hooks.push(HookRecord {
            name: "z".into(),
            events: vec!["pre-install".into()],
            weight: -5,
            ..HookRecord::default()
        });
        let names: Vec<&str> = hooks_for(&rel, "pre-install")
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["z", "a", "pre"]);
        assert!(hooks_for(&rel, "post-install").is_empty());
    }
}
