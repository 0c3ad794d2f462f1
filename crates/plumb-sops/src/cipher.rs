//! sops' value cipher: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM with the
//! nonce size of the `iv` (sops writes 32 bytes), and the MAC check.

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U12, U32};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::meta::Metadata;
use crate::tree::Node;
use crate::{Error, Result};

/// The parts of one encrypted value.
struct Enc {
    data: Vec<u8>,
    iv: Vec<u8>,
    tag: Vec<u8>,
    kind: String,
}

fn parse(value: &str) -> std::result::Result<Enc, String> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|v| v.strip_suffix(']'))
        .ok_or("the value is not in sops' ENC[AES256_GCM,...] format")?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for part in inner.split(',') {
        let (k, v) = part.split_once(':').ok_or("malformed ENC[] value")?;
        match k {
            "data" => data = Some(v),
            "iv" => iv = Some(v),
            "tag" => tag = Some(v),
            "type" => kind = Some(v),
            _ => return Err(format!("unknown ENC[] field '{k}'")),
        }
    }
    let b64 = |name: &str, v: Option<&str>| {
        STANDARD
            .decode(v.ok_or(format!("ENC[] value has no {name}"))?)
            .map_err(|_| format!("ENC[] {name} is not base64"))
    };
    Ok(Enc {
        data: b64("data", data)?,
        iv: b64("iv", iv)?,
        tag: b64("tag", tag)?,
        kind: kind.ok_or("ENC[] value has no type")?.to_string(),
    })
}

fn open(key: &[u8; 32], e: &Enc, aad: &str) -> std::result::Result<Vec<u8>, String> {
    if e.tag.len() != 16 {
        return Err("the authentication tag is not 16 bytes".into());
    }
    let mut sealed = e.data.clone();
    sealed.extend_from_slice(&e.tag);
    let payload = Payload {
        msg: &sealed,
        aad: aad.as_bytes(),
    };
    let key = GenericArray::from_slice(key);
    let failed = |_| "authentication failed (wrong data key or altered value)".to_string();
    match e.iv.len() {
        32 => AesGcm::<Aes256, U32>::new(key)
            .decrypt(GenericArray::from_slice(&e.iv), payload)
            .map_err(failed),
        12 => AesGcm::<Aes256, U12>::new(key)
            .decrypt(GenericArray::from_slice(&e.iv), payload)
            .map_err(failed),
        n => Err(format!("unsupported nonce size {n}")),
    }
}

/// Decrypts one value with `aad` as additional data into the type sops recorded.
pub(crate) fn decrypt_value(
    value: &str,
    key: &[u8; 32],
    aad: &str,
) -> std::result::Result<Node, String> {
    if value.is_empty() {
        return Ok(Node::Str(String::new()));
    }
    let e = parse(value)?;
    let plain = open(key, &e, aad)?;
    let text =
        || String::from_utf8(plain.clone()).map_err(|_| "plaintext is not UTF-8".to_string());
    Ok(match e.kind.as_str() {
        "str" => Node::Str(text()?),
        "bytes" => Node::Bytes(plain),
        "int" => Node::Int(text()?.parse().map_err(|_| "plaintext is not an int")?),
        "float" => Node::Float(text()?.parse().map_err(|_| "plaintext is not a float")?),
        "bool" => Node::Bool(parse_go_bool(&text()?).ok_or("plaintext is not a bool")?),
        "comment" => Node::Str(text()?),
        other => return Err(format!("unknown value type '{other}'")),
    })
}

/// Go's strconv.ParseBool.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Compares `computed` (upper-case hex) with the file's MAC, decrypted with the
/// `lastmodified` time (re-formatted as Go's RFC 3339) as additional data.
pub(crate) fn verify_mac(
    file: &str,
    meta: &Metadata,
    key: &[u8; 32],
    computed: &str,
) -> Result<()> {
    let aad = go_rfc3339(&meta.lastmodified).ok_or_else(|| Error::Metadata {
        file: file.to_string(),
        msg: "lastmodified is not an RFC 3339 time".into(),
    })?;
    let stored = match decrypt_value(&meta.mac, key, &aad) {
        Ok(Node::Str(s)) => s,
        Ok(_) => {
            return Err(Error::MacMismatch {
                file: file.to_string(),
            });
        }
        Err(_) => {
            return Err(Error::MacMismatch {
                file: file.to_string(),
            });
        }
    };
    if stored != computed {
        return Err(Error::MacMismatch {
            file: file.to_string(),
        });
    }
    Ok(())
}

/// `time.Parse(time.RFC3339, s).Format(time.RFC3339)`: fractional seconds dropped, `Z` for UTC.
fn go_rfc3339(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    })
}

/// Encrypts one plaintext value as sops does (random 32-byte nonce, `aad` as additional
/// data) into `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
pub(crate) fn encrypt_value(plain: &[u8], kind: &str, key: &[u8; 32], aad: &str) -> String {
    if plain.is_empty() {
        return String::new();
    }
    let iv: [u8; 32] = rand::random();
    let sealed = AesGcm::<Aes256, U32>::new(GenericArray::from_slice(key))
        .encrypt(
            GenericArray::from_slice(&iv),
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    let (data, tag) = sealed.split_at(sealed.len().saturating_sub(16));
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(data),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42Z").as_deref(),
            Some("2024-11-12T13:33:42Z")
        );
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42.5+02:00").as_deref(),
            Some("2024-11-12T13:33:42+02:00")
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let k = [0u8; 32];
        assert!(decrypt_value("plain", &k, "a:").is_err());
        assert!(
            decrypt_value(
                "ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]",
                &k,
                "a:"
            )
            .is_err()
        );
        assert_eq!(decrypt_value("", &k, "a:"), Ok(Node::Str(String::new())));
    }
}
