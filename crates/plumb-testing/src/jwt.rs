//! JWTs signed in the test: RS256 and ES256 keys generated here, their public JWKs, and
//! compact tokens over any claims (for OIDC issuers and Google-style push tokens).
#![allow(clippy::unwrap_used)] // key generation and signing in a test: fail loudly

use base64::Engine as _;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Value, json};

/// Base64url without padding, as JOSE writes it.
pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key and its public JWK.
pub struct Key {
    /// `RS256` or `ES256`.
    pub alg: &'static str,
    /// The private key.
    pub pkey: PKey<Private>,
    /// The public key as a JWK, with `kid`.
    pub jwk: Value,
}

/// A fresh RSA-2048 key for RS256.
pub fn rsa_key(kid: &str) -> Key {
    let rsa = Rsa::generate(2048).unwrap();
    let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
        "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())});
    Key {
        alg: "RS256",
        pkey: PKey::from_rsa(rsa).unwrap(),
        jwk,
    }
}

/// A fresh P-256 key for ES256.
pub fn ec_key(kid: &str) -> Key {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
    let mut ctx = BigNumContext::new().unwrap();
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let jwk = json!({"kty": "EC", "kid": kid, "crv": "P-256",
        "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap())});
    Key {
        alg: "ES256",
        pkey: PKey::from_ec_key(ec).unwrap(),
        jwk,
    }
}

/// A compact JWT over `claims` signed by `key` (ES256 signatures as raw `r || s`).
pub fn sign(key: &Key, claims: &Value) -> String {
    let kid = key.jwk["kid"].as_str().unwrap();
    let head = b64(json!({"alg": key.alg, "kid": kid, "typ": "JWT"})
        .to_string()
        .as_bytes());
    let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
    let mut s = Signer::new(MessageDigest::sha256(), &key.pkey).unwrap();
    let der = s.sign_oneshot_to_vec(input.as_bytes()).unwrap();
    let sig = if key.alg == "ES256" {
        let sig = openssl::ecdsa::EcdsaSig::from_der(&der).unwrap();
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        raw
    } else {
        der
    };
    format!("{input}.{}", b64(&sig))
}
