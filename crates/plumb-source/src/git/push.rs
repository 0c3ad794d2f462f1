//! Commit and push for ImageUpdateAutomation: fetch the checkout reference (or the push
//! branch when it already exists, as Flux does), write its tree into a work directory, let the
//! caller change files there, commit the difference on top of the fetched commit (optionally
//! OpenPGP-signed) and push it without force.
//!
//! Credentials, known_hosts, CA and proxy are the fetch's ([`Session`]); the commit is built in
//! the same bare cache the fetch filled. Nothing is committed when the tree did not change. A
//! push the remote refuses as non-fast-forward (someone pushed first) starts over from a fresh
//! fetch, re-applies the change on the new head and pushes again, at most
//! [`PushOptions::attempts`] times; any other refusal (a protected branch, a hook) is
//! [`SourceError::PushRejected`] at once. `git.push.options` go with every push
//! ([`PushOptions::push_options`]; the server must advertise `push-options`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use git2::{Oid, Repository};
use pgp::composed::{Deserializable as _, DetachedSignature, SignedSecretKey};

use super::{FetchOptions, FetchResult, GitReference, Session, checkout, fetch, redact_url, set};
use crate::{Result, SourceError};

/// The local reference the new commit is pushed from.
const PUSH_REF: &str = "refs/plumb/automation";

/// An OpenPGP secret key for signing commits (`git.commit.signingKey`).
#[derive(Clone)]
pub struct SigningKey {
    key: SignedSecretKey,
    passphrase: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Reads the armored secret key of Flux's `git.asc` entry; `passphrase` unlocks it.
    pub fn from_armored(armored: &str, passphrase: Option<&str>) -> Result<SigningKey> {
        let invalid = |detail: &str| SourceError::Invalid {
            what: "signing key secret field 'git.asc'".to_string(),
            detail: detail.to_string(),
        };
        let (key, _) = SignedSecretKey::from_string(armored)
            .map_err(|_| invalid("not an armored OpenPGP secret key"))?;
        Ok(SigningKey {
            key,
            passphrase: passphrase.unwrap_or("").to_string(),
        })
    }

    /// A detached, armored signature over `data` (what git stores in `gpgsig`).
    fn sign(&self, data: &[u8]) -> Result<String> {
        let failed = |_| SourceError::Invalid {
            what: "signing key secret field 'git.asc'".to_string(),
            detail: "signing failed (wrong passphrase or a key that cannot sign)".to_string(),
        };
        let sig = DetachedSignature::sign_binary_data(
            pgp_rand::OsRng,
            &self.key.primary_key,
            &pgp::types::Password::from(self.passphrase.as_str()),
            pgp::crypto::hash::HashAlgorithm::Sha256,
            data,
        )
        .map_err(failed)?;
        sig.to_armored_string(pgp::composed::ArmorOptions::default())
            .map_err(failed)
    }
}

/// What [`commit_and_push`] needs.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// URL, credentials, deadline (per network step), cache; `reference` is the checkout
    /// reference (`git.checkout.ref`, else the GitRepository's).
    pub fetch: FetchOptions,
    /// `git.push.branch`; `None` pushes to the checkout branch.
    pub branch: Option<String>,
    /// `git.push.refspec`, pushed in addition to the branch (Flux); `HEAD` and the checkout
    /// branch as its source mean the new commit.
    pub refspec: Option<String>,
    /// Author and committer name.
    pub author_name: String,
    /// Author and committer email.
    pub author_email: String,
    /// Signs the commit when set.
    pub signing_key: Option<SigningKey>,
    /// Most fetch-apply-push rounds when pushes are refused as non-fast-forward.
    pub attempts: u32,
    /// Push options sent to the server (`git push -o`), e.g. `ci.skip` or
    /// `merge_request.create`; see [`push_option_strings`].
    pub push_options: Vec<String>,
}

/// `git.push.options` as the strings `git push -o` sends: `key=value`, or `key` alone when
/// the value is empty (as `-o ci.skip`).
pub fn push_option_strings(options: &BTreeMap<String, String>) -> Vec<String> {
    options
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect()
}

/// The protocol carries one option per line: a newline or NUL cannot be sent (git refuses
/// them too), so such an option is an error before anything is fetched.
fn check_push_options(options: &[String]) -> Result<()> {
    match options.iter().find(|o| o.contains(['\n', '\r', '\0'])) {
        None => Ok(()),
        Some(o) => Err(SourceError::Invalid {
            what: "git.push.options".to_string(),
            detail: format!("option '{}' contains a line break or NUL", o.escape_debug()),
        }),
    }
}

/// What the caller's change step returns: the commit message when it changed something.
#[derive(Debug)]
pub struct Applied<T> {
    /// `Some(message)` when files changed.
    pub message: Option<String>,
    /// Whatever the caller wants back (e.g. the setters' result).
    pub data: T,
}

/// The outcome of [`commit_and_push`].
#[derive(Debug)]
pub struct PushOutcome<T> {
    /// The fetched base (its revision is the automation's `observedSourceRevision`).
    pub base: FetchResult,
    /// The pushed commit's SHA-1, `None` when nothing changed.
    pub pushed: Option<String>,
    /// Rounds used (1 unless a push was refused as non-fast-forward).
    pub attempts: u32,
    /// The last change step's data.
    pub data: T,
}

/// Fetch, change (`apply` gets the work tree and the fetched base), commit, push. `work_root`
/// is a scratch directory (one subdirectory per round). Blocking: call from `spawn_blocking`.
pub fn commit_and_push<T>(
    opts: &PushOptions,
    work_root: &Path,
    mut apply: impl FnMut(&Path, &FetchResult) -> Result<Applied<T>>,
) -> Result<PushOutcome<T>> {
    let checkout_branch = branch_of(&opts.fetch.reference);
    let push_branch = opts
        .branch
        .clone()
        .or(checkout_branch.clone())
        .ok_or_else(|| SourceError::Invalid {
            what: "git.push".to_string(),
            detail: "the checkout reference is not a branch: set git.push.branch".to_string(),
        })?;
    if !git2::Reference::is_valid_name(&format!("refs/heads/{push_branch}")) {
        return Err(SourceError::Invalid {
            what: format!("push branch '{push_branch}'"),
            detail: "not a valid git branch name".to_string(),
        });
    }
    check_push_options(&opts.push_options)?;
    let max = opts.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let base = fetch_base(opts, checkout_branch.as_deref(), &push_branch)?;
        let dir = work_root.join(format!("round-{attempt}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(SourceError::io("clean work tree", &dir))?;
        }
        checkout(&opts.fetch, &base.commit.id, &dir, false)?;
        let applied = apply(&dir, &base)?;
        let Some(message) = applied.message else {
            return Ok(PushOutcome {
                base,
                pushed: None,
                attempts: attempt,
                data: applied.data,
            });
        };
        let round = Round {
            opts,
            base: &base,
            dir: &dir,
            message: &message,
            push_branch: &push_branch,
            checkout_branch: checkout_branch.as_deref(),
        };
        match round.commit_and_push() {
            Ok(pushed) => {
                return Ok(PushOutcome {
                    base,
                    pushed,
                    attempts: attempt,
                    data: applied.data,
                });
            }
            Err(Refused::NonFastForward(_)) if attempt < max => continue,
            Err(Refused::NonFastForward(detail)) => {
                return Err(SourceError::PushRejected {
                    url: redact_url(&opts.fetch.url),
                    reference: format!("refs/heads/{push_branch}"),
                    detail: format!("{detail} (gave up after {attempt} attempts)"),
                });
            }
            Err(Refused::Other(e)) => return Err(e),
        }
    }
}

fn branch_of(r: &GitReference) -> Option<String> {
    if let Some(name) = set(&r.name) {
        return name.strip_prefix("refs/heads/").map(str::to_string);
    }
    if set(&r.tag).is_some() || set(&r.semver).is_some() {
        return None;
    }
    Some(set(&r.branch).unwrap_or("master").to_string())
}

/// The commit to build on: the push branch when it differs from the checkout branch and
/// already exists (so earlier automation commits there are kept), else the checkout reference.
fn fetch_base(
    opts: &PushOptions,
    checkout_branch: Option<&str>,
    push_branch: &str,
) -> Result<FetchResult> {
    if checkout_branch != Some(push_branch) {
        let mut o = opts.fetch.clone();
        o.reference = GitReference {
            branch: Some(push_branch.to_string()),
            ..Default::default()
        };
        match fetch(&o) {
            Ok(r) => return Ok(r),
            Err(SourceError::RefNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    fetch(&opts.fetch)
}

enum Refused {
    NonFastForward(String),
    Other(SourceError),
}

impl From<SourceError> for Refused {
    fn from(e: SourceError) -> Refused {
        Refused::Other(e)
    }
}

struct Round<'a> {
    opts: &'a PushOptions,
    base: &'a FetchResult,
    dir: &'a Path,
    message: &'a str,
    push_branch: &'a str,
    checkout_branch: Option<&'a str>,
}

impl Round<'_> {
    /// Commits the work tree and pushes; `Ok(None)` when the tree is unchanged.
    fn commit_and_push(&self) -> std::result::Result<Option<String>, Refused> {
        let o = &self.opts.fetch;
        let deadline = std::time::Instant::now() + o.timeout;
        let s = Session::new(o, deadline, "push");
        s.preflight()?;
        if s.auth.client_cert.is_some() || s.auth.proxy.is_some() {
            return Err(Refused::Other(SourceError::Invalid {
                what: "push".to_string(),
                detail: "pushing through a proxySecretRef or with a TLS client certificate is \
                         not supported"
                    .to_string(),
            }));
        }
        let repo = Repository::open_bare(&o.cache_dir).map_err(|e| s.git_err(e))?;
        let base_oid = Oid::from_str(&self.base.commit.id).map_err(|e| s.git_err(e))?;
        let parent = repo.find_commit(base_oid).map_err(|e| s.git_err(e))?;
        let base_tree = parent.tree().map_err(|e| s.git_err(e))?;
        let tree_oid = super::push_tree::tree_from_dir(&repo, &base_tree, self.dir, &s)?;
        if tree_oid == base_tree.id() {
            return Ok(None);
        }
        let tree = repo.find_tree(tree_oid).map_err(|e| s.git_err(e))?;
        let who = git2::Signature::now(&self.opts.author_name, &self.opts.author_email)
            .map_err(|e| s.git_err(e))?;
        let oid = match &self.opts.signing_key {
            None => repo
                .commit(None, &who, &who, self.message, &tree, &[&parent])
                .map_err(|e| s.git_err(e))?,
            Some(key) => {
                let buf = repo
                    .commit_create_buffer(&who, &who, self.message, &tree, &[&parent])
                    .map_err(|e| s.git_err(e))?;
                let content = String::from_utf8_lossy(&buf).into_owned();
                let signature = key.sign(content.as_bytes())?;
                repo.commit_signed(&content, &signature, None)
                    .map_err(|e| s.git_err(e))?
            }
        };
        repo.reference(PUSH_REF, oid, true, "plumb: automation commit")
            .map_err(|e| s.git_err(e))?;
        // The fetch is shallow; libgit2 walks the history to build the pack, so the cache
        // needs the base's ancestry before the first push (later rounds fetch increments).
        if repo.is_shallow() && !self.base.reference.is_empty() {
            let r = &self.base.reference;
            let _tls = s.client_tls_scope()?;
            super::do_fetch(&repo, &s, &[format!("+{r}:{r}")], Some(0))?;
        }
        self.push(&repo, &s)?;
        Ok(Some(oid.to_string()))
    }

    fn refspecs(&self) -> Vec<String> {
        let mut specs = vec![format!("{PUSH_REF}:refs/heads/{}", self.push_branch)];
        if let Some(spec) = self
            .opts
            .refspec
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            let (force, spec) = spec
                .trim()
                .strip_prefix('+')
                .map_or(("", spec.trim()), |s| ("+", s));
            let (src, dst) = spec.split_once(':').unwrap_or((spec, spec));
            let ours = src == "HEAD"
                || self
                    .checkout_branch
                    .is_some_and(|b| src == b || src == format!("refs/heads/{b}"));
            let src = if ours { PUSH_REF } else { src };
            specs.push(format!("{force}{src}:{dst}"));
        }
        specs
    }

    fn push(&self, repo: &Repository, s: &Session) -> std::result::Result<(), Refused> {
        let mut remote = repo.remote_anonymous(&s.url).map_err(|e| s.git_err(e))?;
        let mut cb = git2::RemoteCallbacks::new();
        s.add_auth_callbacks(&mut cb);
        let refused: Rc<RefCell<Vec<(String, String)>>> = Rc::default();
        let r = refused.clone();
        cb.push_update_reference(move |name, status| {
            if let Some(why) = status {
                r.borrow_mut().push((name.to_string(), why.to_string()));
            }
            Ok(())
        });
        let mut po = git2::PushOptions::new();
        po.remote_callbacks(cb).proxy_options(s.proxy_options()?);
        let header = s.auth_header()?;
        if let Some(h) = &header {
            po.custom_headers(&[h]);
        }
        if !self.opts.push_options.is_empty() {
            let options: Vec<&str> = self.opts.push_options.iter().map(String::as_str).collect();
            po.remote_push_options(&options);
        }
        let specs = self.refspecs();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        if let Err(e) = remote.push(&specs, Some(&mut po)) {
            if e.code() == git2::ErrorCode::NotFastForward {
                return Err(Refused::NonFastForward(s.scrub(e.message())));
            }
            return Err(Refused::Other(s.git_err(e)));
        }
        let mut refused = refused.borrow().clone();
        if refused.is_empty() {
            return Ok(());
        }
        refused.sort();
        let why = refused[0].1.to_ascii_lowercase();
        if why.contains("non-fast-forward") || why.contains("fetch first") {
            return Err(Refused::NonFastForward(s.scrub(&refused[0].1)));
        }
        let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
        let mut reasons: Vec<String> = refused.iter().map(|(_, w)| s.scrub(w)).collect();
        reasons.dedup();
        Err(Refused::Other(SourceError::PushRejected {
            url: s.redacted.clone(),
            reference: names.join(", "),
            detail: reasons.join("; "),
        }))
    }
}
