//! Sprig's `derivePassword` (the Master Password algorithm: scrypt N=32768 r=8 p=2 over
//! the user name, an HMAC-SHA256 seed over the site and counter, then a character
//! template), and `encryptAES` / `decryptAES` (AES-256-CBC, the password's bytes cut or
//! zero-padded to a 32-byte key, PKCS#7 padding, a random IV first, standard base64).
//! Outputs match Sprig v3 byte for byte, including its failure messages.

use aes::Aes256;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use rustc_hash::FxHashMap;
use sha2::Sha256;

use super::{Func, sarg, want};
use crate::value::Value;

/// The scope the Master Password algorithm salts with.
const SEED: &[u8] = b"com.lyndir.masterpassword";

/// Operations charged for one scrypt derivation (32 MiB, tens of milliseconds).
const SCRYPT_COST: u64 = 100_000;

const BLOCK: usize = 16;

pub(super) fn register(m: &mut FxHashMap<&'static str, Func>) {
    m.insert("derivePassword", |a| {
        want(a, 5, "derivePassword")?;
        let counter = counter_arg(&a[0])?;
        let (kind, password) = (sarg(a, 1)?, sarg(a, 2)?);
        let (user, site) = (sarg(a, 3)?, sarg(a, 4)?);
        crate::budget::charge_ops(SCRYPT_COST)?;
        derive_password(counter, &kind, &password, &user, &site).map(Value::str)
    });
    m.insert("encryptAES", |a| {
        want(a, 2, "encryptAES")?;
        let (password, plain) = (sarg(a, 0)?, sarg(a, 1)?);
        crate::budget::charge_bytes(plain.len() as u64 * 2 + 64)?;
        let mut iv = [0u8; BLOCK];
        rand::rng().fill(&mut iv[..]);
        Ok(Value::str(encrypt_aes(&password, plain.as_bytes(), iv)))
    });
    m.insert("decryptAES", |a| {
        want(a, 2, "decryptAES")?;
        let (password, data) = (sarg(a, 0)?, sarg(a, 1)?);
        let plain = decrypt_aes(&password, &data)?;
        Ok(Value::str(String::from_utf8_lossy(&plain).into_owned()))
    });
}

/// The counter as Go passes a template number to a `uint32` parameter.
fn counter_arg(v: &Value) -> Result<u32, String> {
    match v {
        Value::Int(n) | Value::I64(n) => {
            u32::try_from(*n).map_err(|_| format!("expected unsigned integer; found {n}"))
        }
        other => Err(format!(
            "wrong type for value; expected uint32; got {}",
            other.type_name()
        )),
    }
}

/// The password templates of each type (Sprig's table).
fn templates(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return None,
    })
}

/// The characters a template letter stands for.
fn class(c: u8) -> &'static [u8] {
    match c {
        b'V' => b"AEIOU",
        b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
        b'v' => b"aeiou",
        b'c' => b"bcdfghjklmnpqrstvwxyz",
        b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
        b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
        b'n' => b"0123456789",
        b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
        _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
    }
}

/// `SEED ‖ len(part) as big-endian u32 ‖ part`.
fn scoped(part: &str) -> Vec<u8> {
    let mut out = SEED.to_vec();
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part.as_bytes());
    out
}

/// The Master Password of `user` for `site`. An unknown type answers Sprig's message as
/// the password (Sprig returns it as a string, not an error).
pub fn derive_password(
    counter: u32,
    kind: &str,
    password: &str,
    user: &str,
    site: &str,
) -> Result<String, String> {
    let Some(temps) = templates(kind) else {
        return Ok(format!("cannot find password template {kind}"));
    };
    let params = scrypt::Params::new(15, 8, 2, 64).map_err(|e| e.to_string())?;
    let mut key = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), &scoped(user), &params, &mut key)
        .map_err(|e| format!("failed to derive password: {e}"))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(&scoped(site));
    mac.update(&counter.to_be_bytes());
    let seed = mac.finalize().into_bytes();
    let temp = temps[usize::from(seed[0]) % temps.len()].as_bytes();
    Ok(temp
        .iter()
        .zip(seed.iter().skip(1))
        .map(|(&t, &s)| {
            let chars = class(t);
            chars[usize::from(s) % chars.len()] as char
        })
        .collect())
}

/// Sprig's key: the password's bytes, cut or zero-padded to 32.
fn cipher_of(password: &str) -> Aes256 {
    let mut key = [0u8; 32];
    let p = password.as_bytes();
    let n = p.len().min(32);
    key[..n].copy_from_slice(&p[..n]);
    Aes256::new(GenericArray::from_slice(&key))
}

/// `base64(iv ‖ AES-256-CBC(pkcs7(plain)))`; empty for an empty plaintext, as Sprig.
pub fn encrypt_aes(password: &str, plain: &[u8], iv: [u8; BLOCK]) -> String {
    if plain.is_empty() {
        return String::new();
    }
    let cipher = cipher_of(password);
    let pad = BLOCK - plain.len() % BLOCK;
    let mut data = plain.to_vec();
    data.resize(plain.len() + pad, pad as u8);
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in data.chunks(BLOCK) {
        let mut block = [0u8; BLOCK];
        for (b, (c, p)) in block.iter_mut().zip(chunk.iter().zip(prev.iter())) {
            *b = c ^ p;
        }
        cipher.encrypt_block(GenericArray::from_mut_slice(&mut block));
        out.extend_from_slice(&block);
        prev = block;
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// The inverse of [`encrypt_aes`]. The padding is cut by its last byte without further
/// checks, as Sprig does; inputs Go would panic on fail with Go's runtime messages.
pub fn decrypt_aes(password: &str, data: &str) -> Result<Vec<u8>, String> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let crypt = go_base64(data)?;
    if crypt.len() < BLOCK {
        // Go's decode buffer holds 3 bytes per 4 characters.
        let capacity = data.len() / 4 * 3;
        return Err(format!(
            "runtime error: slice bounds out of range [:{BLOCK}] with capacity {capacity}"
        ));
    }
    let (iv, body) = crypt.split_at(BLOCK);
    if body.len() % BLOCK != 0 {
        return Err("crypto/cipher: input not full blocks".into());
    }
    let cipher = cipher_of(password);
    let mut out = Vec::with_capacity(body.len());
    let mut prev: &[u8] = iv;
    for chunk in body.chunks(BLOCK) {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        cipher.decrypt_block(GenericArray::from_mut_slice(&mut block));
        out.extend(block.iter().zip(prev.iter()).map(|(b, p)| b ^ p));
        prev = chunk;
    }
    let Some(&last) = out.last() else {
        return Err("runtime error: index out of range [-1]".into());
    };
    let keep = out.len() as i64 - i64::from(last);
    if keep < 0 {
        return Err(format!(
            "runtime error: slice bounds out of range [:{keep}]"
        ));
    }
    out.truncate(keep as usize);
    Ok(out)
}

/// Go's `base64.StdEncoding.DecodeString` (padded, no whitespace but CR/LF skipped),
/// with its message naming the first bad byte.
fn go_base64(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|e| {
            let at = match e {
                base64::DecodeError::InvalidByte(i, _) => i,
                base64::DecodeError::InvalidLength(i) => i,
                base64::DecodeError::InvalidLastSymbol(i, _) => i,
                base64::DecodeError::InvalidPadding => clean.len(),
            };
            format!("illegal base64 data at input byte {at}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of `helm template` (Helm v3.17.3, Sprig v3.3.0).
    #[test]
    fn derive_password_matches_helm() {
        let cases = [
            (
                1,
                "long",
                "password",
                "user",
                "example.com",
                "ZedaFaxcZaso9*",
            ),
            (
                1,
                "maximum",
                "password",
                "user",
                "example.com",
                "pf4zS1LjCg&LjhsZ7T2~",
            ),
            (3, "medium", "secret", "bob", "plumb.dev", "PumSiw4,"),
            (1, "short", "pw", "ünïcode", "site", "Xag0"),
            (7, "basic", "master", "", "", "iqh11vWk"),
            (4294967295, "pin", "x", "y", "z", "0982"),
            (
                1,
                "name",
                "x",
                "y",
                "z",
                "cannot find password template name",
            ),
        ];
        for (counter, kind, pw, user, site, want) in cases {
            let got = derive_password(counter, kind, pw, user, site).unwrap();
            assert_eq!(got, want, "{kind} {pw} {user} {site}");
        }
    }

    #[test]
    fn derive_password_counter_must_be_unsigned() {
        assert_eq!(
            counter_arg(&Value::Int(-1)).unwrap_err(),
            "expected unsigned integer; found -1"
        );
        assert!(counter_arg(&Value::str("1")).is_err());
        assert_eq!(counter_arg(&Value::Int(7)).unwrap(), 7);
    }

    /// `encryptAES "k" "hello"` from helm; its IV is its first 16 bytes, so encrypting
    /// again with that IV gives the same text, and decrypting gives the plaintext back.
    #[test]
    fn aes_matches_helm() {
        let helm = "fUbusZmyzaXM90F4a3ukKiJNDFcaHZlLfZM/6UTljew=";
        let raw = base64::engine::general_purpose::STANDARD
            .decode(helm)
            .unwrap();
        let iv: [u8; BLOCK] = raw[..BLOCK].try_into().unwrap();
        assert_eq!(encrypt_aes("k", b"hello", iv), helm);
        assert_eq!(decrypt_aes("k", helm).unwrap(), b"hello");
        // A key longer than 32 bytes is cut; a full block of plaintext gets a padding block.
        let long = "a-password-that-is-longer-than-thirty-two-bytes";
        let enc = encrypt_aes(long, b"sixteen byte str", [7; BLOCK]);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&enc)
                .unwrap()
                .len(),
            48
        );
        assert_eq!(decrypt_aes(&long[..32], &enc).unwrap(), b"sixteen byte str");
        assert_eq!(encrypt_aes("k", b"", iv), "");
        assert!(decrypt_aes("k", "").unwrap().is_empty());
    }

    /// Inputs Go panics on: helm reports the runtime error as the call's error.
    #[test]
    fn decrypt_aes_errors_match_helm() {
        let helm_msg = |data: &str| decrypt_aes("k", data).unwrap_err();
        assert_eq!(
            helm_msg("not base64!"),
            "illegal base64 data at input byte 3"
        );
        assert_eq!(
            helm_msg("aGVsbG8="),
            "runtime error: slice bounds out of range [:16] with capacity 6"
        );
        assert_eq!(
            helm_msg("AAAAAAAAAAAAAAAAAAAAAA=="),
            "runtime error: index out of range [-1]"
        );
        assert_eq!(
            helm_msg("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            "runtime error: slice bounds out of range [:-19]"
        );
        assert_eq!(
            decrypt_aes("kk", "fUbusZmyzaXM90F4a3ukKiJNDFcaHZlLfZM/6UTljew=").unwrap_err(),
            "runtime error: slice bounds out of range [:-2]"
        );
    }
}
