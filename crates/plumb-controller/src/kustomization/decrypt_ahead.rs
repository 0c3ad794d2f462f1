//! Decrypting ahead of the build: the SOPS files under the Kustomization's path are
//! decrypted on a few threads before kustomize reads them, and the build's file transform
//! serves the results. Why: kustomize reads files one after the other, and opening a data
//! key (an X25519 agreement, an OpenPGP operation or a KMS round trip) dominates the cost
//! of a small encrypted file, so a tree of many Secrets was decrypted on one core.
//!
//! What stays as it was: plaintext lives only in memory (and only until the build reads
//! it); a file that fails to decrypt fails the build only if the build reads it, with the
//! same message naming the file; files outside the path, symlinks, files read twice and
//! anything past the budgets below are decrypted when read, as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use plumb_sops::{Format, KeyRing, Limits};

/// Most files looked at (the walk stops there; the rest are decrypted when read).
const MAX_FILES: usize = 20_000;
/// Most directory levels walked.
const MAX_DEPTH: usize = 32;
/// Most bytes of candidate files read ahead.
const MAX_BYTES: u64 = 256 << 20;
/// Most threads decrypting.
const MAX_THREADS: usize = 4;
/// Files per extra thread: fewer files are not worth a thread.
const FILES_PER_THREAD: usize = 8;

/// What the transform does with a file: its ciphertext (to check the build read the same
/// bytes) and the plaintext, or the error message.
type Outcome = (Vec<u8>, Result<Vec<u8>, String>);

/// Files decrypted ahead, by path relative to the build root (as the loader names them).
#[derive(Default)]
pub(crate) struct Ahead {
    files: Mutex<HashMap<String, Outcome>>,
}

impl Ahead {
    /// The outcome of `name` if it was decrypted ahead from exactly `bytes`; taken out, so
    /// the plaintext is held no longer than needed (a second read decrypts again).
    pub(crate) fn take(&self, name: &str, bytes: &[u8]) -> Option<Result<Vec<u8>, String>> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (cipher, _) = files.get(name)?;
        if cipher.as_slice() != bytes {
            return None;
        }
        files.remove(name).map(|(_, out)| out)
    }

    /// How many files are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.files.lock().map(|f| f.len()).unwrap_or_default()
    }
}

/// Decrypts, on up to [`MAX_THREADS`] threads, the SOPS files under `dir` (inside the
/// build root `root`) with `ring`.
pub(crate) fn decrypt_ahead(root: &Path, dir: &Path, ring: &KeyRing, limits: &Limits) -> Ahead {
    let (Ok(root), Ok(dir)) = (std::fs::canonicalize(root), std::fs::canonicalize(dir)) else {
        return Ahead::default();
    };
    if !dir.starts_with(&root) {
        return Ahead::default();
    }
    let files = candidates(&dir, limits);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(files.len().div_ceil(FILES_PER_THREAD))
        .max(1);
    let ahead = Ahead::default();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = files.get(i) else { break };
            let Ok(rel) = path.strip_prefix(&root) else {
                continue;
            };
            let name = rel.display().to_string();
            if let Some(outcome) = decrypt_file(path, &name, ring, limits) {
                let mut map = ahead.files.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(name, outcome);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    ahead
}

/// The regular files under `dir` (symlinks not followed), within the budgets.
fn candidates(dir: &Path, limits: &Limits) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && depth < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            } else if ft.is_file() {
                let Ok(meta) = e.metadata() else { continue };
                if meta.len() > limits.max_bytes as u64 || bytes + meta.len() > MAX_BYTES {
                    continue;
                }
                bytes += meta.len();
                out.push(e.path());
                if out.len() >= MAX_FILES {
                    return out;
                }
            }
        }
    }
    out
}

/// Reads and decrypts one file; `None` when it is not a SOPS document (or unreadable:
/// the build reports that itself).
fn decrypt_file(path: &Path, name: &str, ring: &KeyRing, limits: &Limits) -> Option<Outcome> {
    let bytes = std::fs::read(path).ok()?;
    let format = Format::from_path(name);
    if !plumb_sops::looks_encrypted(format, &bytes) {
        return None;
    }
    let out = match plumb_sops::decrypt(name, format, &bytes, ring, limits) {
        Ok(Some(plain)) => Ok(plain),
        Ok(None) => return None,
        Err(e) => Err(format!("decryption failed: {e}")),
    };
    Some((bytes, out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const AGE_KEY: &str = include_str!("../../../plumb-sops/tests/data/keys/age.txt");
    const RECIPIENT: &str = "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";

    fn ring() -> KeyRing {
        let mut r = KeyRing::new();
        r.add_age_identities("age.txt", AGE_KEY).unwrap();
        r
    }

    fn secret(name: &str) -> String {
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  key: value-{name}\n"
        );
        plumb_sops::encrypt_yaml(
            "s.yaml",
            &text,
            &rand::random(),
            &[plumb_sops::Recipient::Age(RECIPIENT.into())],
            Some("^stringData$"),
        )
        .unwrap()
    }

    /// root/app/{kustomization.yaml, s-N.yaml, sub/deep.yaml, bad.yaml, plain.yaml},
    /// root/outside.yaml; the kustomization lists `resources`.
    fn tree(resources: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        std::fs::create_dir_all(app.join("sub")).unwrap();
        for i in 0..20 {
            std::fs::write(app.join(format!("s-{i}.yaml")), secret(&format!("s-{i}"))).unwrap();
        }
        std::fs::write(app.join("sub/deep.yaml"), secret("deep")).unwrap();
        let bad = secret("bad").replacen("data:", "data:A", 1);
        std::fs::write(app.join("bad.yaml"), bad).unwrap();
        let plain = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n";
        std::fs::write(app.join("plain.yaml"), plain).unwrap();
        std::fs::write(root.path().join("outside.yaml"), secret("outside")).unwrap();
        let mut k = String::from("resources:\n");
        for r in resources {
            k.push_str(&format!("- {r}\n"));
        }
        std::fs::write(app.join("kustomization.yaml"), k).unwrap();
        root
    }

    #[test]
    fn decrypts_the_path_ahead_and_serves_each_file_once() {
        let root = tree(&[]);
        let app = root.path().join("app");
        let ahead = decrypt_ahead(root.path(), &app, &ring(), &Limits::default());
        // 20 + sub/deep + bad; not the plain files, not outside the path.
        assert_eq!(ahead.len(), 22);
        let bytes = std::fs::read(app.join("s-3.yaml")).unwrap();
        assert!(ahead.take("app/s-3.yaml", b"other bytes").is_none());
        let plain = ahead.take("app/s-3.yaml", &bytes).unwrap().unwrap();
        assert!(String::from_utf8(plain).unwrap().contains("value-s-3"));
        assert!(ahead.take("app/s-3.yaml", &bytes).is_none(), "taken once");
        let deep = std::fs::read(app.join("sub/deep.yaml")).unwrap();
        assert!(ahead.take("app/sub/deep.yaml", &deep).unwrap().is_ok());
        let bad = std::fs::read(app.join("bad.yaml")).unwrap();
        let err = ahead.take("app/bad.yaml", &bad).unwrap().unwrap_err();
        assert!(err.contains("app/bad.yaml"), "{err}");
        assert!(!err.contains("value-bad"), "{err}");
    }

    fn build(root: &Path) -> Result<Vec<serde_json::Value>, String> {
        let app = root.join("app");
        let opts = plumb_kustomize::BuildOptions {
            file_transform: Some(super::super::decrypt::decrypting_transform(
                root,
                &app,
                ring(),
            )),
            ..Default::default()
        };
        plumb_kustomize::build(&app, root, &opts).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_file_fails_the_build_only_when_read() {
        let ok = ["s-0.yaml", "sub/deep.yaml", "plain.yaml", "../outside.yaml"];
        let root = tree(&ok);
        let objects = build(root.path()).unwrap();
        assert_eq!(objects.len(), 4);
        let value = |name: &str| {
            objects
                .iter()
                .find(|o| o["metadata"]["name"] == name)
                .map(|o| o["stringData"]["key"].clone())
        };
        assert_eq!(value("s-0").unwrap(), "value-s-0");
        assert_eq!(value("deep").unwrap(), "value-deep");
        assert_eq!(value("outside").unwrap(), "value-outside");

        let with_bad = ["s-0.yaml", "bad.yaml"];
        let root = tree(&with_bad);
        let err = build(root.path()).unwrap_err();
        assert!(
            err.contains("bad.yaml") && err.contains("decryption failed"),
            "{err}"
        );
    }

    /// The controller extracts each artifact into a fresh directory: the warm-tree hint
    /// must still find the tree (by its path inside the root), so an unchanged tree is
    /// served from the kept documents without reading it ahead or decrypting anything.
    #[test]
    fn a_tree_extracted_again_elsewhere_is_warm() {
        let cache = std::sync::Arc::new(plumb_sops::DataKeyCache::default());
        let ring = || {
            let mut r = ring();
            r.set_data_key_cache(cache.clone());
            r
        };
        let build = |root: &Path, ring: KeyRing| {
            let overlay = plumb_kustomize::Overlay::default();
            let dir = root.join("app");
            super::super::render::build_decrypted(&dir, root, &overlay, Some(ring)).unwrap()
        };
        let first = tree(&["s-0.yaml", "sub/deep.yaml"]);
        let r = ring();
        let objects = build(first.path(), r.clone());
        assert!(r.documents_decrypted() >= 2);
        // The next build decrypts nothing (every document kept): the tree is warm.
        let r = ring();
        assert_eq!(build(first.path(), r.clone()), objects);
        assert_eq!(r.documents_decrypted(), 0);
        let again = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(first.path().join("."))
            .arg(again.path())
            .status()
            .unwrap();
        assert!(status.success());
        let r = ring();
        let name = super::super::decrypt::tree_name(again.path(), &again.path().join("app"));
        assert_eq!(name, "app");
        assert!(r.tree_is_warm(&name));
        assert_eq!(build(again.path(), r.clone()), objects);
        assert_eq!(r.documents_decrypted(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_ahead() {
        let root = tree(&[]);
        let app = root.path().join("app");
        std::os::unix::fs::symlink(root.path().join("outside.yaml"), app.join("link.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(root.path(), app.join("loop")).unwrap();
        let ahead = decrypt_ahead(root.path(), &app, &ring(), &Limits::default());
        assert_eq!(ahead.len(), 22);
    }
}
