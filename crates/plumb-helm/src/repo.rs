//! Helm chart repositories (the classic `index.yaml` kind).
//!
//! - [`IndexFile::parse`]: `index.yaml` with a size cap and a YAML budget; entries whose
//!   version is not semver are dropped (as Helm does) and each chart's versions are sorted
//!   newest first. [`IndexFile::to_canonical_json`] is the stored artifact form and its
//!   sha256 the revision.
//! - [`IndexFile::resolve`]: Flux's rules: an exact version string wins; otherwise the
//!   highest version matching the Masterminds range; an empty range or `*` means the latest
//!   stable version; pre-releases only when the range names one; equal versions are ordered
//!   by `created`.
//! - [`RepoClient`]: HTTP(S) with basic auth, `ca.crt` added to the platform roots, a client
//!   certificate, a total timeout and response size caps. Credentials go to chart URLs on
//!   another host only with `passCredentials` (Flux's and Helm's rule). Relative chart URLs
//!   resolve against the repository URL, keeping its query.
//! - [`ChartCache`]: downloaded archives on disk by sha256, verified on read and write.
//!
//! Errors are [`HelmError::Repo`] with a [`RepoErrorKind`]; URLs in them lose userinfo and
//! query, and transport errors are rendered without their URL, so no credential leaks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{HelmError, RepoErrorKind};
use crate::semver::{self, Version};

/// Default cap of an `index.yaml` (Flux's `--helm-index-max-size`, 50 MiB).
pub const MAX_INDEX_SIZE: u64 = 50 << 20;
/// Default cap of a chart archive (Flux's `--helm-chart-max-size`, 10 MiB).
pub const MAX_CHART_SIZE: u64 = 10 << 20;

/// A parsed repository index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexFile {
    /// `apiVersion` (`v1`).
    #[serde(default)]
    pub api_version: String,
    /// When the index was generated (as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    /// Chart name to versions, newest first after [`IndexFile::parse`].
    #[serde(default)]
    pub entries: BTreeMap<String, Vec<ChartVersion>>,
    /// Other top-level fields, kept for the stored artifact.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One chart version of an index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartVersion {
    /// Chart name.
    #[serde(default)]
    pub name: String,
    /// Chart version (semver).
    #[serde(default)]
    pub version: String,
    /// Download URLs, absolute or relative to the repository URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// sha256 of the archive (hex, optionally `sha256:`-prefixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Creation time (RFC 3339), the tie-breaker between equal versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Other fields (appVersion, description, dependencies...), kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ChartVersion {
    /// The index digest as lowercase hex (prefix removed), when it has one.
    pub fn digest_hex(&self) -> Option<String> {
        let d = self.digest.as_deref()?.trim();
        let d = d.strip_prefix("sha256:").unwrap_or(d);
        (!d.is_empty()).then(|| d.to_ascii_lowercase())
    }
}

fn repo_err(
    op: &'static str,
    url: impl Into<String>,
    kind: RepoErrorKind,
    msg: impl Into<String>,
) -> HelmError {
    HelmError::Repo {
        op,
        url: url.into(),
        kind,
        msg: msg.into(),
    }
}

fn yaml_options() -> serde_saphyr::Options {
    // Real indexes are large (tens of thousands of versions) but use no aliases.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_INDEX_SIZE as usize + 1);
    budget.max_events = 100_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_aliases = 1_000;
    budget.max_total_scalar_bytes = MAX_INDEX_SIZE as usize + 1;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    o
}

impl IndexFile {
    /// Parses an `index.yaml` (or its JSON form) of at most `max_size` bytes. `source`
    /// names it in errors. Entries without a valid semver version are dropped, versions
    /// are sorted newest first.
    pub fn parse(data: &[u8], max_size: u64, source: &str) -> Result<IndexFile, HelmError> {
        const OP: &str = "parse index";
        if data.len() as u64 > max_size {
            return Err(repo_err(
                OP,
                source,
                RepoErrorKind::TooLarge,
                format!(
                    "index is {} bytes, over the {max_size} byte limit",
                    data.len()
                ),
            ));
        }
        let text = std::str::from_utf8(data)
            .map_err(|e| repo_err(OP, source, RepoErrorKind::BadContent, e.to_string()))?;
        if text.trim().is_empty() {
            return Err(repo_err(
                OP,
                source,
                RepoErrorKind::BadContent,
                "index is empty",
            ));
        }
        let mut index: IndexFile = serde_saphyr::from_str_with_options(text, yaml_options())
            .map_err(|e| {
                let mut msg = e.to_string();
                // At a char boundary: the parser's message may quote multi-byte text.
                let mut cut = msg.len().min(400);
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                msg.truncate(cut);
                repo_err(OP, source, RepoErrorKind::BadContent, msg)
            })?;
        if index.api_version.is_empty() {
            return Err(repo_err(
                OP,
                source,
                RepoErrorKind::BadContent,
                "no API version specified",
            ));
        }
        index.normalize();
        Ok(index)
    }

    /// Parses the stored artifact form ([`IndexFile::to_canonical_json`]).
    pub fn from_json(data: &[u8], source: &str) -> Result<IndexFile, HelmError> {
        let mut index: IndexFile = serde_json::from_slice(data).map_err(|e| {
            repo_err(
                "parse index",
                source,
                RepoErrorKind::BadContent,
                e.to_string(),
            )
        })?;
        index.normalize();
        Ok(index)
    }

    fn normalize(&mut self) {
        for (name, versions) in self.entries.iter_mut() {
            versions.retain(|v| Version::parse(&v.version).is_some());
            for v in versions.iter_mut() {
                if v.name.is_empty() {
                    v.name = name.clone();
                }
            }
            // Newest first; equal versions by creation time, newest first.
            versions.sort_by(|a, b| {
                let (va, vb) = (Version::parse(&a.version), Version::parse(&b.version));
                match (va, vb) {
                    (Some(x), Some(y)) => y.cmp(&x).then_with(|| b.created.cmp(&a.created)),
                    _ => std::cmp::Ordering::Equal,
                }
            });
        }
        self.entries.retain(|_, v| !v.is_empty());
    }

    /// The stored form: compact JSON (valid YAML) of the normalized index. Deterministic
    /// for a given index, so its sha256 is the artifact revision.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Resolves `name` at `range` (Masterminds syntax; empty or `*`: latest stable) with
    /// Flux's rules (see the module docs).
    pub fn resolve(&self, name: &str, range: &str) -> Result<&ChartVersion, HelmError> {
        const OP: &str = "resolve chart";
        let reference = format!("{name}@{}", if range.is_empty() { "*" } else { range });
        let Some(versions) = self.entries.get(name) else {
            return Err(repo_err(
                OP,
                reference,
                RepoErrorKind::ChartNotFound,
                format!("no chart name found: chart '{name}' is not in the repository index"),
            ));
        };
        let range = range.trim();
        if !range.is_empty()
            && let Some(v) = versions.iter().find(|v| v.version == range)
        {
            return Ok(v);
        }
        let constraint = if range.is_empty() { "*" } else { range };
        // Validate the range once so a bad one is an input error, not "no match".
        semver::constraint_matches(constraint, "0.0.0").map_err(|e| {
            repo_err(
                OP,
                reference.clone(),
                RepoErrorKind::InvalidInput,
                format!("invalid version range '{constraint}': {e}"),
            )
        })?;
        // Versions are sorted newest first, so the first match is the answer.
        versions
            .iter()
            .find(|v| semver::constraint_matches(constraint, &v.version).unwrap_or(false))
            .ok_or_else(|| {
                repo_err(
                    OP,
                    reference,
                    RepoErrorKind::NoMatchingVersion,
                    format!("no '{name}' chart with version matching '{constraint}' found"),
                )
            })
    }
}

/// sha256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Removes userinfo and query from a URL for messages (unparseable input is elided).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => match url.rsplit_once('@') {
            Some((_, rest)) => format!("<redacted>@{rest}"),
            None => url.to_string(),
        },
    }
}

/// Basic-auth credentials (Debug hides the password).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How to reach a repository.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Basic auth (Flux: `secretRef` with `username` and `password`).
    pub auth: Option<BasicAuth>,
    /// Send `auth` to chart URLs on other hosts too.
    pub pass_credentials: bool,
    /// Extra trusted CA certificates (PEM, `ca.crt`), added to the platform roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM, `tls.crt` and `tls.key`).
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Total timeout of each request.
    pub timeout: Duration,
    /// Cap of the index size.
    pub max_index_size: u64,
    /// Cap of a chart archive's size.
    pub max_chart_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            auth: None,
            pass_credentials: false,
            ca_pem: None,
            client_cert: None,
            timeout: Duration::from_secs(60),
            max_index_size: MAX_INDEX_SIZE,
            max_chart_size: MAX_CHART_SIZE,
        }
    }
}

/// An HTTP(S) client for one repository URL.
#[derive(Debug, Clone)]
pub struct RepoClient {
    http: reqwest::Client,
    base: reqwest::Url,
    opts: ClientOptions,
}

/// A fetched index: parsed, plus its canonical bytes and their sha256.
#[derive(Debug, Clone)]
pub struct FetchedIndex {
    /// The parsed, normalized index.
    pub index: IndexFile,
    /// [`IndexFile::to_canonical_json`].
    pub canonical: Vec<u8>,
    /// sha256 hex of `canonical` (the revision is `sha256:<hex>`).
    pub digest: String,
}

impl RepoClient {
    /// A client for the repository at `url` (`http://` or `https://`).
    pub fn new(url: &str, opts: ClientOptions) -> Result<RepoClient, HelmError> {
        const OP: &str = "configure client for";
        let shown = redact_url(url);
        let base = reqwest::Url::parse(url).map_err(|e| {
            repo_err(
                OP,
                shown.clone(),
                RepoErrorKind::InvalidInput,
                format!("invalid URL: {e}"),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(repo_err(
                OP,
                shown,
                RepoErrorKind::InvalidInput,
                "the URL must be http:// or https:// with a host",
            ));
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| {
                repo_err(
                    OP,
                    shown.clone(),
                    RepoErrorKind::Auth,
                    format!("invalid ca.crt: {}", source_chain(&e)),
                )
            })?;
            if certs.is_empty() {
                return Err(repo_err(
                    OP,
                    shown,
                    RepoErrorKind::Auth,
                    "invalid ca.crt: no PEM certificate",
                ));
            }
            b = b.tls_certs_merge(certs);
        }
        if let Some((crt, key)) = &opts.client_cert {
            let mut pem = crt.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                repo_err(
                    OP,
                    shown.clone(),
                    RepoErrorKind::Auth,
                    format!("invalid tls.crt/tls.key: {}", source_chain(&e)),
                )
            })?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| {
            repo_err(
                OP,
                shown.clone(),
                RepoErrorKind::InvalidInput,
                source_chain(&e),
            )
        })?;
        Ok(RepoClient { http, base, opts })
    }

    /// The repository URL.
    pub fn url(&self) -> &reqwest::Url {
        &self.base
    }

    /// `<url>/index.yaml` (the query of the repository URL kept).
    pub fn index_url(&self) -> reqwest::Url {
        let mut u = self.base.clone();
        let path = format!("{}/index.yaml", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }

    /// Where `cv` is downloaded from: its first URL, resolved against the repository URL
    /// when relative (as Helm's `ResolveReferenceURL`).
    pub fn chart_url(&self, cv: &ChartVersion) -> Result<reqwest::Url, HelmError> {
        let reference = format!("{}@{}", cv.name, cv.version);
        let Some(first) = cv.urls.first() else {
            return Err(repo_err(
                "download chart",
                reference,
                RepoErrorKind::BadContent,
                "the index lists no URL for this chart version",
            ));
        };
        if let Ok(abs) = reqwest::Url::parse(first) {
            return Ok(abs);
        }
        let mut base = self.base.clone();
        let path = format!("{}/", base.path().trim_end_matches('/'));
        base.set_path(&path);
        let query = base.query().map(str::to_string);
        let mut u = base.join(first).map_err(|e| {
            repo_err(
                "download chart",
                reference,
                RepoErrorKind::BadContent,
                format!("invalid chart URL '{}': {e}", redact_url(first)),
            )
        })?;
        u.set_query(query.as_deref());
        Ok(u)
    }

    /// Whether credentials go to `target`: same host and port as the repository, or
    /// `passCredentials`.
    pub fn sends_credentials_to(&self, target: &reqwest::Url) -> bool {
        self.opts.pass_credentials
            || (target.host_str() == self.base.host_str()
                && target.port_or_known_default() == self.base.port_or_known_default())
    }

    async fn get(
        &self,
        op: &'static str,
        url: reqwest::Url,
        max: u64,
    ) -> Result<Vec<u8>, HelmError> {
        let shown = redact_url(url.as_str());
        let mut req = self.http.get(url.clone());
        if let Some(a) = &self.opts.auth
            && self.sends_credentials_to(&url)
        {
            req = req.basic_auth(&a.username, Some(&a.password));
        }
        let mut resp = req.send().await.map_err(|e| transport(op, &shown, e))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = match status.as_u16() {
                401 | 403 => RepoErrorKind::Auth,
                404 => RepoErrorKind::NotFound,
                _ => RepoErrorKind::Unreachable,
            };
            return Err(repo_err(
                op,
                shown,
                kind,
                format!("server answered {status}"),
            ));
        }
        let too_large = |n: u64| {
            repo_err(
                op,
                shown.clone(),
                RepoErrorKind::TooLarge,
                format!("response of {n} bytes exceeds the {max} byte limit"),
            )
        };
        if let Some(n) = resp.content_length()
            && n > max
        {
            return Err(too_large(n));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(op, &shown, e))? {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(too_large((body.len() + chunk.len()) as u64));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Downloads and parses `index.yaml`.
    pub async fn fetch_index(&self) -> Result<FetchedIndex, HelmError> {
        let url = self.index_url();
        let shown = redact_url(url.as_str());
        let data = self
            .get("fetch index", url, self.opts.max_index_size)
            .await?;
        let index = IndexFile::parse(&data, self.opts.max_index_size, &shown)?;
        let canonical = index.to_canonical_json();
        let digest = sha256_hex(&canonical);
        Ok(FetchedIndex {
            index,
            canonical,
            digest,
        })
    }

    /// Downloads the archive of `cv`, verified against its index digest. With a cache and
    /// a digest, a cached copy is returned without a request and a download is cached.
    pub async fn download_chart(
        &self,
        cv: &ChartVersion,
        cache: Option<&ChartCache>,
    ) -> Result<Vec<u8>, HelmError> {
        let digest = cv.digest_hex();
        if let (Some(c), Some(d)) = (cache, &digest)
            && let Some(data) = c.get(d)?
        {
            return Ok(data);
        }
        let url = self.chart_url(cv)?;
        let shown = redact_url(url.as_str());
        let data = self
            .get("download chart", url, self.opts.max_chart_size)
            .await?;
        if let Some(d) = &digest {
            let actual = sha256_hex(&data);
            if &actual != d {
                return Err(repo_err(
                    "download chart",
                    shown,
                    RepoErrorKind::BadContent,
                    format!(
                        "digest mismatch for {}@{}: the index says sha256:{d}, the archive is sha256:{actual}",
                        cv.name, cv.version
                    ),
                ));
            }
            if let Some(c) = cache {
                c.put(d, &data)?;
            }
        }
        Ok(data)
    }
}

/// A transport error without its URL (which may carry userinfo), with its causes.
fn transport(op: &'static str, shown: &str, e: reqwest::Error) -> HelmError {
    let kind = if e.is_timeout() {
        RepoErrorKind::Timeout
    } else if e.is_builder() {
        RepoErrorKind::InvalidInput
    } else {
        RepoErrorKind::Unreachable
    };
    repo_err(op, shown, kind, source_chain(&e.without_url()))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        cur = s.source();
    }
    msg
}

/// Chart archives on disk by sha256 (`<dir>/<hex>.tgz`), shared by every repository:
/// equal digests are equal archives.
#[derive(Debug, Clone)]
pub struct ChartCache {
    dir: PathBuf,
}

impl ChartCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ChartCache {
        ChartCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hex_digest: &str) -> Result<PathBuf, HelmError> {
        if hex_digest.len() != 64 || !hex_digest.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(repo_err(
                "chart cache",
                hex_digest.chars().take(80).collect::<String>(),
                RepoErrorKind::BadContent,
                "not a sha256 hex digest",
            ));
        }
        Ok(self.dir.join(format!("{hex_digest}.tgz")))
    }

    /// The cached archive with that digest, verified; a corrupt copy is removed.
    pub fn get(&self, hex_digest: &str) -> Result<Option<Vec<u8>>, HelmError> {
        let p = self.path(hex_digest)?;
        match std::fs::read(&p) {
            Ok(data) if sha256_hex(&data) == hex_digest => Ok(Some(data)),
            Ok(_) => {
                let _ = std::fs::remove_file(&p);
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(repo_err(
                "read chart cache",
                p.display().to_string(),
                RepoErrorKind::Io,
                e.to_string(),
            )),
        }
    }

    /// Stores `data` under `hex_digest` atomically (it must be its sha256).
    pub fn put(&self, hex_digest: &str, data: &[u8]) -> Result<(), HelmError> {
        let p = self.path(hex_digest)?;
        if sha256_hex(data) != hex_digest {
            return Err(repo_err(
                "write chart cache",
                p.display().to_string(),
                RepoErrorKind::BadContent,
                "data does not match the digest",
            ));
        }
        let io = |e: std::io::Error| {
            repo_err(
                "write chart cache",
                p.display().to_string(),
                RepoErrorKind::Io,
                e.to_string(),
            )
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io)?;
        std::io::Write::write_all(tmp.as_file_mut(), data).map_err(io)?;
        tmp.persist(&p).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parser message cut at 400 bytes inside a multi-byte character once panicked
    /// (found by the `helm_index` fuzz target; the input is its seed too).
    #[test]
    fn long_parse_errors_are_cut_at_a_char_boundary() {
        let data = include_bytes!("../../../fuzz/seeds/helm_index/regression-long-error-utf8");
        let err = IndexFile::parse(data, 1 << 20, "fuzz").unwrap_err();
        assert!(err.to_string().len() < 1000, "{err}");
        let mut long = String::from("apiVersion: v1\nentries: [");
        long.push_str(&"é".repeat(600));
        assert!(IndexFile::parse(long.as_bytes(), 1 << 20, "fuzz").is_err());
    }

    const INDEX: &str = r#"
apiVersion: v1
generated: "2024-01-01T00:00:00Z"
entries:
  app:
    - name: app
      version: 1.2.0
      urls: [charts/app-1.2.0.tgz]
      digest: aaaa
      created: "2024-01-02T00:00:00Z"
      appVersion: "1.0"
    - name: app
      version: 2.0.0-rc.1
      urls: [app-2.0.0-rc.1.tgz]
    - name: app
      version: 1.10.1
      urls: [https://cdn.example.com/app-1.10.1.tgz]
    - name: app
      version: not-a-version
      urls: [x.tgz]
    - name: app
      version: 1.2.0
      urls: [charts/app-1.2.0-new.tgz]
      created: "2024-03-01T00:00:00Z"
  other:
    - version: 0.1.0
      urls: [other-0.1.0.tgz]
"#;

    fn index() -> IndexFile {
        IndexFile::parse(INDEX.as_bytes(), MAX_INDEX_SIZE, "test").unwrap()
    }

    #[test]
    fn parse_sorts_and_drops_invalid_versions() {
        let i = index();
        let v: Vec<&str> = i.entries["app"]
            .iter()
            .map(|c| c.version.as_str())
            .collect();
        assert_eq!(v, ["2.0.0-rc.1", "1.10.1", "1.2.0", "1.2.0"]);
        assert_eq!(
            i.entries["other"][0].name, "other",
            "name filled from the key"
        );
        assert_eq!(i.entries["app"][2].extra.len(), 0);
        assert!(i.entries["app"][3].extra.contains_key("appVersion"));
    }

    #[test]
    fn resolve_follows_flux_rules() {
        let i = index();
        let r = |range: &str| i.resolve("app", range).map(|c| c.version.clone());
        assert_eq!(r("").unwrap(), "1.10.1", "empty range: latest stable");
        assert_eq!(r("*").unwrap(), "1.10.1");
        assert_eq!(r("~1.2").unwrap(), "1.2.0");
        assert_eq!(
            r(">=1.0.0-0").unwrap(),
            "2.0.0-rc.1",
            "pre-release when asked"
        );
        assert_eq!(r("2.0.0-rc.1").unwrap(), "2.0.0-rc.1", "exact string");
        assert_eq!(r("<1.5 || >=3").unwrap(), "1.2.0");
        // Equal versions: the newest `created` wins.
        assert_eq!(
            i.resolve("app", "1.2.0").unwrap().urls[0],
            "charts/app-1.2.0-new.tgz"
        );
        let kind = |e: HelmError| e.repo_kind().unwrap();
        assert_eq!(
            kind(r(">=5").unwrap_err()),
            RepoErrorKind::NoMatchingVersion
        );
        assert_eq!(kind(r("!!bad").unwrap_err()), RepoErrorKind::InvalidInput);
        let e = i.resolve("nope", "").unwrap_err();
        assert_eq!(e.repo_kind(), Some(RepoErrorKind::ChartNotFound));
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn bad_indexes_are_clear_errors() {
        let e = IndexFile::parse(b"entries: {}", 100, "u").unwrap_err();
        assert!(e.to_string().contains("no API version"), "{e}");
        let e = IndexFile::parse(b"apiVersion: v1\nentries: [", 100, "u").unwrap_err();
        assert_eq!(e.repo_kind(), Some(RepoErrorKind::BadContent));
        let e = IndexFile::parse(&[b' '; 200], 100, "u").unwrap_err();
        assert_eq!(e.repo_kind(), Some(RepoErrorKind::TooLarge));
        assert!(IndexFile::parse(b"", 100, "u").is_err());
        assert!(IndexFile::parse(&[0xff, 0xfe], 100, "u").is_err());
    }

    #[test]
    fn canonical_json_round_trips_with_a_stable_digest() {
        let i = index();
        let j = i.to_canonical_json();
        let back = IndexFile::from_json(&j, "artifact").unwrap();
        assert_eq!(back, i);
        assert_eq!(sha256_hex(&back.to_canonical_json()), sha256_hex(&j));
        // The same content in another order has the same revision.
        let reordered = INDEX
            .replace("  other:", "  zz:")
            .replace("  zz:", "  other:");
        let again = IndexFile::parse(reordered.as_bytes(), MAX_INDEX_SIZE, "t").unwrap();
        assert_eq!(again.to_canonical_json(), j);
    }

    #[test]
    fn chart_urls_resolve_against_the_repo_url() {
        let c = RepoClient::new(
            "https://user:pw@charts.example.com/sub/?token=t",
            ClientOptions::default(),
        )
        .unwrap();
        let i = index();
        let app = &i.entries["app"];
        assert_eq!(
            c.chart_url(&app[2]).unwrap().as_str(),
            "https://user:pw@charts.example.com/sub/charts/app-1.2.0-new.tgz?token=t"
        );
        assert_eq!(
            c.chart_url(&app[1]).unwrap().as_str(),
            "https://cdn.example.com/app-1.10.1.tgz"
        );
        assert_eq!(
            c.index_url().as_str(),
            "https://user:pw@charts.example.com/sub/index.yaml?token=t"
        );
        assert!(!c.sends_credentials_to(&c.chart_url(&app[1]).unwrap()));
        assert!(c.sends_credentials_to(&c.chart_url(&app[2]).unwrap()));
        assert_eq!(
            redact_url("https://user:pw@charts.example.com/sub/?token=t"),
            "https://charts.example.com/sub/"
        );
        let pass = RepoClient::new(
            "https://charts.example.com",
            ClientOptions {
                pass_credentials: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(pass.sends_credentials_to(&c.chart_url(&app[1]).unwrap()));
    }

    #[test]
    fn bad_client_input_is_rejected() {
        let e = RepoClient::new("oci://r.example.com/x", ClientOptions::default()).unwrap_err();
        assert_eq!(e.repo_kind(), Some(RepoErrorKind::InvalidInput));
        let e = RepoClient::new(
            "https://r.example.com",
            ClientOptions {
                ca_pem: Some(b"not a pem".to_vec()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.repo_kind(), Some(RepoErrorKind::Auth));
    }

    #[test]
    fn cache_verifies_digests() {
        let dir = tempfile::tempdir().unwrap();
        let c = ChartCache::new(dir.path().join("c"));
        let data = b"chart bytes";
        let d = sha256_hex(data);
        assert_eq!(c.get(&d).unwrap(), None);
        c.put(&d, data).unwrap();
        assert_eq!(c.get(&d).unwrap().as_deref(), Some(&data[..]));
        assert!(c.put(&d, b"other").is_err());
        std::fs::write(dir.path().join("c").join(format!("{d}.tgz")), b"corrupt").unwrap();
        assert_eq!(c.get(&d).unwrap(), None, "a corrupt entry is a miss");
        assert!(c.get("../../etc/passwd").is_err());
    }
}
