//! The `sops` metadata of a document: master keys, MAC, and which values are encrypted.

use regex::Regex;

use crate::cache::Session;
use crate::tree::Node;
use crate::{Error, Result};

/// One age master key.
#[derive(Debug, Clone)]
pub(crate) struct AgeEntry {
    pub recipient: String,
    pub enc: String,
}

/// One OpenPGP master key.
#[derive(Debug, Clone)]
pub(crate) struct PgpEntry {
    pub fp: String,
    pub enc: String,
}

/// The metadata sops records, as far as decryption needs it.
#[derive(Debug)]
pub(crate) struct Metadata {
    pub mac: String,
    pub lastmodified: String,
    pub age: Vec<AgeEntry>,
    pub pgp: Vec<PgpEntry>,
    pub kms: Vec<crate::KmsKey>,
    /// Master-key kinds present that this crate cannot use (e.g. `hc_vault`).
    pub unsupported: Vec<&'static str>,
    pub encrypted_regex: Option<Regex>,
    pub unencrypted_regex: Option<Regex>,
    pub encrypted_suffix: Option<String>,
    pub unencrypted_suffix: Option<String>,
    pub mac_only_encrypted: bool,
}

fn text(n: &Node, key: &str) -> Option<String> {
    n.get(key).and_then(Node::as_text).filter(|s| !s.is_empty())
}

fn list<'a>(n: &'a Node, key: &str) -> &'a [Node] {
    match n.get(key) {
        Some(Node::Seq(items)) => items,
        _ => &[],
    }
}

impl Metadata {
    /// Reads the metadata node of `file`.
    pub(crate) fn from_node(file: &str, n: &Node, session: &Session) -> Result<Metadata> {
        let err = |msg: &str| Error::Metadata {
            file: file.to_string(),
            msg: msg.to_string(),
        };
        let version = text(n, "version").ok_or_else(|| err("no version"))?;
        let major = version.split('.').next().unwrap_or_default();
        if major != "3" {
            return Err(err(&format!(
                "unknown format version '{version}' (sops 3.x is supported)"
            )));
        }
        let re = |key: &str| -> Result<Option<Regex>> {
            text(n, key)
                .map(|r| {
                    session
                        .regex(&r)
                        .map_err(|_| err(&format!("{key} is not a valid regex")))
                })
                .transpose()
        };
        for key in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if text(n, key).is_some() {
                return Err(Error::Unsupported {
                    file: file.to_string(),
                    msg: format!("{key} (comment-based encryption markers)"),
                });
            }
        }
        let mut m = Metadata {
            mac: text(n, "mac").ok_or_else(|| err("no mac"))?,
            lastmodified: text(n, "lastmodified").ok_or_else(|| err("no lastmodified"))?,
            age: Vec::new(),
            pgp: Vec::new(),
            kms: Vec::new(),
            unsupported: Vec::new(),
            encrypted_regex: re("encrypted_regex")?,
            unencrypted_regex: re("unencrypted_regex")?,
            encrypted_suffix: text(n, "encrypted_suffix"),
            unencrypted_suffix: text(n, "unencrypted_suffix"),
            mac_only_encrypted: matches!(n.get("mac_only_encrypted"), Some(Node::Bool(true)))
                || text(n, "mac_only_encrypted").as_deref() == Some("true"),
        };
        let groups = list(n, "key_groups");
        if groups.len() > 1 {
            return Err(Error::Unsupported {
                file: file.to_string(),
                msg: format!("{} key groups (Shamir secret sharing)", groups.len()),
            });
        }
        m.read_keys(n);
        if let Some(g) = groups.first() {
            m.read_keys(g);
        }
        Ok(m)
    }

    fn read_keys(&mut self, n: &Node) {
        for a in list(n, "age") {
            if let (Some(recipient), Some(enc)) = (text(a, "recipient"), text(a, "enc")) {
                self.age.push(AgeEntry { recipient, enc });
            }
        }
        for p in list(n, "pgp") {
            if let Some(enc) = text(p, "enc") {
                let fp = text(p, "fp").unwrap_or_default();
                self.pgp.push(PgpEntry { fp, enc });
            }
        }
        for k in list(n, "kms") {
            if let (Some(arn), Some(enc)) = (text(k, "arn"), text(k, "enc")) {
                let context = match k.get("context") {
                    Some(Node::Map(items)) => items
                        .iter()
                        .filter_map(|(k, v)| v.as_text().map(|v| (k.clone(), v)))
                        .collect(),
                    _ => Vec::new(),
                };
                self.kms.push(crate::KmsKey {
                    arn,
                    role: text(k, "role"),
                    context,
                    aws_profile: text(k, "aws_profile"),
                    enc,
                });
            }
        }
        for (key, name) in [
            ("hc_vault", "HashiCorp Vault transit"),
            ("gcp_kms", "GCP KMS"),
            ("azure_kv", "Azure Key Vault"),
        ] {
            if !list(n, key).is_empty() {
                self.unsupported.push(name);
            }
        }
    }

    /// Whether the leaf at `path` is encrypted, as sops decides it (suffixes, then regexes).
    pub(crate) fn should_encrypt(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            encrypted = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| r.is_match(p));
        }
        encrypted
    }
}
