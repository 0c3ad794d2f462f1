//! One namespace per test, deleted when the test is done.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};

use crate::{ControlPlaneInfo, Error};

/// A namespace created for one test. Call [`TestNamespace::delete`] at the end; a
/// dropped, undeleted namespace is deleted in the background on a best-effort basis.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    info: ControlPlaneInfo,
    deleted: bool,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` with the admin client.
    pub async fn create(info: &ControlPlaneInfo, prefix: &str) -> Result<Self, Error> {
        let client = info.admin_client().await?;
        let suffix: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..6)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect()
        };
        let name = format!("{}-{suffix}", prefix.to_lowercase());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"plumb.dev/test": "true"}},
        }))
        .map_err(|e| Error::Kube(e.to_string()))?;
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| Error::Kube(format!("creating namespace {name}: {e}")))?;
        Ok(TestNamespace {
            name,
            info: info.clone(),
            deleted: false,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace and waits until it is gone (the controller-manager's
    /// namespace controller empties it first).
    pub async fn delete(mut self) -> Result<(), Error> {
        self.deleted = true;
        delete_and_wait(&self.info, &self.name, Duration::from_secs(60)).await
    }
}

async fn delete_and_wait(
    info: &ControlPlaneInfo,
    name: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let api = Api::<Namespace>::all(info.admin_client().await?);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(Error::Kube(format!("deleting namespace {name}: {e}"))),
    }
    crate::wait::poll(&format!("namespace {name} to be deleted"), timeout, || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        }
    })
    .await
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let info = self.info.clone();
        let name = self.name.clone();
        // A failed test never reaches delete(): clean up without waiting for it.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(c) = info.admin_client().await {
                        let _ = Api::<Namespace>::all(c)
                            .delete(&name, &DeleteParams::default())
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
