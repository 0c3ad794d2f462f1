//! Sprig's random and crypto functions: `randAlphaNum` & co, `uuidv4`,
//! `htpasswd`, `bcrypt`, `genPrivateKey`, `genCA`, `genSelfSignedCert`,
//! `genSignedCert` (RSA 2048 as Sprig, through rcgen on aws-lc-rs).

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use rand::Rng;

use super::{Func, arg, iarg, sarg, strval, to_i64};
use crate::value::Value;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const NUM: &[u8] = b"0123456789";

/// Operations charged for a key generation or a bcrypt hash (tens of
/// milliseconds each): a loop of them meets the budget, and its deadline is
/// looked at on every one.
const SLOW_COST: u64 = 100_000;

fn rand_from(set: &[u8], n: i64) -> Result<Value, String> {
    if !(0..=1 << 20).contains(&n) {
        return Err(format!("invalid random string length {n}"));
    }
    let mut r = rand::rng();
    let s: String = (0..n)
        .map(|_| set[r.random_range(0..set.len())] as char)
        .collect();
    Ok(Value::str(s))
}

thread_local! {
    /// CAs generated in this thread, so `genSignedCert` can sign with them.
    static CAS: RefCell<HashMap<String, (String, String)>> = RefCell::new(HashMap::new());
}

pub(super) fn register(m: &mut FxHashMap<&'static str, Func>) {
    m.insert("randAlphaNum", |a| rand_from(ALNUM, to_i64(&arg(a, 0))));
    m.insert("randAlpha", |a| rand_from(ALPHA, to_i64(&arg(a, 0))));
    m.insert("randNumeric", |a| rand_from(NUM, to_i64(&arg(a, 0))));
    m.insert("randAscii", |a| {
        let set: Vec<u8> = (32u8..127).collect();
        rand_from(&set, to_i64(&arg(a, 0)))
    });
    m.insert("randBytes", |a| {
        let n = to_i64(&arg(a, 0)).clamp(0, 1 << 20) as usize;
        let mut b = vec![0u8; n];
        rand::rng().fill(&mut b[..]);
        Ok(Value::str(
            base64::engine::general_purpose::STANDARD.encode(b),
        ))
    });
    m.insert("randInt", |a| {
        let lo = to_i64(&arg(a, 0));
        let hi = to_i64(&arg(a, 1));
        if hi <= lo {
            return Err("invalid argument to Intn".into());
        }
        Ok(Value::Int(rand::rng().random_range(lo..hi)))
    });
    m.insert("uuidv4", |_| {
        Ok(Value::str(uuid::Uuid::new_v4().to_string()))
    });
    m.insert("htpasswd", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let user = sarg(a, 0)?;
        let pass = sarg(a, 1)?;
        if user.contains(':') {
            return Ok(Value::str(format!("invalid username: {user}")));
        }
        let h = bcrypt::hash(pass, bcrypt::DEFAULT_COST).map_err(|e| e.to_string())?;
        Ok(Value::str(format!(
            "{user}:{}",
            h.replacen("$2b$", "$2a$", 1)
        )))
    });
    m.insert("bcrypt", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let pass = sarg(a, 0)?;
        let h = bcrypt::hash(pass, bcrypt::DEFAULT_COST).map_err(|e| e.to_string())?;
        Ok(Value::str(h.replacen("$2b$", "$2a$", 1)))
    });
    m.insert("genPrivateKey", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let t = sarg(a, 0)?;
        let pem = match t.as_str() {
            "rsa" => rsa_key()?.1,
            "ecdsa" => {
                let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| e.to_string())?;
                pem_wrap("EC PRIVATE KEY", &pkcs8_inner(&k.serialize_der()))
            }
            "ed25519" => {
                let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                    .map_err(|e| e.to_string())?;
                k.serialize_pem()
            }
            _ => return Ok(Value::str("Unknown type ".to_string() + &t)),
        };
        Ok(Value::str(pem))
    });
    m.insert("genCA", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let cn = sarg(a, 0)?;
        let days = iarg(a, 1)?;
        gen_cert(&cn, &[], &[], days, true, None, None)
    });
    m.insert("genCAWithKey", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let cn = sarg(a, 0)?;
        let days = iarg(a, 1)?;
        let key = sarg(a, 2)?;
        gen_cert(&cn, &[], &[], days, true, None, Some(key))
    });
    m.insert("genSelfSignedCert", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let cn = sarg(a, 0)?;
        let ips = list_strs(&arg(a, 1));
        let dns = list_strs(&arg(a, 2));
        let days = iarg(a, 3)?;
        gen_cert(&cn, &ips, &dns, days, false, None, None)
    });
    m.insert("genSelfSignedCertWithKey", |a| {
        let cn = sarg(a, 0)?;
        let ips = list_strs(&arg(a, 1));
        let dns = list_strs(&arg(a, 2));
        let days = iarg(a, 3)?;
        let key = sarg(a, 4)?;
        gen_cert(&cn, &ips, &dns, days, false, None, Some(key))
    });
    m.insert("genSignedCert", |a| {
        crate::budget::charge_ops(SLOW_COST)?;
        let cn = sarg(a, 0)?;
        let ips = list_strs(&arg(a, 1));
        let dns = list_strs(&arg(a, 2));
        let days = iarg(a, 3)?;
        gen_cert(&cn, &ips, &dns, days, false, Some(arg(a, 4)), None)
    });
    m.insert("genSignedCertWithKey", |a| {
        let cn = sarg(a, 0)?;
        let ips = list_strs(&arg(a, 1));
        let dns = list_strs(&arg(a, 2));
        let days = iarg(a, 3)?;
        let key = sarg(a, 5)?;
        gen_cert(&cn, &ips, &dns, days, false, Some(arg(a, 4)), Some(key))
    });
    m.insert("buildCustomCert", |a| {
        let c = sarg(a, 0)?;
        let k = sarg(a, 1)?;
        let dec = |x: &str, what: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(x.trim().as_bytes())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| format!("unable to decode base64 {what}: {e}"))
        };
        let mut m = BTreeMap::new();
        m.insert("Cert".to_string(), Value::str(dec(&c, "certificate")?));
        m.insert("Key".to_string(), Value::str(dec(&k, "private key")?));
        Ok(Value::map(m))
    });
}

fn list_strs(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().map(strval).collect(),
        Value::Nil => Vec::new(),
        other => vec![strval(other)],
    }
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads a DER length at `i`; returns (length, header bytes consumed).
fn der_len(d: &[u8], i: usize) -> Option<(usize, usize)> {
    let first = *d.get(i)?;
    if first < 0x80 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut l = 0usize;
    for k in 0..n {
        l = (l << 8) | *d.get(i + 1 + k)? as usize;
    }
    Some((l, 1 + n))
}

/// Extracts the inner private key (PKCS#1 / SEC1) from a PKCS#8 document.
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER version, SEQUENCE alg, OCTET STRING key, ... }
    let parse = || -> Option<Vec<u8>> {
        let mut i = 0;
        if der.first()? != &0x30 {
            return None;
        }
        let (_, h) = der_len(der, 1)?;
        i += 1 + h;
        for _ in 0..2 {
            let (l, h) = der_len(der, i + 1)?;
            i += 1 + h + l;
        }
        if der.get(i)? != &0x04 {
            return None;
        }
        let (l, h) = der_len(der, i + 1)?;
        der.get(i + 1 + h..i + 1 + h + l).map(<[u8]>::to_vec)
    };
    parse().unwrap_or_else(|| der.to_vec())
}

/// A fresh RSA 2048 key: (key pair, PKCS#1 PEM).
fn new_rsa_key() -> Result<rcgen::KeyPair, String> {
    rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .map_err(|e| e.to_string())
}

/// RSA-2048 keys made ahead of use. Key generation takes tens of
/// milliseconds and is nearly all of a chart that mints its own certificates
/// (Harbor makes about ten), and a key made a moment earlier is as good as one
/// made now. So once a render generates its first key, a helper thread makes
/// more while the templates go on, up to the number of generator calls left in
/// the chart's source; a chart whose generators sit in branches not taken
/// never starts it.
struct KeyPool {
    /// Finished keys.
    ready: Vec<rcgen::KeyPair>,
    /// Keys the current render may still take (its generator call sites).
    budget: usize,
    /// The helper is making a key.
    in_flight: bool,
    /// A helper thread is running.
    running: bool,
}

static POOL: std::sync::Mutex<KeyPool> = std::sync::Mutex::new(KeyPool {
    ready: Vec::new(),
    budget: 0,
    in_flight: false,
    running: false,
});

/// Most keys one render has made ahead.
const MAX_PREFETCH: usize = 16;

fn pool() -> std::sync::MutexGuard<'static, KeyPool> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Lets the render that starts now make up to `calls` keys ahead.
pub fn arm_prefetch(calls: usize) {
    pool().budget = calls.min(MAX_PREFETCH);
}

/// Stops making keys ahead (the render is over); finished keys are kept.
pub fn stop_prefetch() {
    pool().budget = 0;
}

fn key_helper() {
    loop {
        {
            let mut p = pool();
            if p.ready.len() >= p.budget {
                p.running = false;
                return;
            }
            p.in_flight = true;
        }
        let made = new_rsa_key();
        let mut p = pool();
        p.in_flight = false;
        match made {
            Ok(k) => p.ready.push(k),
            Err(_) => {
                // The generator on the render thread reports the error itself.
                p.running = false;
                return;
            }
        }
    }
}

fn rsa_key() -> Result<(rcgen::KeyPair, String), String> {
    let ahead = {
        let mut p = pool();
        p.budget = p.budget.saturating_sub(1);
        let k = p.ready.pop();
        if k.is_none() && !p.running && p.budget > usize::from(p.in_flight) {
            p.running = std::thread::Builder::new()
                .name("rsa-keys".into())
                .spawn(key_helper)
                .is_ok();
        }
        k
    };
    let k = match ahead {
        Some(k) => k,
        None => new_rsa_key()?,
    };
    let pem = pem_wrap("RSA PRIVATE KEY", &pkcs8_inner(&k.serialize_der()));
    Ok((k, pem))
}

fn key_from_pem(pem: &str) -> Result<(rcgen::KeyPair, String), String> {
    let k = rcgen::KeyPair::from_pem(pem).map_err(|e| format!("error parsing private key: {e}"))?;
    Ok((k, pem.to_string()))
}

fn gen_cert(
    cn: &str,
    ips: &[String],
    dns: &[String],
    days: i64,
    is_ca: bool,
    ca: Option<Value>,
    key_pem: Option<String>,
) -> Result<Value, String> {
    let (key, key_out) = match key_pem {
        Some(p) => key_from_pem(&p)?,
        None => rsa_key()?,
    };
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let secs = chrono::Utc::now().timestamp();
    let mk = |secs: i64| {
        use chrono::Datelike;
        let d = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = mk(secs);
    params.not_after = mk(secs + days.clamp(0, 365 * 1000) * 86400);
    for ip in ips {
        if let Ok(addr) = ip.parse() {
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(addr));
        }
    }
    for d in dns {
        if let Ok(n) = d.as_str().try_into() {
            params.subject_alt_names.push(rcgen::SanType::DnsName(n));
        }
    }
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign);
    } else {
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    let cert_pem = match ca {
        None => params.self_signed(&key).map_err(|e| e.to_string())?.pem(),
        Some(ca) => {
            let Value::Map(cm) = &ca else {
                return Err("genSignedCert: the CA must be the result of genCA".into());
            };
            let ca_cert = cm.borrow().get("Cert").map(strval).unwrap_or_default();
            let found = CAS.with(|c| c.borrow().get(&ca_cert).cloned());
            let (ca_cn, ca_key_pem) = match found {
                Some(x) => x,
                None => {
                    let k = cm.borrow().get("Key").map(strval).unwrap_or_default();
                    ("ca".to_string(), k)
                }
            };
            let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem)
                .or_else(|_| {
                    rcgen::KeyPair::from_pem_and_sign_algo(&ca_key_pem, &rcgen::PKCS_RSA_SHA256)
                })
                .map_err(|e| format!("error parsing CA key: {e}"))?;
            let mut ca_params =
                rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
            ca_params.distinguished_name = rcgen::DistinguishedName::new();
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, ca_cn);
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            params
                .signed_by(&key, &issuer)
                .map_err(|e| e.to_string())?
                .pem()
        }
    };
    if is_ca {
        CAS.with(|c| {
            c.borrow_mut()
                .insert(cert_pem.clone(), (cn.to_string(), key_out.clone()))
        });
    }
    let mut m = BTreeMap::new();
    m.insert("Cert".to_string(), Value::str(cert_pem));
    m.insert("Key".to_string(), Value::str(key_out));
    Ok(Value::map(m))
}
