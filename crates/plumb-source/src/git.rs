//! Fetch into a persistent bare cache and check out trees, with Flux's reference resolution.
//!
//! Every network operation runs on its own thread bounded by [`FetchOptions::timeout`]: the
//! caller gets [`SourceError::Timeout`] at the deadline even when a server accepts and stalls;
//! libgit2's own connect and I/O timeouts ([`set_network_timeouts`]) and a progress callback
//! that aborts after the deadline make the abandoned thread unwind soon after. A cache in use by
//! such a thread is reported [`SourceError::Busy`] until it does.
//!
//! Steady state: a fetch of a reference whose target is already in the cache downloads no pack
//! (libgit2 sends no `want` when every advertised object is local), so an unchanged remote
//! costs one ref advertisement; a commit reference already in the cache costs no network at all.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use git2::{ObjectType, Oid, Repository};

use crate::{Result, SourceError};

mod archive;
mod auth;
mod checkout;
pub mod github_app;
mod policy;
mod proxy;
pub mod push;
mod push_tree;
mod session;
pub mod sparse;
pub mod verify;
pub use archive::archive_commit;
pub use auth::GitAuth;
pub use policy::FetchLimits;
pub use proxy::GitProxy;
use session::Session;

/// The reference to check out, as in `GitRepository.spec.ref`. Precedence:
/// `commit` > `name` > `semver` > `tag` > `branch`; empty means branch `master`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitReference {
    /// Branch name (without `refs/heads/`).
    pub branch: Option<String>,
    /// Tag name.
    pub tag: Option<String>,
    /// Masterminds semver range selecting the highest matching tag.
    pub semver: Option<String>,
    /// Full reference name (`refs/heads/main`, `refs/tags/v1`, `refs/pull/1/head`).
    pub name: Option<String>,
    /// Commit SHA-1 (full, or an abbreviation of at least 4 hex digits).
    pub commit: Option<String>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// What [`fetch`] needs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Remote URL (`http(s)://`, `ssh://`, or scp-like `user@host:path`).
    pub url: String,
    /// Reference to resolve.
    pub reference: GitReference,
    /// Credentials.
    pub auth: GitAuth,
    /// Deadline for the whole operation (Flux's `spec.timeout`, default 60 s).
    pub timeout: Duration,
    /// The bare cache repository for this object (see [`cache_path`]); created when missing.
    pub cache_dir: PathBuf,
    /// Caps on each pack download.
    pub limits: FetchLimits,
    /// `sparseCheckout` directories ([`sparse::normalize`]d); empty checks out everything.
    pub sparse: Vec<String>,
}

impl FetchOptions {
    /// Options for `url` with no reference set (branch `master`), Flux's 60 s timeout, default
    /// limits and a full checkout.
    pub fn new(url: &str, auth: GitAuth, cache_dir: PathBuf) -> FetchOptions {
        FetchOptions {
            url: url.to_string(),
            reference: GitReference::default(),
            auth,
            timeout: Duration::from_secs(60),
            cache_dir,
            limits: FetchLimits::default(),
            sparse: Vec::new(),
        }
    }
}

/// Author or committer of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
    /// Timezone offset in minutes.
    pub offset_minutes: i32,
}

/// Metadata of the resolved commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full SHA-1 hex.
    pub id: String,
    /// Author.
    pub author: Signature,
    /// Committer.
    pub committer: Signature,
    /// Full message.
    pub message: String,
}

/// Outcome of [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    /// Flux revision: `<branch>@sha1:<hex>`, `<tag>@sha1:<hex>` (also for semver),
    /// `<full ref name>@sha1:<hex>` for `name` (e.g. `refs/heads/main@sha1:...`), `sha1:<hex>` for
    /// a commit without branch and `<branch>@sha1:<hex>` for a commit with one.
    pub revision: String,
    /// Resolved reference name (`refs/heads/main`, `refs/tags/v1.2.0`), empty for a bare commit.
    pub reference: String,
    /// The resolved commit.
    pub commit: CommitInfo,
    /// Whether a pack was downloaded (false: the cache already had the target).
    pub fetched: bool,
    /// Objects received in the pack (0 when `fetched` is false).
    pub received_objects: usize,
    /// Bytes received in the pack.
    pub received_bytes: usize,
}

/// Cache location for an object: `<root>/<namespace>/<name>.git`.
pub fn cache_path(root: &Path, namespace: &str, name: &str) -> PathBuf {
    root.join(namespace).join(format!("{name}.git"))
}

static TIMEOUTS: Once = Once::new();

/// Set libgit2's process-wide connect and socket I/O timeouts. Effective only on the first
/// call (and implied with 10 s / 30 s by the first fetch); call it early in `main`.
pub fn set_network_timeouts(connect: Duration, io: Duration) {
    TIMEOUTS.call_once(|| {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: the setters write a C global without synchronisation; `Once` makes this the
        // only write, and it happens before this crate starts any libgit2 network operation.
        #[allow(unsafe_code)]
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect));
            let _ = git2::opts::set_server_timeout_in_milliseconds(ms(io));
        }
    });
}

/// `url` without userinfo (`https://user:pass@host/x` -> `https://host/x`).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{scheme}://{host}{path}")
    } else {
        url.to_string()
    }
}

/// Host and port of an SSH URL (`ssh://[user@]host[:port]/p` or `[user@]host:path`).
fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if let Some(h) = host.strip_prefix('[') {
            let (h, tail) = h.split_once(']')?;
            let port = tail
                .strip_prefix(':')
                .map_or(Some(22), |p| p.parse().ok())?;
            return Some((h.to_string(), port));
        }
        return match host.rsplit_once(':') {
            Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
            None => Some((host.to_string(), 22)),
        };
    }
    if url.contains("://") {
        return None;
    }
    let (before, _) = url.split_once(':')?;
    let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
    Some((host.to_string(), 22))
}

fn is_ssh(url: &str) -> bool {
    url.starts_with("ssh://") || (!url.contains("://") && url.contains(':'))
}

/// Caches in use by a running (possibly abandoned) operation.
static BUSY: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

struct CacheLock(PathBuf);

impl CacheLock {
    fn acquire(path: &Path, op: &'static str, url: &str) -> Result<CacheLock> {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        let set = busy.get_or_insert_with(HashSet::new);
        if !set.insert(path.to_path_buf()) {
            return Err(SourceError::Busy {
                op,
                url: redact_url(url),
                path: path.to_path_buf(),
            });
        }
        Ok(CacheLock(path.to_path_buf()))
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let mut busy = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = busy.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Run `f` on a worker thread; return its result or [`SourceError::Timeout`] at the deadline.
fn with_deadline<T: Send + 'static>(
    op: &'static str,
    opts: &FetchOptions,
    f: impl FnOnce(Instant) -> Result<T> + Send + 'static,
) -> Result<T> {
    set_network_timeouts(Duration::from_secs(10), Duration::from_secs(30));
    let lock = CacheLock::acquire(&opts.cache_dir, op, &opts.url)?;
    let (tx, rx) = mpsc::channel();
    let deadline = Instant::now() + opts.timeout;
    std::thread::Builder::new()
        .name("plumb-git".to_string())
        .spawn(move || {
            let r = f(deadline);
            // Release the cache before reporting, so the caller can reuse it at once.
            drop(lock);
            let _ = tx.send(r);
        })
        .map_err(SourceError::io("spawn git worker", &opts.cache_dir))?;
    match rx.recv_timeout(opts.timeout) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(SourceError::Timeout {
            op,
            url: redact_url(&opts.url),
            after: opts.timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(SourceError::Git {
            op,
            url: redact_url(&opts.url),
            detail: "git worker thread stopped unexpectedly".to_string(),
        }),
    }
}

/// Fetch `opts.reference` into the cache and resolve it. Blocking (up to `opts.timeout`):
/// call it from `spawn_blocking` in async code.
pub fn fetch(opts: &FetchOptions) -> Result<FetchResult> {
    let o = opts.clone();
    with_deadline("fetch", opts, move |deadline| {
        let mut s = Session::new(&o, deadline, "fetch");
        let r = fetch_inner(&o, &mut s);
        r.map_err(|e| s.classify_final(e))
    })
}

/// Write the tree of `commit` (from a previous [`fetch`] into the same cache) into `dir`,
/// which must be empty or missing. With `recurse_submodules`, submodules are fetched (same
/// credentials, caches next to `opts.cache_dir`) and written too; otherwise they are empty dirs.
pub fn checkout(
    opts: &FetchOptions,
    commit: &str,
    dir: &Path,
    recurse_submodules: bool,
) -> Result<()> {
    let o = opts.clone();
    let commit = commit.to_string();
    let dir = dir.to_path_buf();
    with_deadline("checkout", opts, move |deadline| {
        let mut s = Session::new(&o, deadline, "checkout");
        let r = checkout::checkout_inner(&o, &mut s, &commit, &dir, recurse_submodules);
        r.map_err(|e| s.classify_final(e))
    })
}

/// Advertised refs: name -> (oid, peeled oid for annotated tags).
type Advertised = BTreeMap<String, Oid>;

struct Fetched {
    advertised: Advertised,
    received_objects: usize,
    received_bytes: usize,
}

fn open_cache(path: &Path) -> Result<Repository> {
    match Repository::open_bare(path) {
        Ok(r) => Ok(r),
        Err(_) => {
            std::fs::create_dir_all(path).map_err(SourceError::io("create git cache", path))?;
            Repository::init_bare(path).map_err(|e| SourceError::Git {
                op: "init cache",
                url: path.display().to_string(),
                detail: e.message().to_string(),
            })
        }
    }
}

/// Fetch `refspecs` and return the advertisement. `depth`: `Some(1)` shallow, `Some(0)`
/// complete history (unshallowing the cache), `None` leaves the depth alone (listing only).
fn do_fetch(
    repo: &Repository,
    s: &Session,
    refspecs: &[String],
    depth: Option<i32>,
) -> Result<Fetched> {
    // A client certificate routes the fetch through plumb's own smart-HTTP transport.
    let _tls_scope = s.client_tls_scope()?;
    let remote_url = if _tls_scope.is_some() {
        crate::mtls::transport_url(&s.url)
    } else {
        s.url.clone()
    };
    let mut remote = repo
        .remote_anonymous(&remote_url)
        .map_err(|e| s.git_err(e))?;
    let mut fo = s.fetch_options()?;
    if let Some(d) = depth.filter(|d| *d > 0) {
        fo.depth(d);
    } else if depth.is_some() && repo.is_shallow() {
        fo.depth(i32::MAX); // GIT_FETCH_DEPTH_UNSHALLOW
    }
    let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
    remote
        .fetch(&specs, Some(&mut fo), None)
        .map_err(|e| s.git_err(e))?;
    let stats = remote.stats();
    let (received_objects, received_bytes) = (stats.received_objects(), stats.received_bytes());
    let mut advertised = Advertised::new();
    for head in remote.list().map_err(|e| s.git_err(e))? {
        advertised.insert(head.name().to_string(), head.oid());
    }
    Ok(Fetched {
        advertised,
        received_objects,
        received_bytes,
    })
}

/// The commit an advertised ref points at (peeled through annotated tags).
fn advertised_commit(adv: &Advertised, name: &str) -> Option<Oid> {
    adv.get(&format!("{name}^{{}}"))
        .or_else(|| adv.get(name))
        .copied()
}

fn info(repo: &Repository, s: &Session, oid: Oid) -> Result<CommitInfo> {
    let c = repo
        .find_object(oid, None)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| s.git_err(e))?;
    let sig = |g: git2::Signature<'_>| Signature {
        name: String::from_utf8_lossy(g.name_bytes()).into_owned(),
        email: String::from_utf8_lossy(g.email_bytes()).into_owned(),
        time: g.when().seconds(),
        offset_minutes: g.when().offset_minutes(),
    };
    Ok(CommitInfo {
        id: c.id().to_string(),
        author: sig(c.author()),
        committer: sig(c.committer()),
        message: String::from_utf8_lossy(c.message_bytes()).into_owned(),
    })
}

/// Short form of a branch or tag reference for revisions: `refs/heads/main` -> `main`,
/// `refs/tags/v1` -> `v1`; names without two slashes are kept.
fn short_ref(name: &str) -> &str {
    let mut it = name.splitn(3, '/');
    match (it.next(), it.next(), it.next()) {
        (Some(_), Some(_), Some(rest)) => rest,
        _ => name,
    }
}

fn fetch_inner(o: &FetchOptions, s: &mut Session) -> Result<FetchResult> {
    s.preflight()?;
    let repo = open_cache(&o.cache_dir)?;
    let r = &o.reference;
    let not_found = |what: String| SourceError::RefNotFound {
        op: "fetch",
        url: redact_url(&o.url),
        reference: what,
    };
    let result = |oid: Oid,
                  reference: String,
                  revision: String,
                  f: Option<&Fetched>|
     -> Result<FetchResult> {
        let commit = info(&repo, s, oid)?;
        let received_objects = f.map_or(0, |f| f.received_objects);
        Ok(FetchResult {
            revision: format!("{revision}sha1:{}", commit.id),
            reference,
            commit,
            fetched: received_objects > 0,
            received_objects,
            received_bytes: f.map_or(0, |f| f.received_bytes),
        })
    };

    if let Some(commit) = set(&r.commit) {
        if commit.len() < 4 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SourceError::Invalid {
                what: format!("commit '{commit}'"),
                detail: "expected a hexadecimal SHA-1".to_string(),
            });
        }
        let branch = set(&r.branch);
        let prefix = branch.map(|b| format!("{b}@")).unwrap_or_default();
        let reference = branch
            .map(|b| format!("refs/heads/{b}"))
            .unwrap_or_default();
        let lookup = |repo: &Repository| {
            repo.revparse_single(commit)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id())
                .filter(|id| id.to_string().starts_with(&commit.to_ascii_lowercase()))
        };
        // A commit is immutable: when the cache has it, no network is needed.
        if let Some(oid) = lookup(&repo) {
            return result(oid, reference, prefix, None);
        }
        let specs = match branch {
            Some(b) => vec![format!("+refs/heads/{b}:refs/heads/{b}")],
            None => vec![
                "+refs/heads/*:refs/heads/*".to_string(),
                "+refs/tags/*:refs/tags/*".to_string(),
            ],
        };
        let f = do_fetch(&repo, s, &specs, Some(0))?;
        if let Some(b) = branch
            && !f.advertised.contains_key(&format!("refs/heads/{b}"))
        {
            return Err(not_found(format!("branch '{b}'")));
        }
        let oid = lookup(&repo).ok_or_else(|| not_found(format!("commit '{commit}'")))?;
        return result(oid, reference, prefix, Some(&f));
    }

    let (refname, what) = if let Some(name) = set(&r.name) {
        if !name.starts_with("refs/") || !git2::Reference::is_valid_name(name) {
            return Err(SourceError::Invalid {
                what: format!("reference name '{name}'"),
                detail: "expected a full reference such as refs/heads/main".to_string(),
            });
        }
        (name.to_string(), format!("reference '{name}'"))
    } else if let Some(range) = set(&r.semver) {
        plumb_semver::Constraint::parse(range).map_err(|detail| SourceError::Invalid {
            what: format!("semver range '{range}'"),
            detail,
        })?;
        let adv = list(&repo, s)?;
        let tags = adv
            .keys()
            .filter_map(|k| k.strip_prefix("refs/tags/"))
            .filter(|t| !t.ends_with("^{}"));
        let tag = plumb_semver::highest_match(range, tags)
            .map_err(|detail| SourceError::Invalid {
                what: format!("semver range '{range}'"),
                detail,
            })?
            .ok_or_else(|| not_found(format!("tag matching semver range '{range}'")))?;
        (format!("refs/tags/{tag}"), format!("tag '{tag}'"))
    } else if let Some(tag) = set(&r.tag) {
        (format!("refs/tags/{tag}"), format!("tag '{tag}'"))
    } else {
        let b = set(&r.branch).unwrap_or("master");
        (format!("refs/heads/{b}"), format!("branch '{b}'"))
    };
    if !git2::Reference::is_valid_name(&refname) {
        return Err(SourceError::Invalid {
            what: what.clone(),
            detail: "not a valid git reference name".to_string(),
        });
    }
    // Flux advertises the absolute reference for `name` (source-controller#1036) and the short
    // branch or tag name otherwise.
    let short = if set(&r.name).is_some() {
        refname.clone()
    } else {
        short_ref(&refname).to_string()
    };
    // One ref listing decides whether a pack is needed at all.
    let adv = list(&repo, s)?;
    let target = *adv.get(&refname).ok_or_else(|| not_found(what.clone()))?;
    if repo.find_object(target, None).is_ok() {
        let oid = advertised_commit(&adv, &refname).unwrap_or(target);
        // Keep the cached ref in step (a tag moved to a commit the cache already holds).
        if repo.refname_to_id(&refname).ok() != Some(target) {
            repo.reference(&refname, target, true, "plumb: moved")
                .map_err(|e| s.git_err(e))?;
        }
        return result(oid, refname, format!("{short}@"), None);
    }
    let f = do_fetch(&repo, s, &[format!("+{refname}:{refname}")], Some(1))?;
    let oid = advertised_commit(&f.advertised, &refname).ok_or_else(|| not_found(what))?;
    result(oid, refname, format!("{short}@"), Some(&f))
}

/// The remote's ref advertisement, without downloading anything: a fetch whose only refspec
/// names a ref no server advertises (custom headers such as a bearer token apply).
fn list(repo: &Repository, s: &Session) -> Result<Advertised> {
    Ok(do_fetch(
        repo,
        s,
        &["+refs/plumb/list-only:refs/plumb/list-only".to_string()],
        None,
    )?
    .advertised)
}

#[cfg(test)]
mod tests {
    use super::checkout::resolve_relative_url;
    use super::*;

    #[test]
    fn redaction_and_hosts() {
        assert_eq!(
            redact_url("https://u:p@h.example/x.git"),
            "https://h.example/x.git"
        );
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(
            ssh_host_port("ssh://git@h:2222/x"),
            Some(("h".into(), 2222))
        );
        assert_eq!(ssh_host_port("ssh://h/x"), Some(("h".into(), 22)));
        assert_eq!(
            ssh_host_port("git@github.com:org/x.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(
            ssh_host_port("ssh://git@[::1]:2200/x"),
            Some(("::1".into(), 2200))
        );
        assert!(is_ssh("git@h:x") && !is_ssh("https://h/x"));
    }

    #[test]
    fn short_refs_and_relative_urls() {
        assert_eq!(short_ref("refs/heads/main"), "main");
        assert_eq!(short_ref("refs/heads/feature/x"), "feature/x");
        assert_eq!(short_ref("refs/pull/1/head"), "1/head");
        assert_eq!(
            resolve_relative_url("http://h/org/a.git", "../b.git"),
            "http://h/org/b.git"
        );
        assert_eq!(
            resolve_relative_url("http://h/org/a", "./b"),
            "http://h/org/a/b"
        );
        assert_eq!(
            resolve_relative_url("http://h/a", "https://x/y"),
            "https://x/y"
        );
    }

    #[test]
    fn secret_parsing_never_debugs_values() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("username".to_string(), b"u".to_vec()),
            ("password".to_string(), b"hunter22\n".to_vec()),
        ]
        .into();
        let a = GitAuth::from_secret(&data).unwrap();
        assert_eq!(a.password.as_deref(), Some("hunter22"));
        assert!(!format!("{a:?}").contains("hunter22"));
        let bad: BTreeMap<String, Vec<u8>> =
            [("known_hosts".to_string(), b"nonsense".to_vec())].into();
        let e = GitAuth::from_secret(&bad).unwrap_err();
        assert!(e.to_string().contains("known_hosts"));
        let half: BTreeMap<String, Vec<u8>> = [("tls.crt".to_string(), b"x".to_vec())].into();
        assert!(GitAuth::from_secret(&half).is_err());
    }
}
