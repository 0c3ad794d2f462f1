//! Field specs (which fields of which kinds a transformer touches) and kustomize's default
//! transformer configuration, plus user `configurations:` files in the same format.
//!
//! The defaults are written as compact tables expanded by code (pod-template paths are
//! generated for every workload kind) rather than transcribed YAML.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::resource::{Gvk, GvkRef, Res};

/// The specs of `specs` that apply to the kind of `r`.
pub(crate) fn applicable<'s>(specs: &'s [FieldSpec], r: &Res) -> Vec<&'s FieldSpec> {
    let gvk = r.gvk_ref();
    specs.iter().filter(|f| f.applies_to(gvk)).collect()
}

/// Which field(s) of which kinds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSpec {
    pub gvk: Gvk,
    pub path: Vec<Seg>,
    pub raw_path: String,
    pub create: bool,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Field(String),
    /// `[key=value]` element filter on a list.
    Filter(String, String),
    /// `*` every field of a map or element of a list.
    Any,
    /// `name[]`: a list field, traversed but never created.
    List(String),
}

pub(crate) fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    let push = |s: &mut String, segs: &mut Vec<Seg>| {
        let t = std::mem::take(s);
        if t.is_empty() {
            return;
        }
        if let Some(inner) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            if let Some((k, v)) = inner.split_once('=') {
                segs.push(Seg::Filter(k.to_string(), v.to_string()));
            }
            return;
        }
        if t == "*" {
            segs.push(Seg::Any);
            return;
        }
        let (name, filter) = match t.find('[') {
            Some(i) if t.ends_with(']') => {
                (t[..i].to_string(), Some(t[i + 1..t.len() - 1].to_string()))
            }
            _ => (t, None),
        };
        match filter {
            Some(f) if f.is_empty() => segs.push(Seg::List(name)),
            Some(f) => {
                segs.push(Seg::Field(name));
                if let Some((k, v)) = f.split_once('=') {
                    segs.push(Seg::Filter(k.to_string(), v.to_string()));
                }
            }
            None => segs.push(Seg::Field(name)),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                cur.push('/');
                chars.next();
            }
            '/' => push(&mut cur, &mut segs),
            c => cur.push(c),
        }
    }
    push(&mut cur, &mut segs);
    segs
}

impl FieldSpec {
    pub(crate) fn new(kind: &str, group: &str, version: &str, path: &str, create: bool) -> Self {
        FieldSpec {
            gvk: Gvk {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
            },
            path: parse_path(path),
            raw_path: path.into(),
            create,
        }
    }

    pub(crate) fn applies_to(&self, gvk: GvkRef<'_>) -> bool {
        gvk.selected_by(&self.gvk.group, &self.gvk.version, &self.gvk.kind)
    }

    fn from_value(v: &Value, file: &str) -> Result<FieldSpec> {
        let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let path = get("path");
        if path.is_empty() {
            return Err(Error::invalid(file, "field spec without a path"));
        }
        Ok(FieldSpec::new(
            &get("kind"),
            &get("group"),
            &get("version"),
            &path,
            v.get("create").and_then(Value::as_bool).unwrap_or(false),
        ))
    }
}

/// Visits the field(s) at `path` in `node`, creating missing ones when `create` is set.
/// Lists along the way are traversed element by element.
pub(crate) fn visit(
    node: &mut Value,
    path: &[Seg],
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<()>,
) -> Result<()> {
    let Some((seg, rest)) = path.split_first() else {
        return f(node);
    };
    if let Value::Array(items) = node
        && !matches!(seg, Seg::Filter(..))
    {
        for it in items {
            visit(it, path, create, f)?;
        }
        return Ok(());
    }
    match seg {
        Seg::Field(name) => {
            let Value::Object(m) = node else {
                return Ok(());
            };
            match crate::resource::map_get_mut(m, name) {
                Some(Value::Null) if create && !rest.is_empty() => {
                    m.insert(name.clone(), Value::Object(Map::new()));
                    if let Some(child) = crate::resource::map_get_mut(m, name) {
                        visit(child, rest, create, f)?;
                    }
                }
                Some(child) => visit(child, rest, create, f)?,
                None if create => {
                    let init = if rest.is_empty() {
                        Value::Null
                    } else {
                        Value::Object(Map::new())
                    };
                    m.insert(name.clone(), init);
                    if let Some(child) = crate::resource::map_get_mut(m, name) {
                        visit(child, rest, create, f)?;
                        if child.is_null() {
                            m.remove(name);
                        }
                    }
                }
                None => {}
            }
        }
        Seg::List(name) => {
            if let Value::Object(m) = node
                && let Some(child) = crate::resource::map_get_mut(m, name)
            {
                visit(child, rest, create, f)?;
            }
        }
        Seg::Filter(k, v) => {
            if let Value::Array(items) = node {
                for it in items {
                    let hit = match it {
                        Value::Object(m) => crate::resource::map_get(m, k)
                            .map(crate::resource::value_string)
                            .is_some_and(|x| x == *v),
                        _ => false,
                    };
                    if hit {
                        visit(it, rest, create, f)?;
                    }
                }
            }
        }
        Seg::Any => match node {
            Value::Object(m) => {
                for (_, child) in m.iter_mut() {
                    visit(child, rest, create, f)?;
                }
            }
            Value::Array(items) => {
                for it in items {
                    visit(it, rest, create, f)?;
                }
            }
            _ => {}
        },
    }
    Ok(())
}

/// A name back-reference: fields of referrers that hold the name of a referral kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NameBackRef {
    pub referral: Gvk,
    pub specs: Vec<FieldSpec>,
}

/// Transformer configuration (kustomize's `TransformerConfig`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
    pub var_reference: Vec<FieldSpec>,
    pub name_reference: Vec<NameBackRef>,
}

fn add_unique(dst: &mut Vec<FieldSpec>, src: &[FieldSpec]) {
    for s in src {
        if !dst.contains(s) {
            dst.push(s.clone());
        }
    }
}

impl Config {
    pub(crate) fn merge(&mut self, o: &Config) {
        add_unique(&mut self.name_prefix, &o.name_prefix);
        add_unique(&mut self.name_suffix, &o.name_suffix);
        add_unique(&mut self.namespace, &o.namespace);
        add_unique(&mut self.common_labels, &o.common_labels);
        add_unique(&mut self.template_labels, &o.template_labels);
        add_unique(&mut self.labels, &o.labels);
        add_unique(&mut self.common_annotations, &o.common_annotations);
        add_unique(&mut self.images, &o.images);
        add_unique(&mut self.replicas, &o.replicas);
        add_unique(&mut self.var_reference, &o.var_reference);
        for nb in &o.name_reference {
            match self
                .name_reference
                .iter_mut()
                .find(|x| x.referral == nb.referral)
            {
                Some(x) => add_unique(&mut x.specs, &nb.specs),
                None => self.name_reference.push(nb.clone()),
            }
        }
    }

    /// kustomize's defaults layered with `o` (see [`Config::overridden_by`]); the defaults are
    /// built once per process and only copied when `o` changes them.
    pub(crate) fn effective(o: &Config) -> std::borrow::Cow<'static, Config> {
        static DEFAULTS: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        let d = DEFAULTS.get_or_init(Config::defaults);
        if o.is_empty() {
            std::borrow::Cow::Borrowed(d)
        } else {
            std::borrow::Cow::Owned(d.clone().overridden_by(o))
        }
    }

    fn is_empty(&self) -> bool {
        self.name_prefix.is_empty()
            && self.name_suffix.is_empty()
            && self.namespace.is_empty()
            && self.common_labels.is_empty()
            && self.template_labels.is_empty()
            && self.labels.is_empty()
            && self.common_annotations.is_empty()
            && self.images.is_empty()
            && self.replicas.is_empty()
            && self.var_reference.is_empty()
            && self.name_reference.is_empty()
    }

    /// Layers user configuration over defaults: a field spec list the user gives replaces the
    /// default list for that transformer (name references are added to).
    pub(crate) fn overridden_by(mut self, o: &Config) -> Config {
        fn take(dst: &mut Vec<FieldSpec>, src: &[FieldSpec]) {
            if !src.is_empty() {
                *dst = src.to_vec();
            }
        }
        take(&mut self.name_prefix, &o.name_prefix);
        take(&mut self.name_suffix, &o.name_suffix);
        take(&mut self.namespace, &o.namespace);
        take(&mut self.common_labels, &o.common_labels);
        take(&mut self.template_labels, &o.template_labels);
        take(&mut self.labels, &o.labels);
        take(&mut self.common_annotations, &o.common_annotations);
        take(&mut self.images, &o.images);
        take(&mut self.replicas, &o.replicas);
        take(&mut self.var_reference, &o.var_reference);
        let mut nr = Config {
            name_reference: o.name_reference.clone(),
            ..Config::default()
        };
        nr.name_reference.retain(|_| true);
        let mut base = Config {
            name_reference: std::mem::take(&mut self.name_reference),
            ..Config::default()
        };
        base.merge(&nr);
        self.name_reference = base.name_reference;
        self
    }

    /// Parses a `configurations:` file.
    pub(crate) fn parse(v: &Value, file: &str) -> Result<Config> {
        let mut c = Config::default();
        let Some(m) = v.as_object() else {
            return Ok(c);
        };
        for (k, val) in m {
            let specs = || -> Result<Vec<FieldSpec>> {
                val.as_array()
                    .map(|a| a.iter().map(|x| FieldSpec::from_value(x, file)).collect())
                    .unwrap_or(Ok(Vec::new()))
            };
            match k.as_str() {
                "namePrefix" => c.name_prefix = specs()?,
                "nameSuffix" => c.name_suffix = specs()?,
                "namespace" => c.namespace = specs()?,
                "commonLabels" => c.common_labels = specs()?,
                "templateLabels" => c.template_labels = specs()?,
                "labels" => c.labels = specs()?,
                "commonAnnotations" => c.common_annotations = specs()?,
                "images" => c.images = specs()?,
                "replicas" => c.replicas = specs()?,
                "varReference" => c.var_reference = specs()?,
                "nameReference" => {
                    for nb in val.as_array().into_iter().flatten() {
                        let get =
                            |k: &str| nb.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        let specs = nb
                            .get("fieldSpecs")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().map(|x| FieldSpec::from_value(x, file)).collect())
                            .unwrap_or(Ok(Vec::new()))?;
                        c.name_reference.push(NameBackRef {
                            referral: Gvk {
                                group: get("group"),
                                version: get("version"),
                                kind: get("kind"),
                            },
                            specs,
                        });
                    }
                }
                other => {
                    return Err(Error::invalid(
                        file,
                        format!("unknown transformer configuration field {other:?}"),
                    ));
                }
            }
        }
        Ok(c)
    }

    /// kustomize's built-in defaults.
    pub(crate) fn defaults() -> Config {
        let fs = FieldSpec::new;
        let mut c = Config {
            name_prefix: vec![fs("", "", "", "metadata/name", false)],
            name_suffix: vec![fs("", "", "", "metadata/name", false)],
            namespace: vec![
                fs("", "", "", "metadata/namespace", true),
                fs("Namespace", "", "v1", "metadata/name", false),
                fs(
                    "APIService",
                    "apiregistration.k8s.io",
                    "",
                    "spec/service/namespace",
                    false,
                ),
                fs(
                    "CustomResourceDefinition",
                    "apiextensions.k8s.io",
                    "",
                    "spec/conversion/webhook/clientConfig/service/namespace",
                    false,
                ),
            ],
            ..Config::default()
        };
        // Labels on templates.
        let tpl_kinds: &[(&str, &str, &str)] = &[
            ("ReplicationController", "", "v1"),
            ("Deployment", "", ""),
            ("ReplicaSet", "", ""),
            ("DaemonSet", "", ""),
            ("StatefulSet", "apps", ""),
            ("Job", "batch", ""),
        ];
        let mut tl = vec![fs("", "", "", "metadata/labels", true)];
        let mut ca = vec![fs("", "", "", "metadata/annotations", true)];
        for (k, g, v) in tpl_kinds {
            tl.push(fs(k, g, v, "spec/template/metadata/labels", true));
            ca.push(fs(k, g, v, "spec/template/metadata/annotations", true));
        }
        for p in [
            "spec/jobTemplate/metadata",
            "spec/jobTemplate/spec/template/metadata",
        ] {
            tl.push(fs("CronJob", "batch", "", &format!("{p}/labels"), true));
            ca.push(fs(
                "CronJob",
                "batch",
                "",
                &format!("{p}/annotations"),
                true,
            ));
        }
        c.template_labels = tl.clone();
        c.common_annotations = ca;
        // Selectors.
        let mut cl = vec![
            fs("Service", "", "v1", "spec/selector", true),
            fs("ReplicationController", "", "v1", "spec/selector", true),
            fs("Deployment", "", "", "spec/selector/matchLabels", true),
            fs("ReplicaSet", "", "", "spec/selector/matchLabels", true),
            fs("DaemonSet", "", "", "spec/selector/matchLabels", true),
            fs("StatefulSet", "apps", "", "spec/selector/matchLabels", true),
            fs(
                "StatefulSet",
                "apps",
                "",
                "spec/volumeClaimTemplates[]/metadata/labels",
                true,
            ),
            fs("Job", "batch", "", "spec/selector/matchLabels", false),
            fs(
                "CronJob",
                "batch",
                "",
                "spec/jobTemplate/spec/selector/matchLabels",
                false,
            ),
            fs(
                "PodDisruptionBudget",
                "policy",
                "",
                "spec/selector/matchLabels",
                false,
            ),
            fs(
                "NetworkPolicy",
                "networking.k8s.io",
                "",
                "spec/podSelector/matchLabels",
                false,
            ),
            fs(
                "NetworkPolicy",
                "networking.k8s.io",
                "",
                "spec/ingress/from/podSelector/matchLabels",
                false,
            ),
            fs(
                "NetworkPolicy",
                "networking.k8s.io",
                "",
                "spec/egress/to/podSelector/matchLabels",
                false,
            ),
        ];
        for k in ["Deployment", "StatefulSet"] {
            for a in ["podAffinity", "podAntiAffinity"] {
                cl.push(fs(k, "apps", "", &format!("spec/template/spec/affinity/{a}/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels"), false));
                cl.push(fs(k, "apps", "", &format!("spec/template/spec/affinity/{a}/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels"), false));
            }
            cl.push(fs(
                k,
                "apps",
                "",
                "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
                false,
            ));
        }
        cl.extend(tl);
        c.common_labels = cl;
        // Workloads with pod templates: (kind, group, path to the pod spec).
        let pods: &[(&str, &str, &str)] = &[
            ("Pod", "", "spec"),
            ("PodTemplate", "", "template/spec"),
            ("Deployment", "", "spec/template/spec"),
            ("ReplicaSet", "", "spec/template/spec"),
            ("DaemonSet", "", "spec/template/spec"),
            ("StatefulSet", "", "spec/template/spec"),
            ("Job", "", "spec/template/spec"),
            ("CronJob", "", "spec/jobTemplate/spec/template/spec"),
        ];
        let with_rc: Vec<(&str, &str, &str)> = pods
            .iter()
            .filter(|p| p.0 != "PodTemplate" && p.0 != "ReplicaSet")
            .copied()
            .chain([("ReplicationController", "", "spec/template/spec")])
            .collect();
        let on_pods = |list: &[(&str, &str, &str)], sub: &[&str]| -> Vec<FieldSpec> {
            let mut v = Vec::new();
            for (k, g, p) in list {
                for s in sub {
                    v.push(fs(k, g, "", &format!("{p}/{s}"), false));
                }
            }
            v
        };
        let mut cm = on_pods(
            pods,
            &[
                "volumes/configMap/name",
                "containers/env/valueFrom/configMapKeyRef/name",
                "initContainers/env/valueFrom/configMapKeyRef/name",
                "containers/envFrom/configMapRef/name",
                "initContainers/envFrom/configMapRef/name",
                "volumes/projected/sources/configMap/name",
            ],
        );
        cm.push(fs("Node", "", "", "spec/configSource/configMap", false));
        cm.push(fs("Role", "", "", "rules/resourceNames", false));
        cm.push(fs("ClusterRole", "", "", "rules/resourceNames", false));
        cm.push(fs(
            "Ingress",
            "",
            "",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/fastcgi-params-configmap",
            false,
        ));
        let mut sec = on_pods(
            pods,
            &[
                "volumes/secret/secretName",
                "containers/env/valueFrom/secretKeyRef/name",
                "initContainers/env/valueFrom/secretKeyRef/name",
                "containers/envFrom/secretRef/name",
                "initContainers/envFrom/secretRef/name",
                "imagePullSecrets/name",
                "volumes/projected/sources/secret/name",
            ],
        );
        for (k, p) in [
            ("Ingress", "spec/tls/secretName"),
            (
                "Ingress",
                "metadata/annotations/ingress.kubernetes.io\\/auth-secret",
            ),
            (
                "Ingress",
                "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-secret",
            ),
            (
                "Ingress",
                "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-tls-secret",
            ),
            ("ServiceAccount", "imagePullSecrets/name"),
            ("StorageClass", "parameters/secretName"),
            ("StorageClass", "parameters/adminSecretName"),
            ("StorageClass", "parameters/userSecretName"),
            ("StorageClass", "parameters/secretRef"),
            ("Role", "rules/resourceNames"),
            ("ClusterRole", "rules/resourceNames"),
            ("PersistentVolume", "spec/azureFile/secretName"),
        ] {
            sec.push(fs(k, "", "", p, false));
        }
        sec.push(fs(
            "Service",
            "serving.knative.dev",
            "v1",
            "spec/template/spec/containers/env/valueFrom/secretKeyRef/name",
            false,
        ));
        let svc = vec![
            fs("StatefulSet", "apps", "", "spec/serviceName", false),
            fs(
                "Ingress",
                "",
                "",
                "spec/rules/http/paths/backend/serviceName",
                false,
            ),
            fs("Ingress", "", "", "spec/backend/serviceName", false),
            fs(
                "Ingress",
                "",
                "",
                "spec/rules/http/paths/backend/service/name",
                false,
            ),
            fs("Ingress", "", "", "spec/defaultBackend/service/name", false),
            fs(
                "APIService",
                "apiregistration.k8s.io",
                "",
                "spec/service/name",
                false,
            ),
            fs(
                "ValidatingWebhookConfiguration",
                "admissionregistration.k8s.io",
                "",
                "webhooks/clientConfig/service",
                false,
            ),
            fs(
                "MutatingWebhookConfiguration",
                "admissionregistration.k8s.io",
                "",
                "webhooks/clientConfig/service",
                false,
            ),
            fs("HTTPRoute", "", "", "spec/rules/backendRefs/name", false),
        ];
        let rbac = "rbac.authorization.k8s.io";
        let mut sa = vec![
            fs("RoleBinding", rbac, "", "subjects", false),
            fs("ClusterRoleBinding", rbac, "", "subjects", false),
        ];
        sa.extend(on_pods(&with_rc, &["serviceAccountName"]));
        let pvc = on_pods(&with_rc, &["volumes/persistentVolumeClaim/claimName"]);
        let prio = on_pods(&with_rc, &["priorityClassName"]);
        let gvk = |k: &str, g: &str, v: &str| Gvk {
            group: g.into(),
            version: v.into(),
            kind: k.into(),
        };
        let hpa = vec![fs(
            "HorizontalPodAutoscaler",
            "",
            "",
            "spec/scaleTargetRef/name",
            false,
        )];
        c.name_reference = vec![
            NameBackRef {
                referral: gvk("Deployment", "", ""),
                specs: hpa.clone(),
            },
            NameBackRef {
                referral: gvk("ReplicationController", "", ""),
                specs: hpa.clone(),
            },
            NameBackRef {
                referral: gvk("ReplicaSet", "", ""),
                specs: hpa.clone(),
            },
            NameBackRef {
                referral: gvk("StatefulSet", "", ""),
                specs: hpa,
            },
            NameBackRef {
                referral: gvk("ConfigMap", "", "v1"),
                specs: cm,
            },
            NameBackRef {
                referral: gvk("Secret", "", "v1"),
                specs: sec,
            },
            NameBackRef {
                referral: gvk("Service", "", "v1"),
                specs: svc,
            },
            NameBackRef {
                referral: gvk("Role", rbac, ""),
                specs: vec![fs("RoleBinding", rbac, "", "roleRef/name", false)],
            },
            NameBackRef {
                referral: gvk("ClusterRole", rbac, ""),
                specs: vec![
                    fs("RoleBinding", rbac, "", "roleRef/name", false),
                    fs("ClusterRoleBinding", rbac, "", "roleRef/name", false),
                ],
            },
            NameBackRef {
                referral: gvk("ServiceAccount", "", "v1"),
                specs: sa,
            },
            NameBackRef {
                referral: gvk("PersistentVolumeClaim", "", "v1"),
                specs: pvc,
            },
            NameBackRef {
                referral: gvk("PersistentVolume", "", "v1"),
                specs: vec![
                    fs("PersistentVolumeClaim", "", "", "spec/volumeName", false),
                    fs("ClusterRole", "", "", "rules/resourceNames", false),
                ],
            },
            NameBackRef {
                referral: gvk("StorageClass", "storage.k8s.io", "v1"),
                specs: vec![
                    fs("PersistentVolume", "", "", "spec/storageClassName", false),
                    fs(
                        "PersistentVolumeClaim",
                        "",
                        "",
                        "spec/storageClassName",
                        false,
                    ),
                    fs(
                        "StatefulSet",
                        "",
                        "",
                        "spec/volumeClaimTemplates/spec/storageClassName",
                        false,
                    ),
                ],
            },
            NameBackRef {
                referral: gvk("PriorityClass", "scheduling.k8s.io", "v1"),
                specs: prio,
            },
            NameBackRef {
                referral: gvk(
                    "ValidatingAdmissionPolicy",
                    "admissionregistration.k8s.io",
                    "",
                ),
                specs: vec![fs(
                    "ValidatingAdmissionPolicyBinding",
                    "admissionregistration.k8s.io",
                    "",
                    "spec/policyName",
                    false,
                )],
            },
            NameBackRef {
                referral: gvk("IngressClass", "networking.k8s.io", "v1"),
                specs: vec![fs("Ingress", "", "", "spec/ingressClassName", false)],
            },
        ];
        c.replicas = [
            "Deployment",
            "ReplicationController",
            "ReplicaSet",
            "StatefulSet",
        ]
        .iter()
        .map(|k| fs(k, "", "", "spec/replicas", true))
        .collect();
        // Variable references.
        let mut vr = on_pods(
            &pods
                .iter()
                .filter(|p| p.0 != "PodTemplate")
                .copied()
                .collect::<Vec<_>>(),
            &[
                "containers/args",
                "containers/command",
                "containers/env/value",
                "containers/volumeMounts/mountPath",
                "initContainers/args",
                "initContainers/command",
                "initContainers/env/value",
                "initContainers/volumeMounts/mountPath",
                "volumes/nfs/server",
            ],
        );
        for (k, p) in [
            ("Ingress", "spec/rules/host"),
            ("Ingress", "spec/tls/hosts"),
            ("Ingress", "spec/tls/secretName"),
            ("Service", "spec/ports/port"),
            ("Service", "spec/ports/targetPort"),
            ("StatefulSet", "spec/volumeClaimTemplates/spec/nfs/server"),
            ("PersistentVolume", "spec/nfs/server"),
            (
                "CronJob",
                "spec/jobTemplate/spec/template/volumes/nfs/server",
            ),
            ("Deployment", "spec/template/metadata/annotations"),
            ("ReplicaSet", "spec/template/metadata/annotations"),
            ("DaemonSet", "spec/template/metadata/annotations"),
            ("StatefulSet", "spec/template/metadata/annotations"),
            ("Job", "spec/template/metadata/annotations"),
            ("", "metadata/labels"),
            ("", "metadata/annotations"),
        ] {
            vr.push(fs(k, "", "", p, false));
        }
        c.var_reference = vr;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_paths() {
        let p = parse_path("metadata/annotations/a.b\\/c");
        assert_eq!(
            p,
            vec![
                Seg::Field("metadata".into()),
                Seg::Field("annotations".into()),
                Seg::Field("a.b/c".into())
            ]
        );
    }

    #[test]
    fn visit_creates_and_traverses_lists() {
        let mut v = serde_json::json!({"spec": {"c": [{"n": 1}, {"n": 2}]}});
        let mut count = 0;
        visit(&mut v, &parse_path("spec/c/n"), false, &mut |x| {
            count += 1;
            *x = Value::from(9);
            Ok(())
        })
        .unwrap();
        assert_eq!(count, 2);
        visit(&mut v, &parse_path("metadata/labels"), true, &mut |x| {
            *x = serde_json::json!({"a": "b"});
            Ok(())
        })
        .unwrap();
        assert_eq!(v["metadata"]["labels"]["a"], "b");
    }
}
