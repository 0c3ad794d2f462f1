//! Kubeconfig output for `plumb eks kubeconfig`, and recognition of kubeconfig users that
//! exec an EKS token command, so plumb can serve them with its own token code (no aws CLI in
//! the image).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::cluster::ClusterInfo;
use crate::error::{Error, Result};
use crate::token::EXEC_CREDENTIAL_API_VERSION;

/// Renders a kubeconfig for `info` whose user runs `<command> eks token --cluster-name <name>
/// --region <region> [--role-arn <role>]`. Entries are named by the cluster ARN, like
/// `aws eks update-kubeconfig` does.
pub fn render_kubeconfig(
    info: &ClusterInfo,
    command: &str,
    role_arn: Option<&str>,
) -> Result<String> {
    let arn = info.arn.to_string();
    let mut args = vec![
        "eks".to_string(),
        "token".into(),
        "--cluster-name".into(),
        info.name.clone(),
        "--region".into(),
        info.arn.region.clone(),
    ];
    if let Some(role) = role_arn {
        args.push("--role-arn".into());
        args.push(role.to_string());
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": arn,
            "cluster": {
                "server": info.endpoint,
                "certificate-authority-data": STANDARD.encode(&info.ca_pem),
            }
        }],
        "contexts": [{
            "name": arn,
            "context": { "cluster": arn, "user": arn }
        }],
        "current-context": arn,
        "preferences": {},
        "users": [{
            "name": arn,
            "user": {
                "exec": {
                    "apiVersion": EXEC_CREDENTIAL_API_VERSION,
                    "command": command,
                    "args": args,
                    "interactiveMode": "Never",
                    "provideClusterInfo": false,
                }
            }
        }]
    });
    serde_saphyr::to_string(&doc).map_err(|e| Error::Kubeconfig {
        cluster: info.name.clone(),
        message: e.to_string(),
    })
}

/// What a recognised exec entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTokenRequest {
    /// The cluster name (`--cluster-name` / `-i`).
    pub cluster_name: String,
    /// `--region`, else `AWS_REGION` / `AWS_DEFAULT_REGION` from the exec env.
    pub region: Option<String>,
    /// `--role-arn` / `-r` / `--role`.
    pub role_arn: Option<String>,
    /// `--profile` or `AWS_PROFILE` from the exec env; plumb's own credentials are used
    /// regardless, so a caller may want to warn when this is set.
    pub profile: Option<String>,
}

/// Recognises `aws [--region R] eks get-token --cluster-name X [--region R] [--role-arn A]`,
/// `aws-iam-authenticator token -i X [-r A] [--region R]` and `plumb eks token --cluster-name X
/// [--region R] [--role-arn A]` (the command may be a path). Returns `None` for anything else
/// (including `aws eks get-token --cluster-id`, the Outposts form).
pub fn recognise_exec(exec: &kube::config::ExecConfig) -> Option<ExecTokenRequest> {
    let command = exec.command.as_deref()?;
    let base = Path::new(command).file_name()?.to_str()?;
    let args = exec.args.clone().unwrap_or_default();
    let mut req = match base {
        "aws" => parse_args(
            &args,
            &["eks", "get-token"],
            &["--cluster-name"],
            &["--role-arn"],
        )?,
        "aws-iam-authenticator" => parse_args(
            &args,
            &["token"],
            &["-i", "--cluster-id"],
            &["-r", "--role"],
        )?,
        "plumb" => parse_args(
            &args,
            &["eks", "token"],
            &["--cluster-name"],
            &["--role-arn"],
        )?,
        _ => return None,
    };
    for vars in exec.env.iter().flatten() {
        let (Some(name), Some(value)) = (vars.get("name"), vars.get("value")) else {
            continue;
        };
        match name.as_str() {
            "AWS_REGION" => req.region = req.region.or(Some(value.clone())),
            "AWS_DEFAULT_REGION" if req.region.is_none() => req.region = Some(value.clone()),
            "AWS_PROFILE" => req.profile = req.profile.or(Some(value.clone())),
            _ => {}
        }
    }
    Some(req)
}

/// Parses `args`: the positional words must be exactly `verbs`; flags are `--f v` or `--f=v`.
fn parse_args(
    args: &[String],
    verbs: &[&str],
    cluster_flags: &[&str],
    role_flags: &[&str],
) -> Option<ExecTokenRequest> {
    let mut positional = Vec::new();
    let (mut cluster, mut region, mut role, mut profile) = (None, None, None, None);
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        if !flag.starts_with('-') {
            positional.push(arg);
            i += 1;
            continue;
        }
        // Boolean flags of the AWS CLI and the authenticator take no value.
        let boolean = matches!(
            flag,
            "--debug"
                | "--no-verify-ssl"
                | "--no-paginate"
                | "--no-sign-request"
                | "--forward-session-name"
        );
        let value = if boolean {
            None
        } else if inline.is_some() {
            inline
        } else {
            i += 1;
            Some(args.get(i)?.clone())
        };
        if cluster_flags.contains(&flag) {
            cluster = value;
        } else if role_flags.contains(&flag) {
            role = value;
        } else if flag == "--region" {
            region = value;
        } else if flag == "--profile" {
            profile = value;
        } else if flag == "--cluster-id" || flag == "-i" {
            // `aws eks get-token --cluster-id` (Outposts) is not served by plumb.
            return None;
        }
        i += 1;
    }
    if positional != verbs {
        return None;
    }
    let cluster_name = cluster.filter(|c| !c.is_empty())?;
    Some(ExecTokenRequest {
        cluster_name,
        region,
        role_arn: role,
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterArn;
    use std::collections::HashMap;

    fn exec(command: &str, args: &[&str], env: &[(&str, &str)]) -> kube::config::ExecConfig {
        let env: Vec<HashMap<String, String>> = env
            .iter()
            .map(|(n, v)| {
                HashMap::from([
                    ("name".to_string(), n.to_string()),
                    ("value".to_string(), v.to_string()),
                ])
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": EXEC_CREDENTIAL_API_VERSION,
            "command": command,
            "args": args,
            "env": if env.is_empty() { serde_json::Value::Null } else { serde_json::to_value(env).unwrap() },
        }))
        .unwrap()
    }

    #[test]
    fn recognises_token_commands() {
        let r = recognise_exec(&exec(
            "aws",
            &[
                "--region",
                "eu-west-1",
                "eks",
                "get-token",
                "--cluster-name",
                "c1",
                "--output",
                "json",
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(r.cluster_name, "c1");
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.role_arn, None);

        let r = recognise_exec(&exec(
            "/usr/local/bin/aws",
            &[
                "eks",
                "get-token",
                "--cluster-name=c2",
                "--role-arn",
                "arn:aws:iam::1:role/x",
            ],
            &[("AWS_PROFILE", "dev"), ("AWS_DEFAULT_REGION", "us-east-2")],
        ))
        .unwrap();
        assert_eq!(r.cluster_name, "c2");
        assert_eq!(r.role_arn.as_deref(), Some("arn:aws:iam::1:role/x"));
        assert_eq!(r.region.as_deref(), Some("us-east-2"));
        assert_eq!(r.profile.as_deref(), Some("dev"));

        let r = recognise_exec(&exec(
            "aws-iam-authenticator",
            &["token", "-i", "c3", "-r", "arn:r"],
            &[],
        ))
        .unwrap();
        assert_eq!(
            (r.cluster_name.as_str(), r.role_arn.as_deref()),
            ("c3", Some("arn:r"))
        );

        let r = recognise_exec(&exec(
            "plumb",
            &[
                "eks",
                "token",
                "--cluster-name",
                "c4",
                "--region",
                "ap-south-1",
            ],
            &[],
        ))
        .unwrap();
        assert_eq!(
            (r.cluster_name.as_str(), r.region.as_deref()),
            ("c4", Some("ap-south-1"))
        );
    }

    #[test]
    fn rejects_other_commands() {
        for (cmd, args) in [
            (
                "aws",
                vec!["eks", "describe-cluster", "--cluster-name", "c"],
            ),
            ("aws", vec!["eks", "get-token"]),
            ("aws", vec!["eks", "get-token", "--cluster-id", "abc"]),
            ("aws", vec!["eks", "get-token", "--cluster-name"]),
            ("gke-gcloud-auth-plugin", vec![]),
            ("aws-iam-authenticator", vec!["verify", "-i", "c"]),
        ] {
            assert_eq!(
                recognise_exec(&exec(cmd, &args, &[])),
                None,
                "{cmd} {args:?}"
            );
        }
    }

    #[test]
    fn renders_a_kubeconfig_kube_can_read() {
        let info = ClusterInfo {
            name: "c1".into(),
            arn: "arn:aws:eks:eu-west-1:123456789012:cluster/c1"
                .parse::<ClusterArn>()
                .unwrap(),
            version: "1.33".into(),
            endpoint: "https://abc.eks.amazonaws.com".into(),
            ca_pem: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            oidc_issuer: None,
            vpc_id: None,
            status: "ACTIVE".into(),
        };
        let yaml =
            render_kubeconfig(&info, "plumb", Some("arn:aws:iam::123456789012:role/r")).unwrap();
        let kc: kube::config::Kubeconfig = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(
            kc.current_context.as_deref(),
            Some("arn:aws:eks:eu-west-1:123456789012:cluster/c1")
        );
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.server.as_deref(),
            Some("https://abc.eks.amazonaws.com")
        );
        let exec = kc.auth_infos[0]
            .auth_info
            .as_ref()
            .unwrap()
            .exec
            .as_ref()
            .unwrap();
        let r = recognise_exec(exec).unwrap();
        assert_eq!(r.cluster_name, "c1");
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            r.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/r")
        );
    }
}
