//! Remote clusters: Flux's `spec.kubeConfig`, as a cached [`Applier`] per target.
//!
//! - `kubeConfig.secretRef`: a kubeconfig in a Secret (key `spec.kubeConfig.secretRef.key`,
//!   else `value`, else `value.yaml`, as Flux reads it). Static tokens and inline client
//!   certificates are used as given. A user that execs `aws eks get-token`,
//!   `aws-iam-authenticator token` or `plumb eks token` is served by plumb-eks's token code
//!   (no AWS CLI in the image, no process per refresh). Any other exec, auth provider or
//!   file path (`tokenFile`, `client-certificate`, `certificate-authority`, …) is refused: a
//!   kubeconfig from a Secret must not read the controller's own files or run commands.
//! - `kubeConfig.configMapRef` with `provider: aws` (keys `provider`, `cluster` = the EKS
//!   cluster ARN, optional `address` and `ca.crt`): DescribeCluster fills in what is not
//!   given and every request carries a fresh EKS token.
//!
//! `spec.serviceAccountName` (or the controller's default) composes with both as in Flux:
//! requests to the remote cluster impersonate `system:serviceaccount:<ns>:<sa>` there.
//!
//! Appliers are cached per (object holding the kubeconfig, its resourceVersion, service
//! account), so drift memory persists between reconciles and a changed Secret or ConfigMap
//! is picked up on the next reconcile. A new client is probed once (`GET /version`) so a
//! rejected credential is reported as such, naming the cluster, before anything is applied.
//! No error here ever carries a token, a key or a kubeconfig.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use plumb_api::consts::reason;
use plumb_api::meta::KubeConfigReference;
use plumb_eks::{EksAuth, RemoteCluster};
use plumb_ssa::Applier;
use tokio::sync::OnceCell;

use crate::outcome::{Class, Failure};

/// The keys Flux reads a kubeconfig from when `secretRef.key` is not set, in order.
pub const DEFAULT_KUBECONFIG_KEYS: [&str; 2] = ["value", "value.yaml"];

/// Cache key: (kind, namespace, name, key, service account).
/// (source kind, namespace, name, key, impersonated account, field manager).
type CacheKey = (&'static str, String, String, String, Option<String>, String);

/// Builds and caches clients and appliers for remote clusters.
#[derive(Default)]
pub struct RemoteClients {
    eks: OnceCell<Arc<EksAuth>>,
    cache: Mutex<HashMap<CacheKey, (String, Applier)>>,
}

impl std::fmt::Debug for RemoteClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClients").finish_non_exhaustive()
    }
}

/// What a remote target resolved to: a human name (for messages) and the client.
struct Target {
    name: String,
    endpoint: String,
    client: kube::Client,
}

impl RemoteClients {
    /// Uses `auth` for EKS tokens and DescribeCluster instead of loading aws-config's default
    /// chain on first use (tests, or `plumb run` sharing one [`EksAuth`]). Returns false when
    /// an [`EksAuth`] was already in use.
    pub fn use_eks(&self, auth: Arc<EksAuth>) -> bool {
        self.eks.set(auth).is_ok()
    }

    async fn eks(&self) -> Arc<EksAuth> {
        self.eks
            .get_or_init(|| async { Arc::new(EksAuth::from_env(None).await) })
            .await
            .clone()
    }

    /// The applier for `kube_config`, read from `ns` with the local `client`, impersonating
    /// `system:serviceaccount:<ns>:<sa>` in the remote cluster when `sa` is set, and
    /// applying as `field_manager`.
    pub async fn applier(
        &self,
        local: &kube::Client,
        ns: &str,
        kube_config: &KubeConfigReference,
        sa: Option<&str>,
        field_manager: &str,
        concurrency: usize,
    ) -> Result<Applier, Failure> {
        enum Source {
            Secret(Box<Secret>, String),
            ConfigMap(Box<ConfigMap>),
        }
        let (kind, name, source) = match (&kube_config.secret_ref, &kube_config.config_map_ref) {
            (Some(s), None) => {
                let secret = get::<Secret>(local, ns, "Secret", &s.name).await?;
                let key = s.key.clone().unwrap_or_default();
                (
                    "Secret",
                    s.name.clone(),
                    Source::Secret(Box::new(secret), key),
                )
            }
            (None, Some(c)) => {
                let cm = get::<ConfigMap>(local, ns, "ConfigMap", &c.name).await?;
                ("ConfigMap", c.name.clone(), Source::ConfigMap(Box::new(cm)))
            }
            _ => {
                return Err(stalled(
                    "spec.kubeConfig must set exactly one of secretRef and configMapRef",
                ));
            }
        };
        let (key, version) = match &source {
            Source::Secret(s, key) => (key.clone(), s.metadata.resource_version.clone()),
            Source::ConfigMap(c) => (String::new(), c.metadata.resource_version.clone()),
        };
        let version = version.unwrap_or_default();
        let cache_key: CacheKey = (
            kind,
            ns.to_string(),
            name.clone(),
            key,
            sa.map(str::to_string),
            field_manager.to_string(),
        );
        if let Some((v, a)) = self.lock().get(&cache_key)
            && *v == version
        {
            return Ok(a.clone());
        }
        let impersonate = sa.map(|sa| format!("system:serviceaccount:{ns}:{sa}"));
        let target = match &source {
            Source::Secret(secret, key) => {
                self.secret_target(ns, &name, key, secret, impersonate)
                    .await?
            }
            Source::ConfigMap(cm) => self.config_map_target(ns, &name, cm, impersonate).await?,
        };
        probe(&target).await?;
        let applier = Applier::new(target.client, field_manager, concurrency);
        self.lock().insert(cache_key, (version, applier.clone()));
        Ok(applier)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, (String, Applier)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn secret_target(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        secret: &Secret,
        impersonate: Option<String>,
    ) -> Result<Target, Failure> {
        let data = secret.data.clone().unwrap_or_default();
        let keys: Vec<&str> = if key.is_empty() {
            DEFAULT_KUBECONFIG_KEYS.to_vec()
        } else {
            vec![key]
        };
        let Some(bytes) = keys.iter().find_map(|k| data.get(*k)) else {
            return Err(stalled(format!(
                "Secret '{ns}/{name}' has no kubeconfig under key {}",
                keys.iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        };
        let what = format!("kubeconfig in Secret '{ns}/{name}'");
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| stalled(format!("the {what} is not UTF-8")))?;
        // The parser's message may quote the document: name the Secret only.
        let kubeconfig = Kubeconfig::from_yaml(text)
            .map_err(|_| stalled(format!("the {what} is not a valid kubeconfig")))?;
        let exec = check_kubeconfig(&kubeconfig, &what)?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| stalled(format!("loading the {what}: {}", redact(&e.to_string()))))?;
        config.auth_info.impersonate = impersonate;
        let endpoint = config.cluster_url.to_string();
        let client = match exec {
            Some(req) => {
                let tokens = self
                    .eks()
                    .await
                    .token_source(
                        &req.cluster_name,
                        req.region.as_deref(),
                        req.role_arn.as_deref(),
                    )
                    .await
                    .map_err(eks_failure)?;
                plumb_eks::client_from_config(&req.cluster_name, config, tokens)
                    .map_err(eks_failure)?
            }
            None => kube::Client::try_from(config)
                .map_err(|e| stalled(format!("building a client from the {what}: {e}")))?,
        };
        Ok(Target {
            name: format!("from Secret '{ns}/{name}'"),
            endpoint,
            client,
        })
    }

    async fn config_map_target(
        &self,
        ns: &str,
        name: &str,
        cm: &ConfigMap,
        impersonate: Option<String>,
    ) -> Result<Target, Failure> {
        let data = cm.data.clone().unwrap_or_default();
        let remote = RemoteCluster::from_config_map(&data).map_err(|e| {
            stalled(format!(
                "ConfigMap '{ns}/{name}' of spec.kubeConfig.configMapRef: {e}"
            ))
        })?;
        let eks = self.eks().await;
        let (endpoint, ca) = match (&remote.address, &remote.ca_pem) {
            (Some(a), Some(ca)) => (a.clone(), ca.clone()),
            (address, ca) => {
                let info = eks
                    .describe_cluster(&remote.name, Some(&remote.region))
                    .await
                    .map_err(eks_failure)?;
                (
                    address.clone().unwrap_or(info.endpoint),
                    ca.clone().unwrap_or(info.ca_pem),
                )
            }
        };
        let tokens = eks
            .token_source(
                &remote.name,
                Some(&remote.region),
                remote.role_arn.as_deref(),
            )
            .await
            .map_err(eks_failure)?;
        let client = plumb_eks::client_config(&remote.name, &endpoint, Some(&ca))
            .and_then(|mut config| {
                config.auth_info.impersonate = impersonate;
                plumb_eks::client_from_config(&remote.name, config, tokens)
            })
            .map_err(eks_failure)?;
        Ok(Target {
            name: format!("EKS cluster '{}'", remote.name),
            endpoint,
            client,
        })
    }
}

/// Refuses kubeconfigs that would run commands or read the controller's files, and
/// recognises an EKS token exec. Only the current context's user and cluster are checked
/// (kube uses nothing else).
fn check_kubeconfig(
    kc: &Kubeconfig,
    what: &str,
) -> Result<Option<plumb_eks::ExecTokenRequest>, Failure> {
    let ctx_name = kc
        .current_context
        .clone()
        .or_else(|| kc.contexts.first().map(|c| c.name.clone()))
        .ok_or_else(|| stalled(format!("the {what} has no context")))?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .ok_or_else(|| stalled(format!("the {what} has no context '{ctx_name}'")))?;
    if let Some(cluster) = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        && cluster.certificate_authority.is_some()
    {
        return Err(stalled(format!(
            "the {what} names a certificate-authority file; use certificate-authority-data"
        )));
    }
    let Some(user_name) = context.user.as_deref() else {
        return Ok(None);
    };
    let Some(user) = kc
        .auth_infos
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.auth_info.as_ref())
    else {
        return Ok(None);
    };
    let files = [
        ("tokenFile", user.token_file.is_some()),
        ("client-certificate", user.client_certificate.is_some()),
        ("client-key", user.client_key.is_some()),
    ];
    if let Some((field, _)) = files.iter().find(|(_, set)| *set) {
        return Err(stalled(format!(
            "the {what} reads a local file ({field}); only inline credentials are allowed"
        )));
    }
    if user.auth_provider.is_some() {
        return Err(stalled(format!(
            "the {what} uses an auth-provider, which plumb does not run"
        )));
    }
    match &user.exec {
        None => Ok(None),
        Some(exec) => match plumb_eks::recognise_exec(exec) {
            Some(req) => {
                if req.profile.is_some() {
                    tracing::warn!(
                        kubeconfig = what,
                        "the kubeconfig's exec names an AWS profile; plumb signs EKS tokens with its own credentials"
                    );
                }
                Ok(Some(req))
            }
            None => Err(stalled(format!(
                "the {what} execs {:?}; plumb serves only `aws eks get-token`, \
                 `aws-iam-authenticator token` and `plumb eks token` and runs no other command",
                exec.command.as_deref().unwrap_or_default()
            ))),
        },
    }
}

/// One request to the new client, so a rejected credential is reported clearly.
async fn probe(target: &Target) -> Result<(), Failure> {
    match target.client.apiserver_version().await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 401 => Err(Failure::new(
            Class::Transient,
            reason::RECONCILIATION_FAILED,
            format!(
                "remote cluster {} at {} rejected the credentials: 401 Unauthorized",
                target.name, target.endpoint
            ),
        )),
        Err(e) => Err(Failure::new(
            Class::Transient,
            reason::RECONCILIATION_FAILED,
            format!(
                "remote cluster {} at {}: {}",
                target.name,
                target.endpoint,
                redact(&e.to_string())
            ),
        )),
    }
}

async fn get<K>(client: &kube::Client, ns: &str, kind: &str, name: &str) -> Result<K, Failure>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(Failure::new(
            Class::Waiting,
            reason::RECONCILIATION_FAILED,
            format!("{kind} '{ns}/{name}' of spec.kubeConfig not found"),
        )),
        Err(e) => Err(Failure::new(
            Class::Transient,
            reason::RECONCILIATION_FAILED,
            format!("getting {kind} '{ns}/{name}' of spec.kubeConfig: {e}"),
        )),
    }
}

fn stalled(message: impl Into<String>) -> Failure {
    Failure::new(Class::Stalled, reason::RECONCILIATION_FAILED, message)
}

fn eks_failure(e: plumb_eks::Error) -> Failure {
    let class = if e.is_transient() {
        Class::Transient
    } else {
        Class::Stalled
    };
    let reason = match e.aws_kind() {
        Some(plumb_eks::AwsErrorKind::AccessDenied | plumb_eks::AwsErrorKind::Credentials) => {
            reason::ACCESS_DENIED
        }
        _ => reason::RECONCILIATION_FAILED,
    };
    Failure::new(class, reason, e.to_string())
}

/// Drops anything after `Bearer ` in a client error message (kube never puts one there,
/// but a message from a proxy could echo a header).
fn redact(msg: &str) -> String {
    match msg.find("Bearer ") {
        Some(i) => format!("{}Bearer <redacted>", &msg[..i]),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kc(user: &str, cluster_extra: &str) -> Kubeconfig {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             contexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster_extra}\
             users:\n- name: u\n  user:\n{user}"
        );
        Kubeconfig::from_yaml(&yaml).unwrap()
    }

    #[test]
    fn static_token_is_used_as_given() {
        let k = kc("    token: abc\n", "");
        assert_eq!(check_kubeconfig(&k, "kc").unwrap(), None);
    }

    #[test]
    fn eks_exec_is_recognised() {
        let k = kc(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [--region, eu-west-1, eks, get-token, --cluster-name, spoke, --role-arn, 'arn:aws:iam::123456789012:role/r']\n",
            "",
        );
        let req = check_kubeconfig(&k, "kc").unwrap().unwrap();
        assert_eq!(req.cluster_name, "spoke");
        assert_eq!(req.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            req.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/r")
        );
        let k = kc(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: /usr/local/bin/aws-iam-authenticator\n      args: [token, -i, hub]\n",
            "",
        );
        assert_eq!(
            check_kubeconfig(&k, "kc").unwrap().unwrap().cluster_name,
            "hub"
        );
    }

    #[test]
    fn other_execs_and_files_are_refused() {
        let k = kc(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: sh\n      args: [-c, 'cat /etc/shadow']\n",
            "",
        );
        let e = check_kubeconfig(&k, "kc").unwrap_err();
        assert!(e.message.contains("runs no other command"), "{e}");
        assert_eq!(e.class, Class::Stalled);
        let k = kc(
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
            "",
        );
        let e = check_kubeconfig(&k, "kc").unwrap_err();
        assert!(e.message.contains("tokenFile"), "{e}");
        let k = kc("    client-certificate: /etc/x.crt\n", "");
        assert!(check_kubeconfig(&k, "kc").is_err());
        let k = kc(
            "    token: abc\n",
            "    certificate-authority: /etc/ca.crt\n",
        );
        let e = check_kubeconfig(&k, "kc").unwrap_err();
        assert!(e.message.contains("certificate-authority"), "{e}");
    }

    #[test]
    fn bearer_tokens_are_redacted() {
        assert_eq!(
            redact("echo: Authorization: Bearer k8s-aws-v1.abc"),
            "echo: Authorization: Bearer <redacted>"
        );
        assert_eq!(redact("plain"), "plain");
    }
}
