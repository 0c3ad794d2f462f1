//! `plumb crds`: print, write or check the generated CustomResourceDefinitions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `plumb crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD and a kustomization.yaml into this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "check")]
    write: Option<PathBuf>,
    /// Compare the files in this directory with the generated ones; exit 1 on any drift.
    #[arg(long, value_name = "DIR")]
    check: Option<PathBuf>,
}

/// Runs `plumb crds`.
pub fn run(args: CrdsArgs) -> Result<ExitCode> {
    if let Some(dir) = args.write {
        write(&dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = args.check {
        return check(&dir);
    }
    print!("{}", plumb_api::crds_yaml().context("generating CRDs")?);
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    for (name, content) in plumb_api::crd_files().context("generating CRDs")? {
        let path = dir.join(&name);
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn check(dir: &Path) -> Result<ExitCode> {
    let expected = plumb_api::crd_files().context("generating CRDs")?;
    let mut drift = Vec::new();
    for (name, content) in &expected {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(actual) if actual == *content => {}
            Ok(_) => drift.push(format!("{} differs from the generated CRD", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drift.push(format!("{} is missing", path.display()))
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    let entries =
        fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !expected.iter().any(|(n, _)| *n == name) {
            drift.push(format!(
                "{} is not a generated CRD file",
                entry.path().display()
            ));
        }
    }
    if drift.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    drift.sort();
    for d in &drift {
        eprintln!("drift: {d}");
    }
    eprintln!(
        "error: CRDs in {} are out of date; run `plumb crds --write {}`",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::FAILURE)
}
