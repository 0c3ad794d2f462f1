//! Signed commits and tags made by the real tools: `gpg` (OpenPGP, a key generated in a
//! private `GNUPGHOME`) and `ssh-keygen` (SSH signatures, `gpg.format=ssh`), driven through
//! `git commit -S` and `git tag -s` exactly as a developer signs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::git::TestRepo;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (scripts/install-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How commits are signed.
#[derive(Debug)]
pub enum Signer {
    /// An OpenPGP key in its own `GNUPGHOME`.
    Gpg {
        /// The `GNUPGHOME` directory.
        home: PathBuf,
        /// Primary key fingerprint (upper-case hex).
        fingerprint: String,
        /// ASCII-armored public key (a Secret's `*.asc` value).
        public: String,
    },
    /// An SSH key pair (`<dir>/id`, `<dir>/id.pub`).
    Ssh {
        /// Private key path.
        key: PathBuf,
        /// `authorized_keys` line (a Secret's `*.sshpub` value).
        public: String,
    },
}

impl Signer {
    /// A new ed25519 OpenPGP key for `email` in `dir` (no passphrase).
    pub fn gpg(dir: &Path, email: &str) -> Signer {
        let home = dir.join("gnupg");
        std::fs::create_dir_all(&home).expect("gnupg home");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
                .expect("chmod gnupg home");
        }
        let gpg = || {
            let mut c = Command::new("gpg");
            c.env("GNUPGHOME", &home).args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ]);
            c
        };
        run(gpg().args([
            "--quick-gen-key",
            &format!("Plumb Test <{email}>"),
            "ed25519",
            "sign",
            "never",
        ]));
        let colons = run(gpg().args(["--with-colons", "--list-secret-keys", email]));
        let fingerprint = colons
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .expect("gpg fingerprint")
            .to_string();
        let public = run(gpg().args(["--armor", "--export", email]));
        Signer::Gpg {
            home,
            fingerprint,
            public,
        }
    }

    /// A new ed25519 SSH key in `dir`.
    pub fn ssh(dir: &Path) -> Signer {
        std::fs::create_dir_all(dir).expect("ssh key dir");
        let key = dir.join("id");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "plumb-test", "-f"])
            .arg(&key));
        let public = std::fs::read_to_string(dir.join("id.pub")).expect("id.pub");
        Signer::Ssh {
            key,
            public: public.trim().to_string(),
        }
    }

    /// The public key as a verification Secret holds it: (data key, value).
    pub fn secret_entry(&self, name: &str) -> (String, String) {
        match self {
            Signer::Gpg { public, .. } => (format!("{name}.asc"), public.clone()),
            Signer::Ssh { public, .. } => (format!("{name}.sshpub"), public.clone()),
        }
    }

    /// `git` in `repo` with this signer configured.
    fn git(&self, repo: &TestRepo) -> Command {
        let mut c = Command::new("git");
        c.current_dir(&repo.path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Plumb Test")
            .env("GIT_AUTHOR_EMAIL", "test@plumb.invalid")
            .env("GIT_COMMITTER_NAME", "Plumb Test")
            .env("GIT_COMMITTER_EMAIL", "test@plumb.invalid");
        match self {
            Signer::Gpg {
                home, fingerprint, ..
            } => {
                c.env("GNUPGHOME", home)
                    .args(["-c", &format!("user.signingkey={fingerprint}")]);
            }
            Signer::Ssh { key, .. } => {
                c.args(["-c", "gpg.format=ssh"])
                    .args(["-c", &format!("user.signingkey={}", key.display())]);
            }
        }
        c
    }

    /// Writes `files`, commits them signed; returns the commit id.
    pub fn commit(&self, repo: &TestRepo, files: &[(&str, &str)], message: &str) -> String {
        for (rel, content) in files {
            let p = repo.path.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("create parent dir");
            }
            std::fs::write(&p, content).expect("write file");
        }
        run(self.git(repo).args(["add", "-A"]));
        run(self
            .git(repo)
            .args(["commit", "-q", "-S", "--allow-empty", "-m", message]));
        repo.head()
    }

    /// A signed annotated tag `tag` on HEAD.
    pub fn tag(&self, repo: &TestRepo, tag: &str) {
        run(self
            .git(repo)
            .args(["tag", "-s", tag, "-m", &format!("release {tag}")]));
    }
}
