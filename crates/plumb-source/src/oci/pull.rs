//! Pulling: reference resolution with Flux's precedence, manifests, layer selection, blobs
//! with size caps and digest verification.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::client::{Body, Client};
use crate::artifact::Limits;
use crate::{Result, SourceError};

/// Manifest media types a pull accepts (Accept header of manifest requests).
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A content descriptor (config or layer), in the field order Go writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker schema 2), in the field order Go writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Config blob.
    pub config: Descriptor,
    /// Layers, in order.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations (Flux's `org.opencontainers.image.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What to pull, after Flux's precedence is applied (see [`RefSpec::from_flux`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSpec {
    /// A digest (`sha256:<hex>`).
    Digest(String),
    /// The highest tag in a Masterminds range, among tags matching `filter` (a regex).
    Semver {
        /// The range.
        range: String,
        /// `semverFilter`.
        filter: Option<String>,
    },
    /// A tag.
    Tag(String),
}

impl RefSpec {
    /// Flux's precedence over `spec.ref`: digest > semver (with semverFilter) > tag; `latest`
    /// when nothing is set. Empty strings count as unset.
    pub fn from_flux(
        tag: Option<&str>,
        semver: Option<&str>,
        semver_filter: Option<&str>,
        digest: Option<&str>,
    ) -> RefSpec {
        let set = |s: Option<&str>| s.filter(|v| !v.is_empty()).map(str::to_string);
        if let Some(d) = set(digest) {
            RefSpec::Digest(d)
        } else if let Some(range) = set(semver) {
            RefSpec::Semver {
                range,
                filter: set(semver_filter),
            }
        } else {
            RefSpec::Tag(set(tag).unwrap_or_else(|| "latest".to_string()))
        }
    }
}

/// A resolved reference: the tag (none for a digest reference) and the manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The tag resolved (the matching tag for semver).
    pub tag: Option<String>,
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
}

impl Resolved {
    /// Flux's revision: `<tag>@sha256:<hex>` or the digest alone.
    pub fn revision(&self) -> String {
        super::revision(self.tag.as_deref(), &self.digest)
    }
}

/// What is done with the selected layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerOperation {
    /// Untar the tar+gzip layer into a directory.
    #[default]
    Extract,
    /// Keep the layer's bytes as they are.
    Copy,
}

/// What [`Client::pull`] produced.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest (its annotations are Flux's `org.opencontainers.image.*` metadata).
    pub manifest: Manifest,
    /// The layer that was extracted or copied.
    pub layer: Descriptor,
}

/// The layer of `manifest` with `media_type`, or the first layer when `None` (as Flux).
pub fn select_layer<'a>(
    name: &str,
    manifest: &'a Manifest,
    media_type: Option<&str>,
) -> Result<&'a Descriptor> {
    match media_type.filter(|m| !m.is_empty()) {
        None => manifest
            .layers
            .first()
            .ok_or_else(|| SourceError::UnsupportedManifest {
                op: "oci select layer",
                url: name.to_string(),
                detail: "the artifact has no layers".to_string(),
            }),
        Some(mt) => manifest
            .layers
            .iter()
            .find(|l| l.media_type == mt)
            .ok_or_else(|| SourceError::NoMatchingLayer {
                op: "oci select layer",
                url: name.to_string(),
                media_type: mt.to_string(),
                available: manifest
                    .layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

/// Extract a tar+gzip layer into `dest` with plumb's capped, safe extractor.
pub fn extract_layer(data: &[u8], dest: &Path, limits: Limits) -> Result<()> {
    crate::extract::extract_tar_gz(data, dest, limits)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl Client {
    fn not_found(&self, what: String) -> SourceError {
        SourceError::RefNotFound {
            op: "oci resolve",
            url: self.reference.name(),
            reference: what,
        }
    }

    /// Every tag of the repository (following `Link` pagination, at most 100 pages).
    pub fn list_tags(&self) -> Result<Vec<String>> {
        self.list_tags_paged(100, None)
    }

    /// Every tag of the repository, following `Link` pagination to the end; more than
    /// `max_tags` tags is an error rather than an unbounded list in memory.
    pub fn list_tags_max(&self, max_tags: usize) -> Result<Vec<String>> {
        self.list_tags_paged(usize::MAX, Some(max_tags))
    }

    fn list_tags_paged(&self, max_pages: usize, max_tags: Option<usize>) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut url = self.url("tags/list?n=1000");
        for _ in 0..max_pages {
            let resp = self.request("GET", &url, &[], Body::None, "pull")?;
            if resp.status == 404 {
                return Err(self.not_found("repository".to_string()));
            }
            if resp.status != 200 {
                return Err(self.status_err("oci list tags", resp.status));
            }
            let next = resp.header("link").and_then(|l| {
                l.split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map(|(u, _)| self.absolute(u))
            });
            let body = self.read_capped(resp, self.limits.max_manifest_bytes, "tag list")?;
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| SourceError::UnsupportedManifest {
                    op: "oci list tags",
                    url: self.reference.name(),
                    detail: format!("tag list is not JSON: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            if let Some(max) = max_tags
                && tags.len() > max
            {
                return Err(SourceError::UnsupportedManifest {
                    op: "oci list tags",
                    url: self.reference.name(),
                    detail: format!("more than {max} tags"),
                });
            }
            match next {
                Some(n) => url = n,
                None => return Ok(tags),
            }
        }
        Ok(tags)
    }

    /// Resolve `spec` to a manifest digest: no request for a digest, one `HEAD` for a tag,
    /// the tag list plus one `HEAD` for semver.
    pub fn resolve(&self, spec: &RefSpec) -> Result<Resolved> {
        match spec {
            RefSpec::Digest(d) => {
                if !super::is_sha256_digest(d) {
                    return Err(SourceError::Invalid {
                        what: format!("digest '{d}'"),
                        detail: "must be sha256:<64 lower-case hex digits>".to_string(),
                    });
                }
                Ok(Resolved {
                    tag: None,
                    digest: d.clone(),
                })
            }
            RefSpec::Tag(t) => Ok(Resolved {
                tag: Some(t.clone()),
                digest: self.head_manifest(t)?,
            }),
            RefSpec::Semver { range, filter } => {
                let tag = self.semver_tag(range, filter.as_deref())?;
                let digest = self.head_manifest(&tag)?;
                Ok(Resolved {
                    tag: Some(tag),
                    digest,
                })
            }
        }
    }

    fn semver_tag(&self, range: &str, filter: Option<&str>) -> Result<String> {
        let invalid = |what: String, detail: String| SourceError::Invalid { what, detail };
        plumb_semver::Constraint::parse(range)
            .map_err(|d| invalid(format!("semver range '{range}'"), d))?;
        let re = match filter {
            Some(f) => Some(
                regex::Regex::new(f)
                    .map_err(|e| invalid(format!("semverFilter '{f}'"), e.to_string()))?,
            ),
            None => None,
        };
        let tags = self.list_tags()?;
        let candidates = tags
            .iter()
            .map(String::as_str)
            .filter(|t| re.as_ref().is_none_or(|r| r.is_match(t)));
        plumb_semver::highest_match(range, candidates)
            .map_err(|d| invalid(format!("semver range '{range}'"), d))?
            .map(str::to_string)
            .ok_or_else(|| self.not_found(format!("tag matching semver range '{range}'")))
    }

    /// Resolve a Helm chart version in an OCI repository (`oci://host/path/<chart>`) as Helm
    /// does: tags carry `_` where versions have `+`; an exact version is used as the tag
    /// directly (one `HEAD`), a range (or `*`/empty: the highest stable) picks the highest
    /// matching tag. Returns the chart version and the resolved manifest.
    pub fn resolve_helm_chart(&self, version: &str) -> Result<(String, Resolved)> {
        let range = if version.trim().is_empty() {
            "*"
        } else {
            version.trim()
        };
        let exact = plumb_semver::Version::parse(range).is_some()
            && !range.contains(['*', 'x', 'X', '^', '~', '<', '>', '=', '|', ' ', ','])
            && range.matches('.').count() == 2;
        let tag = if exact {
            range.replace('+', "_")
        } else {
            plumb_semver::Constraint::parse(range).map_err(|d| SourceError::Invalid {
                what: format!("chart version range '{range}'"),
                detail: d,
            })?;
            let tags = self.list_tags()?;
            let versions: Vec<String> = tags.iter().map(|t| t.replace('_', "+")).collect();
            let best = plumb_semver::highest_match(range, versions.iter().map(String::as_str))
                .map_err(|d| SourceError::Invalid {
                    what: format!("chart version range '{range}'"),
                    detail: d,
                })?
                .ok_or_else(|| self.not_found(format!("chart version matching '{range}'")))?;
            best.replace('+', "_")
        };
        let digest = self.head_manifest(&tag)?;
        Ok((
            tag.replace('_', "+"),
            Resolved {
                tag: Some(tag),
                digest,
            },
        ))
    }

    /// The digest of the manifest `reference` (a tag or digest) names: one `HEAD`, or a `GET`
    /// when the registry sends no `Docker-Content-Digest`.
    pub fn head_manifest(&self, reference: &str) -> Result<String> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = [("Accept", ACCEPT_MANIFESTS)];
        let resp = self.request("HEAD", &url, &accept, Body::None, "pull")?;
        if resp.status == 404 {
            return Err(self.not_found(format!("tag '{reference}'")));
        }
        if resp.status != 200 {
            return Err(self.status_err("oci resolve", resp.status));
        }
        if let Some(d) = resp.header("docker-content-digest")
            && super::is_sha256_digest(&d)
        {
            return Ok(d);
        }
        let resp = self.request("GET", &url, &accept, Body::None, "pull")?;
        if resp.status != 200 {
            return Err(self.status_err("oci resolve", resp.status));
        }
        let body = self.read_capped(resp, self.limits.max_manifest_bytes, "manifest")?;
        Ok(sha256(&body))
    }

    /// The raw manifest `reference` names and its media type (for [`Client::tag`]).
    pub(crate) fn raw_manifest(&self, reference: &str) -> Result<(Vec<u8>, String)> {
        let url = self.url(&format!("manifests/{reference}"));
        let resp = self.request(
            "GET",
            &url,
            &[("Accept", ACCEPT_MANIFESTS)],
            Body::None,
            "pull",
        )?;
        if resp.status == 404 {
            return Err(self.not_found(format!("manifest '{reference}'")));
        }
        if resp.status != 200 {
            return Err(self.status_err("oci fetch manifest", resp.status));
        }
        let ct = resp.header("content-type").unwrap_or_default();
        let body = self.read_capped(resp, self.limits.max_manifest_bytes, "manifest")?;
        Ok((body, ct))
    }

    /// Download and parse the image manifest with `digest`, verifying the digest. Image
    /// indexes and other media types are refused.
    pub fn fetch_manifest(&self, digest: &str) -> Result<Manifest> {
        let (body, ct) = self.raw_manifest(digest)?;
        let actual = sha256(&body);
        if actual != digest {
            return Err(SourceError::DigestMismatch {
                op: "oci fetch manifest",
                url: self.reference.name(),
                expected: digest.to_string(),
                actual,
            });
        }
        let unsupported = |detail: String| SourceError::UnsupportedManifest {
            op: "oci fetch manifest",
            url: format!("{}@{digest}", self.reference.name()),
            detail,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| unsupported(format!("not JSON: {e}")))?;
        let mt = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or(ct);
        if mt.contains("index") || mt.contains("manifest.list") || v.get("manifests").is_some() {
            return Err(unsupported(format!(
                "media type '{mt}' is an image index, not an artifact manifest"
            )));
        }
        if !(mt.is_empty()
            || mt.starts_with("application/vnd.oci.image.manifest.v1+json")
            || mt.starts_with("application/vnd.docker.distribution.manifest.v2+json"))
        {
            return Err(unsupported(format!("media type '{mt}'")));
        }
        let m: Manifest =
            serde_json::from_value(v).map_err(|e| unsupported(format!("invalid manifest: {e}")))?;
        if m.schema_version != 2 {
            return Err(unsupported(format!("schemaVersion {}", m.schema_version)));
        }
        Ok(m)
    }

    /// Download the blob `desc` describes, at most `cap` bytes, and verify its size and digest.
    pub fn fetch_blob(&self, desc: &Descriptor, cap: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.fetch_blob_to(desc, cap, &mut out)?;
        Ok(out)
    }

    /// Stream the blob `desc` describes into `out` (at most `cap` bytes), verifying its size
    /// and digest at the end: on error `out` holds unverified bytes and must be discarded.
    pub fn fetch_blob_to<W: std::io::Write>(
        &self,
        desc: &Descriptor,
        cap: u64,
        out: &mut W,
    ) -> Result<()> {
        let what = format!("blob {}", desc.digest);
        let too_large = |size: u64| SourceError::TooLarge {
            op: "oci pull",
            path: format!("{} {what}", self.reference.name()),
            size,
            limit: cap,
        };
        if !super::is_sha256_digest(&desc.digest) {
            return Err(SourceError::UnsupportedManifest {
                op: "oci fetch blob",
                url: self.reference.name(),
                detail: format!("digest '{}' is not sha256", desc.digest),
            });
        }
        if desc.size > cap {
            return Err(too_large(desc.size));
        }
        let url = self.url(&format!("blobs/{}", desc.digest));
        let mut resp = self.request("GET", &url, &[], Body::None, "pull")?;
        if resp.status == 404 {
            return Err(self.not_found(what));
        }
        if resp.status != 200 {
            return Err(self.status_err("oci fetch blob", resp.status));
        }
        let mut reader = resp.inner.body_mut().as_reader().take(cap + 1);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(|e| self.read_err(&what, e))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > cap {
                return Err(too_large(size));
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(SourceError::io("write blob", what.clone()))?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != desc.digest || size != desc.size {
            return Err(SourceError::DigestMismatch {
                op: "oci fetch blob",
                url: self.reference.name(),
                expected: format!("{} ({} bytes)", desc.digest, desc.size),
                actual: format!("{actual} ({size} bytes)"),
            });
        }
        Ok(())
    }

    /// Select the layer (see [`select_layer`]) and download it within the layer cap.
    pub fn fetch_layer(
        &self,
        manifest: &Manifest,
        media_type: Option<&str>,
    ) -> Result<(Descriptor, Vec<u8>)> {
        let layer = select_layer(&self.reference.name(), manifest, media_type)?.clone();
        let data = self.fetch_blob(&layer, self.limits.max_layer_bytes)?;
        Ok((layer, data))
    }

    /// Download the manifest `resolved` names and its layer (see [`select_layer`]), then with
    /// [`LayerOperation::Extract`] extract it into the directory `dest` (capped by `limits`),
    /// or with [`LayerOperation::Copy`] stream it verbatim into the file `dest`.
    pub fn pull(
        &self,
        resolved: &Resolved,
        media_type: Option<&str>,
        operation: LayerOperation,
        dest: &Path,
        limits: Limits,
    ) -> Result<Pulled> {
        let manifest = self.fetch_manifest(&resolved.digest)?;
        let layer = select_layer(&self.reference.name(), &manifest, media_type)?.clone();
        match operation {
            LayerOperation::Extract => {
                let data = self.fetch_blob(&layer, self.limits.max_layer_bytes)?;
                extract_layer(&data, dest, limits)?;
            }
            LayerOperation::Copy => {
                let mut f = std::fs::File::create(dest).map_err(SourceError::io("create", dest))?;
                let r = self.fetch_blob_to(&layer, self.limits.max_layer_bytes, &mut f);
                if r.is_err() {
                    let _ = std::fs::remove_file(dest);
                }
                r?;
            }
        }
        Ok(Pulled { manifest, layer })
    }
}
