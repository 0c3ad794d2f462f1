//! A small sops-format writer for tests and benchmarks (plumb never encrypts in production):
//! YAML in, a sops 3.9 document out (as JSON, which is YAML), with age recipients or an
//! AWS KMS key whose encrypted data key the caller got from KMS.

use std::io::Write;

use sha2::{Digest, Sha512};

use crate::emit::write_json;
use crate::tree::Node;
use crate::{Error, Result};

/// A master key to record in the metadata.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// An age X25519 recipient (`age1…`): the data key is encrypted to it here.
    Age(String),
    /// An AWS KMS key: `encrypted_key` is KMS's ciphertext of the data key.
    Kms {
        /// Key ARN.
        arn: String,
        /// Role recorded for assumption, if any.
        role: Option<String>,
        /// Encryption context.
        context: Vec<(String, String)>,
        /// The data key as encrypted by KMS.
        encrypted_key: Vec<u8>,
    },
}

/// Encrypts the values of the YAML document `text` whose path matches `encrypted_regex`
/// (all when `None`) with `data_key`, records `recipients` and the MAC. For tests and
/// benchmarks.
pub fn encrypt_yaml(
    file: &str,
    text: &str,
    data_key: &[u8; 32],
    recipients: &[Recipient],
    encrypted_regex: Option<&str>,
) -> Result<String> {
    let perr = |msg: String| Error::Parse {
        file: file.to_string(),
        format: crate::Format::Yaml,
        msg,
    };
    let opts = crate::stores::yaml_options(&crate::Limits::default());
    let mut doc: Node =
        serde_saphyr::from_str_with_options(text, opts).map_err(|e| perr(e.to_string()))?;
    let re = encrypted_regex
        .map(regex::Regex::new)
        .transpose()
        .map_err(|_| perr("bad encrypted_regex".into()))?;
    let mut hash = Sha512::new();
    let mut path = Vec::new();
    walk(&mut doc, &mut path, re.as_ref(), data_key, &mut hash);
    let mac = hex::encode_upper(hash.finalize());
    let lastmodified = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let enc_mac = crate::cipher::encrypt_value(mac.as_bytes(), "str", data_key, &lastmodified);
    let mut age = Vec::new();
    let mut kms = Vec::new();
    for r in recipients {
        match r {
            Recipient::Age(rcpt) => age.push(Node::Map(vec![
                ("recipient".into(), Node::Str(rcpt.clone())),
                ("enc".into(), Node::Str(age_encrypt(file, rcpt, data_key)?)),
            ])),
            Recipient::Kms {
                arn,
                role,
                context,
                encrypted_key,
            } => {
                use base64::Engine;
                let mut m = vec![("arn".to_string(), Node::Str(arn.clone()))];
                if let Some(role) = role {
                    m.push(("role".into(), Node::Str(role.clone())));
                }
                m.push((
                    "context".into(),
                    Node::Map(
                        context
                            .iter()
                            .map(|(k, v)| (k.clone(), Node::Str(v.clone())))
                            .collect(),
                    ),
                ));
                m.push(("created_at".into(), Node::Str(lastmodified.clone())));
                m.push((
                    "enc".into(),
                    Node::Str(base64::engine::general_purpose::STANDARD.encode(encrypted_key)),
                ));
                m.push(("aws_profile".into(), Node::Str(String::new())));
                kms.push(Node::Map(m));
            }
        }
    }
    let mut meta = vec![
        ("kms".to_string(), Node::Seq(kms)),
        ("age".into(), Node::Seq(age)),
        ("lastmodified".into(), Node::Str(lastmodified)),
        ("mac".into(), Node::Str(enc_mac)),
    ];
    if let Some(r) = encrypted_regex {
        meta.push(("encrypted_regex".into(), Node::Str(r.to_string())));
    }
    meta.push(("version".into(), Node::Str("3.9.0".into())));
    if let Node::Map(items) = &mut doc {
        items.push(("sops".into(), Node::Map(meta)));
    }
    let mut out = String::new();
    write_json(&mut out, &doc);
    out.push('\n');
    Ok(out)
}

fn walk(
    n: &mut Node,
    path: &mut Vec<String>,
    re: Option<&regex::Regex>,
    key: &[u8; 32],
    hash: &mut Sha512,
) {
    match n {
        Node::Null => {}
        Node::Map(items) => {
            for (k, v) in items.iter_mut() {
                path.push(k.clone());
                walk(v, path, re, key, hash);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for v in items.iter_mut() {
                walk(v, path, re, key, hash);
            }
        }
        leaf => {
            let (bytes, kind) = match &*leaf {
                Node::Str(s) => (s.as_bytes().to_vec(), "str"),
                Node::Bool(b) => (
                    if *b { "True" } else { "False" }.as_bytes().to_vec(),
                    "bool",
                ),
                Node::Int(i) => (i.to_string().into_bytes(), "int"),
                Node::Uint(u) => (u.to_string().into_bytes(), "int"),
                Node::Float(f) => (format!("{f}").into_bytes(), "float"),
                Node::Bytes(b) => (b.clone(), "bytes"),
                _ => return,
            };
            hash.update(&bytes);
            let encrypted = re.is_none_or(|r| path.iter().any(|p| r.is_match(p)));
            if encrypted {
                let aad = format!("{}:", path.join(":"));
                *leaf = Node::Str(crate::cipher::encrypt_value(&bytes, kind, key, &aad));
            }
        }
    }
}

fn age_encrypt(file: &str, recipient: &str, data_key: &[u8; 32]) -> Result<String> {
    let fail = |msg: &str| Error::DataKey {
        file: file.to_string(),
        msg: msg.to_string(),
    };
    let r: age::x25519::Recipient = recipient
        .parse()
        .map_err(|_| fail("not an age X25519 recipient"))?;
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
        .map_err(|_| fail("age encryption failed"))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|_| fail("age armor failed"))?;
    let mut w = enc
        .wrap_output(armor)
        .map_err(|_| fail("age encryption failed"))?;
    w.write_all(data_key)
        .map_err(|_| fail("age encryption failed"))?;
    w.finish()
        .and_then(|a| a.finish())
        .map_err(|_| fail("age encryption failed"))?;
    String::from_utf8(out).map_err(|_| fail("age armor is not UTF-8"))
}
