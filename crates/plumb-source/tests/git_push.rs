//! Commit and push (ImageUpdateAutomation) against the real smart-HTTP and SSH git servers.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use plumb_source::SourceError;
use plumb_source::git::push::{Applied, PushOptions, SigningKey, commit_and_push};
use plumb_source::git::{FetchOptions, GitAuth, GitReference};
use plumb_testing::git::{GitHttpServer, HttpAuth, SshServer, TestRepo, git as run_git, secret};
use plumb_testing::signing::Signer;

/// A served repository that accepts pushes to its checked-out branch.
fn served_repo(root: &Path) -> TestRepo {
    let repo = TestRepo::init(root, "repo");
    run_git(&repo.path, &["config", "http.receivepack", "true"]);
    run_git(
        &repo.path,
        &["config", "receive.denyCurrentBranch", "updateInstead"],
    );
    repo.commit(&[("README", "first\n")], "first");
    // A second commit: the fetch is shallow, pushing must still find the history.
    repo.commit(&[("deploy/app.yaml", "image: app:1\n")], "initial");
    repo
}

fn basic() -> HttpAuth {
    HttpAuth::Basic {
        username: "bot".into(),
        password: "push-secret".into(),
    }
}

fn basic_auth() -> GitAuth {
    GitAuth::from_secret(&secret(&[("username", "bot"), ("password", "push-secret")])).unwrap()
}

fn options(url: &str, auth: GitAuth, scratch: &Path) -> PushOptions {
    PushOptions {
        fetch: FetchOptions {
            reference: GitReference {
                branch: Some("master".into()),
                ..Default::default()
            },
            ..FetchOptions::new(url, auth, scratch.join("cache.git"))
        },
        branch: None,
        refspec: None,
        author_name: "Flux Bot".into(),
        author_email: "bot@plumb.invalid".into(),
        signing_key: None,
        attempts: 3,
        push_options: Vec::new(),
    }
}

/// The change step: set the image in deploy/app.yaml.
fn set_image(dir: &Path, image: &str) -> Applied<()> {
    let path = dir.join("deploy/app.yaml");
    let old = std::fs::read_to_string(&path).unwrap();
    let new = format!("image: {image}\n");
    if old == new {
        return Applied {
            message: None,
            data: (),
        };
    }
    std::fs::write(&path, new).unwrap();
    Applied {
        message: Some(format!("Update image to {image}")),
        data: (),
    }
}

#[test]
fn a_push_lands_and_an_unchanged_tree_pushes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = served_repo(dir.path());
    let before = repo.head();
    let server = GitHttpServer::start(dir.path(), basic());
    let scratch = tempfile::tempdir().unwrap();
    let opts = options(&server.url("repo"), basic_auth(), scratch.path());

    let out = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:2"))
    })
    .unwrap();
    let pushed = out.pushed.unwrap();
    assert_eq!(out.base.commit.id, before);
    assert_eq!(out.attempts, 1);
    assert_eq!(repo.head(), pushed);
    assert_eq!(
        run_git(&repo.path, &["show", "HEAD:deploy/app.yaml"]),
        "image: app:2"
    );
    assert_eq!(
        run_git(&repo.path, &["log", "-1", "--format=%an <%ae>|%s|%P"]),
        format!("Flux Bot <bot@plumb.invalid>|Update image to app:2|{before}")
    );

    // Same image again: the step reports no change, nothing is committed.
    let again = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:2"))
    })
    .unwrap();
    assert_eq!(again.pushed, None);
    // A step that claims a change but leaves the tree as it was commits nothing either.
    let claimed = commit_and_push(&opts, &scratch.path().join("work"), |_, _| {
        Ok(Applied {
            message: Some("nothing really".into()),
            data: (),
        })
    })
    .unwrap();
    assert_eq!(claimed.pushed, None);
    assert_eq!(repo.head(), pushed);
}

#[test]
fn a_concurrent_push_is_retried_on_the_new_head() {
    let dir = tempfile::tempdir().unwrap();
    let repo = served_repo(dir.path());
    let server = GitHttpServer::start(dir.path(), basic());
    let scratch = tempfile::tempdir().unwrap();
    let opts = options(&server.url("repo"), basic_auth(), scratch.path());

    let mut rounds = 0;
    let mut someone_else = String::new();
    let out = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        rounds += 1;
        if rounds == 1 {
            // Someone pushes between our fetch and our push.
            someone_else = repo.commit(&[("README", "hello\n")], "someone else");
        }
        Ok(set_image(d, "app:3"))
    })
    .unwrap();
    assert_eq!(out.attempts, 2);
    assert_eq!(out.base.commit.id, someone_else);
    let pushed = out.pushed.unwrap();
    assert_eq!(repo.head(), pushed);
    assert_eq!(
        run_git(&repo.path, &["log", "-1", "--format=%P"]),
        someone_else
    );
    assert_eq!(run_git(&repo.path, &["show", "HEAD:README"]), "hello");
    assert_eq!(
        run_git(&repo.path, &["show", "HEAD:deploy/app.yaml"]),
        "image: app:3"
    );
}

#[test]
fn a_protected_branch_over_ssh_is_a_clear_error_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let repo = served_repo(dir.path());
    let hook = repo.path.join(".git/hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'branch master is protected' >&2\nexit 1\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let before = repo.head();
    let ssh = SshServer::start();
    let auth = GitAuth::from_secret(&secret(&[
        ("identity", &ssh.identity),
        ("known_hosts", &ssh.known_hosts),
    ]))
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = options(&ssh.url(&repo.path), auth, scratch.path());
    opts.refspec = Some("HEAD:refs/heads/also".into());

    let err = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:4"))
    })
    .unwrap_err();
    assert!(matches!(err, SourceError::PushRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("refs/heads/master"), "{msg}");
    assert!(msg.contains("pre-receive hook declined"), "{msg}");
    assert_eq!(repo.head(), before);
    assert!(run_git(&repo.path, &["branch", "--list", "also"]).is_empty());
}

#[test]
fn a_signed_commit_verifies_with_gpg_and_the_refspec_is_pushed_too() {
    let dir = tempfile::tempdir().unwrap();
    let repo = served_repo(dir.path());
    let server = GitHttpServer::start(dir.path(), basic());
    let keys = tempfile::tempdir().unwrap();
    let signer = Signer::gpg(keys.path(), "bot@plumb.invalid");
    let Signer::Gpg { home, .. } = &signer else {
        unreachable!()
    };
    let exported = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--armor", "--export-secret-keys"])
        .output()
        .unwrap();
    let armored = String::from_utf8(exported.stdout).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = options(&server.url("repo"), basic_auth(), scratch.path());
    opts.signing_key = Some(SigningKey::from_armored(&armored, None).unwrap());
    opts.branch = Some("automation".into());
    opts.refspec = Some("refs/heads/master:refs/heads/mirror".into());

    let out = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:5"))
    })
    .unwrap();
    let pushed = out.pushed.unwrap();
    assert_eq!(run_git(&repo.path, &["rev-parse", "automation"]), pushed);
    assert_eq!(run_git(&repo.path, &["rev-parse", "mirror"]), pushed);
    let verify = Command::new("git")
        .current_dir(&repo.path)
        .env("GNUPGHOME", home)
        .args(["verify-commit", &pushed])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // The push branch exists now: the next change builds on it, not on master.
    let next = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:6"))
    })
    .unwrap();
    assert_eq!(next.base.commit.id, pushed);
    assert!(
        SigningKey::from_armored("not a key", None)
            .unwrap_err()
            .to_string()
            .contains("git.asc")
    );
}

/// Installs an executable hook `name` with `body` in `repo`.
fn hook(repo: &TestRepo, name: &str, body: &str) {
    let path = repo.path.join(".git/hooks").join(name);
    std::fs::write(&path, body).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn push_options_reach_the_server_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = served_repo(dir.path());
    let seen = dir.path().join("push-options.txt");
    hook(
        &repo,
        "pre-receive",
        &format!(
            "#!/bin/sh\ncat >/dev/null\ni=0\nwhile [ \"$i\" -lt \"${{GIT_PUSH_OPTION_COUNT:-0}}\" ]; do\n  \
             eval \"echo \\\"\\$GIT_PUSH_OPTION_$i\\\"\"\n  i=$((i+1))\ndone > '{}'\n",
            seen.display()
        ),
    );
    let server = GitHttpServer::start(dir.path(), basic());
    let scratch = tempfile::tempdir().unwrap();
    let mut opts = options(&server.url("repo"), basic_auth(), scratch.path());
    let spec = std::collections::BTreeMap::from([
        ("ci.skip".to_string(), String::new()),
        ("merge_request.target".to_string(), "main".to_string()),
    ]);
    opts.push_options = plumb_source::git::push::push_option_strings(&spec);
    // A server that does not advertise push options: a clear error, nothing lands.
    let before = repo.head();
    let e = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:3"))
    })
    .unwrap_err();
    assert!(e.to_string().contains("push-options not supported"), "{e}");
    assert_eq!(repo.head(), before);
    run_git(
        &repo.path,
        &["config", "receive.advertisePushOptions", "true"],
    );
    let out = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:3"))
    })
    .unwrap();
    assert_eq!(repo.head(), out.pushed.unwrap());
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "ci.skip\nmerge_request.target=main\n"
    );

    // An option with a line break is refused before anything is fetched or pushed.
    let before = repo.head();
    opts.push_options = vec!["ci.skip\nx=y".to_string()];
    let e = commit_and_push(&opts, &scratch.path().join("work"), |d, _| {
        Ok(set_image(d, "app:4"))
    })
    .unwrap_err();
    assert!(matches!(e, SourceError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("line break"), "{e}");
    assert_eq!(repo.head(), before);
}
