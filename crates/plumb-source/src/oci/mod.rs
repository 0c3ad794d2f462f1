//! An OCI distribution client for Flux's OCI artifacts (no kube client).
//!
//! - [`parse_url`]: `oci://host[:port]/repo[:tag][@sha256:hex]` into a [`Reference`].
//! - [`Client`] ([`client`]): one registry repository over HTTPS (custom CA, client
//!   certificate) or plain HTTP (`insecure`), with a global timeout; anonymous, basic, or the
//!   distribution bearer-token flow (`WWW-Authenticate: Bearer realm=…`), credentials from a
//!   `.dockerconfigjson` ([`Credentials::from_docker_config`]). Error messages never hold a
//!   credential.
//! - Pull ([`pull`]): [`Client::resolve`] applies Flux's precedence (digest > semver with
//!   `semverFilter` > tag, default `latest`) and costs one `HEAD` of the manifest for a tag
//!   (none for a digest), so a caller compares [`Resolved::digest`] with what it has and skips
//!   the download when it is unchanged; [`Client::fetch_manifest`] and
//!   [`Client::fetch_layer`] then download by digest with size caps and verify every blob's
//!   digest; [`select_layer`] picks the layer by `layerSelector.mediaType`.
//! - Push ([`push`]): [`Client::push_artifact`] writes exactly `flux push artifact`'s layout
//!   (OCI image manifest, config of media type `application/vnd.cncf.flux.config.v1+json`
//!   holding go-containerregistry's empty-image config, one deterministic tar+gzip layer of
//!   `application/vnd.cncf.flux.content.v1.tar+gzip`, the `org.opencontainers.image.*`
//!   annotations); [`Client::tag`] copies a manifest to a new tag.
//! - Verify ([`cosign`]): [`Client::verify_cosign`] checks a cosign signature with trusted
//!   public keys, offline.
//!
//! Hand-written on `ureq` (OpenSSL through native-tls, as the client-certificate git transport):
//! the Rust OCI clients sit on reqwest, whose rustls would bring a second crypto provider (or
//! ring) into the process next to kube's aws-lc-rs, and none offers size caps on manifests and
//! blobs nor client certificates. Calls are blocking: async callers use `spawn_blocking`.

pub mod client;
pub mod cosign;
pub mod pull;
pub mod push;

pub use client::{Client, ClientOptions, Credentials, OciLimits, ProxyConfig};
pub use pull::{Descriptor, LayerOperation, Manifest, Pulled, RefSpec, Resolved, select_layer};
pub use push::{PushMeta, Pushed};

use crate::{Result, SourceError};

/// An `oci://` address split into registry, repository and optional tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host as written (`ghcr.io`, `127.0.0.1:5000`, `docker.io`).
    pub registry: String,
    /// Repository path (`org/app`; `library/x` for a one-segment Docker Hub name).
    pub repository: String,
    /// Tag after `:`, if any.
    pub tag: Option<String>,
    /// Digest after `@`, if any.
    pub digest: Option<String>,
}

impl Reference {
    /// Host the API is served from (Docker Hub's `docker.io` is `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            h => h,
        }
    }

    /// `host/repo`, the name used in messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `host/repo[:tag][@digest]`.
    pub fn to_string_with_ref(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

fn invalid(what: &str, detail: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// Whether `d` is `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_tag(t: &str) -> bool {
    // Distribution's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
    !t.is_empty()
        && t.len() <= 128
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_repository(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        })
}

/// Parse `oci://host[:port]/repo[:tag][@sha256:hex]`. Credentials in the URL are refused
/// (and never echoed back).
pub fn parse_url(url: &str) -> Result<Reference> {
    let what = "OCI URL";
    let rest = url
        .strip_prefix(OCI_PREFIX)
        .ok_or_else(|| invalid(what, format!("'{url}' does not start with oci://")))?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid(what, format!("'{url}' has no repository path")))?;
    if host.contains('@') {
        return Err(invalid(
            what,
            "credentials in the URL are not allowed; use a secret",
        ));
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(invalid(what, format!("'{url}' has an invalid host")));
    }
    let (path, digest) = match path.split_once('@') {
        Some((p, d)) => {
            if !is_sha256_digest(d) {
                return Err(invalid(
                    what,
                    format!("'{url}': digest must be sha256:<64 hex digits>"),
                ));
            }
            (p, Some(d.to_string()))
        }
        None => (path, None),
    };
    // A `:` after the last `/` starts the tag.
    let (repo, tag) = match path.rfind(':') {
        Some(i) if !path[i..].contains('/') => (&path[..i], Some(path[i + 1..].to_string())),
        _ => (path, None),
    };
    if let Some(t) = &tag
        && !valid_tag(t)
    {
        return Err(invalid(what, format!("'{url}' has an invalid tag")));
    }
    let mut repository = repo.to_string();
    if matches!(host, "docker.io" | "index.docker.io") && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    if !valid_repository(&repository) {
        return Err(invalid(
            what,
            format!("'{url}' has an invalid repository name (lower-case path components)"),
        ));
    }
    Ok(Reference {
        registry: host.to_string(),
        repository,
        tag,
        digest,
    })
}

/// Scheme prefix of OCI URLs (plumb-api's `consts::oci::URL_PREFIX`; leaves do not depend on
/// each other).
const OCI_PREFIX: &str = "oci://";

/// The revision Flux writes for a pulled artifact: `<tag>@sha256:<hex>`, or the digest alone
/// when the reference named only a digest.
pub fn revision(tag: Option<&str>, digest: &str) -> String {
    match tag {
        Some(t) => format!("{t}@{digest}"),
        None => digest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2b4ec3a4c7e4c1a9a0a5a1e3e8b0f6a9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5";

    #[test]
    fn parses_hosts_tags_and_digests() {
        let r = parse_url("oci://ghcr.io/stefanprodan/manifests/podinfo").unwrap();
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "stefanprodan/manifests/podinfo");
        assert_eq!((r.tag, r.digest), (None, None));
        let r = parse_url("oci://127.0.0.1:5000/app:v1.2.3").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag.as_deref(), Some("v1.2.3"));
        let r = parse_url(&format!("oci://localhost:5000/a/b:t@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.digest.as_deref(), Some(D));
        let r = parse_url("oci://docker.io/nginx").unwrap();
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.api_host(), "registry-1.docker.io");
    }

    #[test]
    fn rejects_bad_urls_without_echoing_credentials() {
        for bad in [
            "https://ghcr.io/x",
            "oci://ghcr.io",
            "oci://ghcr.io/UPPER",
            "oci://ghcr.io/x:bad tag",
            "oci://ghcr.io/x@sha256:abc",
            "oci://ghcr.io//x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let e = parse_url("oci://user:hunter2@ghcr.io/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn revision_format_is_fluxs() {
        assert_eq!(revision(Some("6.5.4"), D), format!("6.5.4@{D}"));
        assert_eq!(revision(None, D), D);
    }
}
