//! Helm hooks and tests: hooks of an event run in weight order with their delete policies,
//! each run recorded in the release; the test action runs the `test` hooks that
//! `spec.test.filters` select.

use std::time::{Duration, Instant};

use kube::api::DeleteParams;
use plumb_api::HelmRelease;
use plumb_helm::storage::{self, Release};
use plumb_ssa::{Applier, ApplyItem, ApplyOptions, ObjectRef};

use super::manifest::{dynamic_api, parse_docs};
use super::target::Target;

/// Runs the hooks of `event` in weight order, recording each run in `rel`.
pub(super) async fn run_hooks(
    applier: &Applier,
    rel: &mut Release,
    event: &str,
    t: &Target,
) -> std::result::Result<(), String> {
    run_hooks_where(applier, rel, event, t, |_| true)
        .await
        .map(|_| ())
}

/// Runs the hooks of `event` that `select` accepts; returns how many ran.
pub(super) async fn run_hooks_where(
    applier: &Applier,
    rel: &mut Release,
    event: &str,
    t: &Target,
    select: impl Fn(&storage::HookRecord) -> bool,
) -> std::result::Result<usize, String> {
    // Helm 3 still runs hooks of the deprecated `test-success` event as tests.
    let matches = |e: &String| e == event || (event == "test" && e == "test-success");
    let mut order: Vec<usize> = (0..rel.hooks.len())
        .filter(|&i| rel.hooks[i].events.iter().any(matches) && select(&rel.hooks[i]))
        .collect();
    let count = order.len();
    order.sort_by(|&a, &b| {
        let (x, y) = (&rel.hooks[a], &rel.hooks[b]);
        x.weight.cmp(&y.weight).then_with(|| x.name.cmp(&y.name))
    });
    for i in order {
        let hook = rel.hooks[i].clone();
        let mut objs = parse_docs(applier, &hook.manifest, t).await?;
        let Some(object) = objs.pop() else { continue };
        let r = ObjectRef::from_object(&object).map_err(|e| e.to_string())?;
        let policies: Vec<&str> = if hook.delete_policies.is_empty() {
            vec!["before-hook-creation"]
        } else {
            hook.delete_policies.iter().map(String::as_str).collect()
        };
        if policies.contains(&"before-hook-creation") {
            delete_and_wait(applier, &r, t.timeout).await?;
        }
        rel.hooks[i].last_run.started_at = storage::now();
        rel.hooks[i].last_run.phase = "Running".into();
        let outcome = async {
            applier
                .apply_all(vec![ApplyItem::new(object)], &ApplyOptions::default())
                .await
                .map_err(|e| format!("{event} hook {}: {e}", hook.path))?;
            wait_hook(applier, &r, t.timeout)
                .await
                .map_err(|e| format!("{event} hook {} ({r}): {e}", hook.path))
        }
        .await;
        rel.hooks[i].last_run.completed_at = storage::now();
        rel.hooks[i].last_run.phase = if outcome.is_ok() {
            "Succeeded".into()
        } else {
            "Failed".into()
        };
        let delete = match &outcome {
            Ok(()) => policies.contains(&"hook-succeeded"),
            Err(_) => policies.contains(&"hook-failed"),
        };
        if delete {
            delete_and_wait(applier, &r, t.timeout).await?;
        }
        outcome?;
    }
    Ok(count)
}

/// Helm's test action: the release's `test` hooks that `spec.test.filters` select, with
/// `spec.test.timeout`; returns how many ran.
pub(super) async fn run_tests(
    obj: &HelmRelease,
    applier: &Applier,
    t: &Target,
    rel: &mut Release,
) -> std::result::Result<usize, String> {
    let test = obj.spec.test.clone().unwrap_or_default();
    let mut t = t.clone();
    if let Some(d) = test.timeout.as_deref() {
        t.timeout = plumb_api::duration::parse(d).map_err(|e| format!("spec.test.timeout: {e}"))?;
    }
    let filters = test.filters.unwrap_or_default();
    let include: Vec<&str> = filters
        .iter()
        .filter(|f| !f.exclude)
        .map(|f| f.name.as_str())
        .collect();
    let exclude: Vec<&str> = filters
        .iter()
        .filter(|f| f.exclude)
        .map(|f| f.name.as_str())
        .collect();
    run_hooks_where(applier, rel, "test", &t, |h| {
        (include.is_empty() || include.contains(&h.name.as_str()))
            && !exclude.contains(&h.name.as_str())
    })
    .await
}

/// Whether a failed test is ignored (no remediation): the action's
/// `remediation.ignoreTestFailures`, else `test.ignoreFailures`.
pub(super) fn ignores_test_failures(obj: &HelmRelease, install: bool) -> bool {
    let action = if install {
        obj.spec
            .install
            .as_ref()
            .and_then(|i| i.remediation.as_ref())
            .and_then(|r| r.ignore_test_failures)
    } else {
        obj.spec
            .upgrade
            .as_ref()
            .and_then(|u| u.remediation.as_ref())
            .and_then(|r| r.ignore_test_failures)
    };
    action.unwrap_or_else(|| obj.spec.test.as_ref().is_some_and(|t| t.ignore_failures))
}

/// Waits for a Job to complete or a Pod to succeed; other kinds are done once applied.
pub(super) async fn wait_hook(
    applier: &Applier,
    r: &ObjectRef,
    timeout: Duration,
) -> std::result::Result<(), String> {
    if !matches!(r.kind.as_str(), "Job" | "Pod") {
        return Ok(());
    }
    let api = dynamic_api(applier, r).await?;
    let start = Instant::now();
    loop {
        let o = api
            .get_opt(&r.name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "hook object disappeared".to_string())?;
        let st = &o.data["status"];
        if r.kind == "Job" {
            if let Some(conds) = st["conditions"].as_array() {
                for c in conds {
                    if c["status"] == "True" && c["type"] == "Complete" {
                        return Ok(());
                    }
                    if c["status"] == "True" && c["type"] == "Failed" {
                        return Err(format!(
                            "job failed: {}",
                            c["message"].as_str().unwrap_or("BackoffLimitExceeded")
                        ));
                    }
                }
            }
        } else {
            match st["phase"].as_str() {
                Some("Succeeded") => return Ok(()),
                Some("Failed") => return Err("pod failed".into()),
                _ => {}
            }
        }
        if start.elapsed() >= timeout {
            return Err("timed out waiting for the hook to complete".into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(super) async fn delete_and_wait(
    applier: &Applier,
    r: &ObjectRef,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let api = dynamic_api(applier, r).await?;
    let dp = DeleteParams::background();
    match api.delete(&r.name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(ae)) if ae.code == 404 => return Ok(()),
        Err(e) => return Err(format!("deleting {r}: {e}")),
    }
    let start = Instant::now();
    while api
        .get_opt(&r.name)
        .await
        .map_err(|e| format!("reading {r}: {e}"))?
        .is_some()
    {
        if start.elapsed() >= timeout {
            return Err(format!("timed out waiting for {r} to be deleted"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
