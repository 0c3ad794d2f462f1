//! Writing a commit's tree from the cache into a directory (the checkout behind
//! [`super::checkout`]): entry names and modes checked, symlinks out of the tree refused,
//! `sparseCheckout` applied, submodules fetched and written recursively (bounded depth).

use super::*;

pub(super) fn checkout_inner(
    o: &FetchOptions,
    s: &mut Session,
    commit: &str,
    dir: &Path,
    recurse: bool,
) -> Result<()> {
    let repo = open_cache(&o.cache_dir)?;
    let oid = Oid::from_str(commit).map_err(|_| SourceError::Invalid {
        what: format!("commit '{commit}'"),
        detail: "expected a full hexadecimal SHA-1".to_string(),
    })?;
    let c = repo.find_commit(oid).map_err(|e| s.git_err(e))?;
    let tree = c.tree().map_err(|e| s.git_err(e))?;
    std::fs::create_dir_all(dir).map_err(SourceError::io("create checkout dir", dir))?;
    let modules = if recurse {
        submodules(&repo, &tree, s)?
    } else {
        BTreeMap::new()
    };
    write_tree(&repo, s, &tree, dir, "", &modules, o, recurse, 0)
}

/// `.gitmodules` of `tree`: path -> url.
fn submodules(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    s: &Session,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(entry) = tree.get_name(".gitmodules") else {
        return Ok(out);
    };
    let blob = repo.find_blob(entry.id()).map_err(|e| s.git_err(e))?;
    let tmp = tempfile::NamedTempFile::new()
        .map_err(SourceError::io("read .gitmodules", ".gitmodules"))?;
    std::fs::write(tmp.path(), blob.content())
        .map_err(SourceError::io("read .gitmodules", tmp.path()))?;
    let cfg = git2::Config::open(tmp.path()).map_err(|e| s.git_err(e))?;
    let mut paths = BTreeMap::new();
    let mut urls = BTreeMap::new();
    let mut entries = cfg
        .entries(Some(r"^submodule\..*\.(path|url)$"))
        .map_err(|e| s.git_err(e))?;
    while let Some(Ok(e)) = entries.next() {
        let (Ok(name), Ok(value)) = (e.name(), e.value()) else {
            continue;
        };
        if let Some(n) = name
            .strip_prefix("submodule.")
            .and_then(|n| n.strip_suffix(".path"))
        {
            paths.insert(n.to_string(), value.to_string());
        } else if let Some(n) = name
            .strip_prefix("submodule.")
            .and_then(|n| n.strip_suffix(".url"))
        {
            urls.insert(n.to_string(), value.to_string());
        }
    }
    for (name, path) in paths {
        if let Some(url) = urls.get(&name) {
            out.insert(path, resolve_relative_url(&s.url, url));
        }
    }
    Ok(out)
}

/// Resolve a submodule URL relative to its superproject's (`../other.git`).
pub(super) fn resolve_relative_url(base: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base = base.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            if let Some(i) = base.rfind('/') {
                base.truncate(i);
            }
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

#[allow(clippy::too_many_arguments)]
fn write_tree(
    repo: &Repository,
    s: &Session,
    tree: &git2::Tree<'_>,
    dir: &Path,
    prefix: &str,
    modules: &BTreeMap<String, String>,
    o: &FetchOptions,
    recurse: bool,
    depth: u32,
) -> Result<()> {
    for entry in tree.iter() {
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(SourceError::UnsafeEntry {
                op: "checkout",
                path: format!("{prefix}{name}"),
                detail: "invalid tree entry name".to_string(),
            });
        }
        if name.eq_ignore_ascii_case(".git") {
            continue;
        }
        let path = dir.join(&name);
        let rel = format!("{prefix}{name}");
        let mode = entry.filemode();
        let is_dir = matches!(entry.kind(), Some(ObjectType::Tree | ObjectType::Commit));
        if !sparse::wanted(&o.sparse, &rel, is_dir) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {
                std::fs::create_dir(&path).map_err(SourceError::io("checkout", &path))?;
                let sub = repo.find_tree(entry.id()).map_err(|e| s.git_err(e))?;
                write_tree(
                    repo,
                    s,
                    &sub,
                    &path,
                    &format!("{rel}/"),
                    modules,
                    o,
                    recurse,
                    depth,
                )?;
            }
            Some(ObjectType::Blob) => {
                let blob = repo.find_blob(entry.id()).map_err(|e| s.git_err(e))?;
                if mode == 0o120000 {
                    // A link out of the tree is refused here, as archiving refuses it, so
                    // nothing (includes) can write or delete through it before that.
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    crate::artifact::check_symlink("checkout", &rel, Path::new(&target))?;
                    std::os::unix::fs::symlink(&target, &path)
                        .map_err(SourceError::io("checkout", &path))?;
                } else {
                    write_new(&path, blob.content(), mode == 0o100755)?;
                }
            }
            Some(ObjectType::Commit) => {
                std::fs::create_dir(&path).map_err(SourceError::io("checkout", &path))?;
                if !recurse {
                    continue;
                }
                if depth >= 8 {
                    return Err(SourceError::Invalid {
                        what: format!("submodule '{rel}'"),
                        detail: "submodules nested deeper than 8 levels".to_string(),
                    });
                }
                let url = modules.get(&rel).ok_or_else(|| SourceError::Invalid {
                    what: format!("submodule '{rel}'"),
                    detail: "no URL in .gitmodules".to_string(),
                })?;
                checkout_submodule(s, o, &rel, url, entry.id(), &path, depth)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Creates `path` with `data`; never writes through an existing entry (a crafted tree may
/// name a symlink and a file alike).
fn write_new(path: &Path, data: &[u8], executable: bool) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let perm = if executable { 0o755 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(path)
        .map_err(SourceError::io("checkout", path))?;
    f.write_all(data)
        .map_err(SourceError::io("checkout", path))?;
    // The umask may have narrowed the creation mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))
        .map_err(SourceError::io("checkout", path))
}

fn checkout_submodule(
    parent: &Session,
    o: &FetchOptions,
    rel: &str,
    url: &str,
    oid: Oid,
    dir: &Path,
    depth: u32,
) -> Result<()> {
    let key: String = rel
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut cache = o.cache_dir.clone().into_os_string();
    cache.push(".modules");
    let cache = PathBuf::from(cache).join(format!("{key}.git"));
    let repo = open_cache(&cache)?;
    let s = parent.for_submodule(rel, url)?;
    if repo.find_commit(oid).is_err() {
        // Servers allowing reachable SHA-1 wants serve the commit alone; others need refs.
        let shallow = do_fetch(
            &repo,
            &s,
            &[format!("+{oid}:refs/plumb/submodule")],
            Some(1),
        );
        if shallow.is_err() || repo.find_commit(oid).is_err() {
            do_fetch(
                &repo,
                &s,
                &[
                    "+refs/heads/*:refs/heads/*".to_string(),
                    "+refs/tags/*:refs/tags/*".to_string(),
                ],
                Some(0),
            )?;
        }
    }
    let c = repo
        .find_commit(oid)
        .map_err(|_| SourceError::RefNotFound {
            op: "checkout submodule",
            url: redact_url(url),
            reference: format!("commit '{oid}' of submodule '{rel}'"),
        })?;
    let tree = c.tree().map_err(|e| s.git_err(e))?;
    let modules = submodules(&repo, &tree, &s)?;
    let sub_opts = FetchOptions {
        url: url.to_string(),
        cache_dir: cache.clone(),
        ..o.clone()
    };
    write_tree(
        &repo,
        &s,
        &tree,
        dir,
        &format!("{rel}/"),
        &modules,
        &sub_opts,
        true,
        depth + 1,
    )
}
