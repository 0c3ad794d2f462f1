//! Pushing: `flux push artifact`'s exact artifact layout, and tagging.
//!
//! Flux builds the artifact with go-containerregistry: `empty.Image`, manifest media type
//! OCI, config media type `application/vnd.cncf.flux.config.v1+json`, one tar+gzip layer of
//! `application/vnd.cncf.flux.content.v1.tar+gzip`, and the annotations on the manifest. The
//! config blob is therefore go-containerregistry's serialised empty-image config with the
//! layer's uncompressed digest in `rootfs.diff_ids` (233 bytes), reproduced here byte for
//! byte.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::client::{Body, Client, query_escape};
use super::pull::{Descriptor, Manifest};
use crate::artifact::{IgnoreRules, Limits, archive_dir};
use crate::{Result, SourceError};

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
const CONTENT_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";

/// Metadata of a pushed artifact (Flux's annotations).
#[derive(Debug, Clone, Default)]
pub struct PushMeta {
    /// `org.opencontainers.image.source` (e.g. the Git URL).
    pub source: Option<String>,
    /// `org.opencontainers.image.revision` (e.g. `main@sha1:<commit>`).
    pub revision: Option<String>,
    /// `org.opencontainers.image.created`; now (UTC, RFC 3339) when `None`.
    pub created: Option<String>,
    /// Extra annotations (`--annotations key=value`).
    pub annotations: BTreeMap<String, String>,
    /// Exclusion patterns in `.sourceignore` format (`--ignore-paths`); version-control
    /// files are always left out.
    pub ignore: Option<String>,
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Manifest digest.
    pub digest: String,
    /// The manifest written.
    pub manifest: Manifest,
    /// `host/repo@sha256:<hex>`.
    pub reference: String,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// go-containerregistry's config of `empty.Image` with one appended layer.
pub fn flux_config_blob(diff_id: &str) -> String {
    format!(
        "{{\"architecture\":\"\",\"created\":\"0001-01-01T00:00:00Z\",\"history\":[{{\"created\":\
         \"0001-01-01T00:00:00Z\"}}],\"os\":\"\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":\
         [\"{diff_id}\"]}},\"config\":{{}}}}"
    )
}

/// The manifest annotations Flux writes for `meta`.
pub fn flux_annotations(meta: &PushMeta) -> BTreeMap<String, String> {
    let mut a = meta.annotations.clone();
    let created = meta
        .created
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    a.insert("org.opencontainers.image.created".to_string(), created);
    if let Some(s) = meta.source.as_ref().filter(|s| !s.is_empty()) {
        a.insert("org.opencontainers.image.source".to_string(), s.clone());
    }
    if let Some(r) = meta.revision.as_ref().filter(|r| !r.is_empty()) {
        a.insert("org.opencontainers.image.revision".to_string(), r.clone());
    }
    a
}

/// The deterministic tar+gzip of `dir` and the digest of the uncompressed tar.
pub fn build_layer(dir: &Path, ignore: Option<&str>, limits: Limits) -> Result<(Vec<u8>, String)> {
    if !dir.is_dir() {
        return Err(SourceError::Invalid {
            what: format!("path '{}'", dir.display()),
            detail: "not a directory".to_string(),
        });
    }
    // A pattern keeps IgnoreRules from adding source-controller's default exclusions: a push
    // packs the whole directory except version-control files, as `flux push artifact`.
    let patterns = ignore.filter(|s| !s.trim().is_empty()).unwrap_or(".git/");
    let rules = IgnoreRules::load(dir, Some(patterns))?;
    let mut tgz = Vec::new();
    archive_dir(dir, &rules, limits, &mut tgz)?;
    let mut hasher = Sha256::new();
    let mut gz = flate2::read::GzDecoder::new(&tgz[..]);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = gz
            .read(&mut buf)
            .map_err(SourceError::io("hash archive", dir))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((tgz, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

impl Client {
    fn blob_exists(&self, digest: &str) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self.request("HEAD", &url, &[], Body::None, "pull,push")?;
        Ok(resp.status == 200)
    }

    /// Upload one blob (monolithic `POST` + `PUT`), skipped when the registry has it.
    pub fn push_blob(&self, data: &[u8], media_type: &str) -> Result<Descriptor> {
        let digest = sha256(data);
        if !self.blob_exists(&digest)? {
            let url = self.url("blobs/uploads/");
            let resp = self.request(
                "POST",
                &url,
                &[],
                Body::Bytes(&[], "application/octet-stream"),
                "pull,push",
            )?;
            if resp.status != 202 {
                return Err(self.status_err("oci start upload", resp.status));
            }
            let location = resp.header("location").ok_or_else(|| SourceError::Http {
                op: "oci start upload",
                url: self.reference.name(),
                detail: "no Location in the upload response".to_string(),
            })?;
            let mut put = self.absolute(&location);
            put.push(if put.contains('?') { '&' } else { '?' });
            put.push_str(&format!("digest={}", query_escape(&digest)));
            let resp = self.request(
                "PUT",
                &put,
                &[],
                Body::Bytes(data, "application/octet-stream"),
                "pull,push",
            )?;
            if resp.status != 201 {
                return Err(self.status_err("oci upload blob", resp.status));
            }
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            size: data.len() as u64,
            digest,
            annotations: BTreeMap::new(),
        })
    }

    /// Put `body` as the manifest `reference` (a tag or digest) with `media_type`; returns its
    /// digest.
    pub fn put_manifest(&self, reference: &str, body: &[u8], media_type: &str) -> Result<String> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.request("PUT", &url, &[], Body::Bytes(body, media_type), "pull,push")?;
        if resp.status != 201 {
            return Err(self.status_err("oci put manifest", resp.status));
        }
        Ok(sha256(body))
    }

    /// Push `dir` as a Flux artifact to the client's reference (its tag, else its digest
    /// form is refused, else `latest`).
    pub fn push_artifact(&self, dir: &Path, meta: &PushMeta) -> Result<Pushed> {
        let (layer, diff_id) = build_layer(dir, meta.ignore.as_deref(), Limits::default())?;
        let config = flux_config_blob(&diff_id);
        let config_desc = self.push_blob(config.as_bytes(), CONFIG_MEDIA_TYPE)?;
        let layer_desc = self.push_blob(&layer, CONTENT_MEDIA_TYPE)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            config: config_desc,
            layers: vec![layer_desc],
            annotations: flux_annotations(meta),
        };
        let body = serde_json::to_vec(&manifest).map_err(|e| SourceError::Http {
            op: "oci push",
            url: self.reference.name(),
            detail: format!("encoding the manifest: {e}"),
        })?;
        let tag = self
            .reference
            .tag
            .clone()
            .unwrap_or_else(|| "latest".to_string());
        let digest = self.put_manifest(&tag, &body, MANIFEST_MEDIA_TYPE)?;
        Ok(Pushed {
            reference: format!("{}@{digest}", self.reference.name()),
            digest,
            manifest,
        })
    }

    /// Give the manifest `from` (a tag or digest) the tag `new_tag`; returns its digest.
    pub fn tag(&self, from: &str, new_tag: &str) -> Result<String> {
        let (body, ct) = self.raw_manifest(from)?;
        let mt = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(ct);
        self.put_manifest(new_tag, &body, &mt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_blob_is_go_containerregistrys_233_bytes() {
        let diff = format!("sha256:{}", "0".repeat(64));
        let c = flux_config_blob(&diff);
        assert_eq!(c.len(), 233);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], diff.as_str());
        assert_eq!(v["config"], serde_json::json!({}));
    }

    #[test]
    fn annotations_are_fluxs() {
        let meta = PushMeta {
            source: Some("https://github.com/org/app".into()),
            revision: Some("main@sha1:abc".into()),
            created: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let a = flux_annotations(&meta);
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            vec![
                "org.opencontainers.image.created",
                "org.opencontainers.image.revision",
                "org.opencontainers.image.source"
            ]
        );
        let now = flux_annotations(&PushMeta::default());
        assert!(now["org.opencontainers.image.created"].ends_with('Z'));
        assert_eq!(now.len(), 1);
    }

    #[test]
    fn layer_is_deterministic_and_skips_git() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "x").unwrap();
        std::fs::write(d.path().join("a.yaml"), "a: 1\n").unwrap();
        let (l1, id1) = build_layer(d.path(), None, Limits::default()).unwrap();
        let (l2, id2) = build_layer(d.path(), None, Limits::default()).unwrap();
        assert_eq!((&l1, &id1), (&l2, &id2));
        let out = tempfile::tempdir().unwrap();
        crate::extract::extract_tar_gz(&l1, out.path(), Limits::default()).unwrap();
        assert!(out.path().join("a.yaml").exists());
        assert!(!out.path().join(".git").exists());
    }
}
