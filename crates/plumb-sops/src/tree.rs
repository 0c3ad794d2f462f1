//! The ordered document tree and sops' walk over it (decrypt + MAC).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha512};

use crate::cipher;
use crate::meta::Metadata;
use crate::{Error, Result};

/// A document value, keys in document order (the MAC depends on the order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value of `key` in a map.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string of a scalar (as sops' metadata decoder reads it).
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Uint(u) => Some(u.to_string()),
            Node::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// The plaintext bytes sops' `ToBytes` hashes into the MAC; `None` for null.
    fn mac_bytes(&self) -> Option<Vec<u8>> {
        Some(match self {
            Node::Str(s) => s.as_bytes().to_vec(),
            Node::Bytes(b) => b.clone(),
            Node::Int(i) => i.to_string().into_bytes(),
            Node::Uint(u) => u.to_string().into_bytes(),
            // Go's strconv.FormatFloat(f, 'f', -1, 64): shortest, never an exponent.
            Node::Float(f) => format!("{f}").into_bytes(),
            Node::Bool(true) => b"True".to_vec(),
            Node::Bool(false) => b"False".to_vec(),
            Node::Null | Node::Seq(_) | Node::Map(_) => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Uint(v), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Node, E> {
        Ok(Node::Bytes(v.to_vec()))
    }
    fn visit_unit<E>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(x) = a.next_element()? {
            out.push(x);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Node, A::Error> {
        let mut out: Vec<(String, Node)> = Vec::new();
        while let Some((k, v)) = a.next_entry::<Node, Node>()? {
            let key = match k {
                Node::Str(s) => s,
                Node::Null => "null".to_string(),
                other => other
                    .as_text()
                    .ok_or_else(|| de::Error::custom("a map key is not a scalar"))?,
            };
            // Last wins, in the first one's place (as go-yaml decodes into a map).
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => out.push((key, v)),
            }
        }
        Ok(Node::Map(out))
    }
}

/// Which leaves the metadata marks as encrypted, and the walk's state.
struct Walk<'a> {
    file: &'a str,
    meta: &'a Metadata,
    key: &'a [u8; 32],
    hash: Sha512,
    max_depth: usize,
}

/// Decrypts every encrypted leaf of `branches` in place, in sops' walk order, and returns
/// the MAC sops computes over the plaintext (upper-case hex of SHA-512).
pub(crate) fn decrypt_branches(
    file: &str,
    branches: &mut [Node],
    meta: &Metadata,
    key: &[u8; 32],
    max_depth: usize,
) -> Result<String> {
    let mut w = Walk {
        file,
        meta,
        key,
        hash: Sha512::new(),
        max_depth,
    };
    let mut path = Vec::new();
    for b in branches.iter_mut() {
        w.node(b, &mut path)?;
    }
    Ok(hex::encode_upper(w.hash.finalize()))
}

impl Walk<'_> {
    fn node(&mut self, n: &mut Node, path: &mut Vec<String>) -> Result<()> {
        if path.len() > self.max_depth {
            return Err(Error::Budget {
                file: self.file.to_string(),
                msg: format!("document nests deeper than {} levels", self.max_depth),
            });
        }
        match n {
            Node::Null => Ok(()),
            Node::Map(items) => {
                for (k, v) in items.iter_mut() {
                    path.push(k.clone());
                    let r = self.node(v, path);
                    path.pop();
                    r?;
                }
                Ok(())
            }
            Node::Seq(items) => {
                // sops does not put list indexes in the path.
                for v in items.iter_mut() {
                    self.node_in_list(v, path)?;
                }
                Ok(())
            }
            leaf => self.leaf(leaf, path),
        }
    }

    fn node_in_list(&mut self, n: &mut Node, path: &mut Vec<String>) -> Result<()> {
        // A list adds a level of nesting without a path element.
        if path.len() + 1 > self.max_depth {
            return Err(Error::Budget {
                file: self.file.to_string(),
                msg: format!("document nests deeper than {} levels", self.max_depth),
            });
        }
        self.node(n, path)
    }

    fn leaf(&mut self, n: &mut Node, path: &[String]) -> Result<()> {
        let encrypted = self.meta.should_encrypt(path);
        if encrypted {
            let Node::Str(ciphertext) = &*n else {
                return Err(Error::Value {
                    file: self.file.to_string(),
                    path: path.join(":"),
                    msg: "the value is not encrypted although the metadata says it should be"
                        .into(),
                });
            };
            let aad = format!("{}:", path.join(":"));
            *n = cipher::decrypt_value(ciphertext, self.key, &aad).map_err(|msg| Error::Value {
                file: self.file.to_string(),
                path: path.join(":"),
                msg,
            })?;
        }
        if (!self.meta.mac_only_encrypted || encrypted)
            && let Some(b) = n.mac_bytes()
        {
            self.hash.update(&b);
        }
        Ok(())
    }
}
