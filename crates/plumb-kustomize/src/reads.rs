//! What a build looked at: every file it read, every directory it listed and every path
//! whose existence or kind it checked, relative to the build root. A caller that hashes
//! these (and only these) knows whether a later tree would build the same, without building
//! it (plumb's skip of unchanged Kustomizations).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The paths one build looked at, relative to the build root (`/`-separated).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// Files whose bytes were read.
    pub files: BTreeSet<String>,
    /// Directories whose entries were listed (a new file there may change the build).
    pub listed: BTreeSet<String>,
    /// Paths whose existence, kind (file or directory) or symlink target was checked.
    pub probed: BTreeSet<String>,
    /// The build looked at a path outside its root: nothing can be concluded from the rest.
    pub outside: bool,
}

/// A shared recorder of [`Reads`], handed to a build through
/// [`BuildOptions::read_log`](crate::BuildOptions::read_log).
#[derive(Debug, Default, Clone)]
pub struct ReadLog(Arc<Mutex<Reads>>);

#[derive(Clone, Copy)]
pub(crate) enum Seen {
    File,
    Listed,
    Probed,
}

impl ReadLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was recorded so far (the log is emptied).
    pub fn take(&self) -> Reads {
        self.0
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_else(|p| std::mem::take(&mut *p.into_inner()))
    }

    /// Records `path` (absolute, below `root` when confined) as seen the way `how` says.
    pub(crate) fn record(&self, root: &Path, path: &Path, how: Seen) {
        let Ok(mut r) = self.0.lock() else { return };
        let Ok(rel) = path.strip_prefix(root) else {
            r.outside = true;
            return;
        };
        let rel = rel.to_string_lossy().into_owned();
        match how {
            Seen::File => r.files.insert(rel),
            Seen::Listed => r.listed.insert(rel),
            Seen::Probed => r.probed.insert(rel),
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (p, c) in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
    }

    #[test]
    fn records_files_listings_and_probes_of_a_build() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
        write(
            &root,
            &[
                ("app/kustomization.yaml", "resources:\n- ../base\n- plain\n"),
                ("app/plain/cm.yaml", &cm.replace("name: a", "name: p")),
                ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
                ("base/cm.yaml", cm),
                ("other/cm.yaml", cm),
            ],
        );
        // `plain` has no kustomization.yaml: listed by the generated one only at the top.
        let log = ReadLog::new();
        let opts = crate::BuildOptions {
            read_log: Some(log.clone()),
            generate_missing_kustomization: true,
            ..Default::default()
        };
        let e = crate::build(&root.join("app"), &root, &opts).unwrap_err();
        assert!(e.to_string().contains("kustomization"), "{e}");
        let r = log.take();
        assert!(r.files.contains("app/kustomization.yaml"), "{r:?}");
        assert!(r.files.contains("base/cm.yaml"), "{r:?}");
        assert!(r.probed.contains("app/plain/kustomization.yaml"), "{r:?}");
        assert!(!r.files.iter().any(|f| f.starts_with("other")), "{r:?}");
        assert!(!r.outside);

        // A plain top directory is listed, its nested directories too.
        let opts = crate::BuildOptions {
            read_log: Some(log.clone()),
            generate_missing_kustomization: true,
            ..Default::default()
        };
        let objs = crate::build(&root.join("app/plain"), &root, &opts).unwrap();
        assert_eq!(objs.len(), 1);
        let r = log.take();
        assert!(r.listed.contains("app/plain"), "{r:?}");
        assert!(r.files.contains("app/plain/cm.yaml"), "{r:?}");
    }
}
