//! Token signatures and claims (RS256 and ES256 keys made here), the claim expressions, and
//! Flux's spec rules.

use plumb_api::Receiver;
use plumb_testing::jwt::{Key, b64, ec_key, rsa_key, sign};
use serde_json::{Value, json};

use super::super::jwt::{Jwks, Jwt};
use super::{evaluate, validate_spec};

fn jwks(keys: &[&Key]) -> Jwks {
    serde_json::from_value(json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
        .unwrap()
}

const NOW: i64 = 1_800_000_000;

fn claims() -> Value {
    json!({"iss": "https://issuer.test", "aud": "notification-controller", "sub": "repo:org/app:ref:refs/heads/main",
        "repository_owner": "org", "exp": NOW + 300, "iat": NOW})
}

#[test]
fn rs256_and_es256_signatures_verify_and_tampering_fails() {
    for key in [rsa_key("r1"), ec_key("e1")] {
        let token = sign(&key, &claims());
        let jwt = Jwt::parse(&token).unwrap();
        jwt.verify(&jwks(&[&key])).unwrap();
        jwt.check_claims(&["https://issuer.test"], "notification-controller", NOW)
            .unwrap();
        // Another key with the same kid does not verify it.
        let other = if key.alg == "RS256" {
            rsa_key("r1")
        } else {
            ec_key("e1")
        };
        assert!(jwt.verify(&jwks(&[&other])).is_err());
        // A changed payload breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut c = claims();
        c["repository_owner"] = json!("evil");
        let forged = b64(c.to_string().as_bytes());
        parts[1] = &forged;
        let jwt = Jwt::parse(&parts.join(".")).unwrap();
        let err = jwt.verify(&jwks(&[&key])).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
    }
}

#[test]
fn claims_are_checked() {
    let key = rsa_key("k");
    let check = |c: Value| {
        Jwt::parse(&sign(&key, &c)).unwrap().check_claims(
            &["https://issuer.test"],
            "notification-controller",
            NOW,
        )
    };
    let mut c = claims();
    c["exp"] = json!(NOW - 1);
    assert!(check(c).unwrap_err().contains("expired"));
    let mut c = claims();
    c["aud"] = json!(["a", "notification-controller"]);
    check(c).unwrap();
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert!(check(c).unwrap_err().contains("audience"));
    let mut c = claims();
    c["iss"] = json!("https://other");
    assert!(check(c).unwrap_err().contains("issuer"));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(check(c).unwrap_err().contains("exp"));
    let mut c = claims();
    c["nbf"] = json!(NOW + 3600);
    assert!(check(c).unwrap_err().contains("not valid yet"));
    // Unsupported algorithms and garbage never verify.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert!(Jwt::parse(&none).unwrap().verify(&jwks(&[&key])).is_err());
    for bad in ["", "a.b", "a.b.c.d", "!!.??.**"] {
        assert!(Jwt::parse(bad).is_err(), "{bad}");
    }
}

fn provider(validations: Value, variables: Value) -> plumb_api::receiver::OidcProvider {
    serde_json::from_value(json!({"issuerURL": "https://issuer.test",
        "validations": validations, "variables": variables}))
    .unwrap()
}

#[test]
fn variables_then_validations_over_claims() {
    let p = provider(
        json!([{"expression": "claims.sub.startsWith(vars.prefix)", "message": "wrong repository"},
               {"expression": "claims.repository_owner == 'org'", "message": "wrong owner"}]),
        json!([{"name": "owner", "expression": "claims.repository_owner"},
               {"name": "prefix", "expression": "'repo:' + vars.owner + '/'"}]),
    );
    evaluate(&p, &claims()).unwrap();
    let mut c = claims();
    c["repository_owner"] = json!("evil");
    c["sub"] = json!("repo:other/app");
    let err = evaluate(&p, &c).unwrap_err();
    assert_eq!(
        err,
        "token validation failed: wrong repository; wrong owner"
    );
    // A missing claim is an evaluation error naming the expression.
    let p = provider(
        json!([{"expression": "claims.nope == 1", "message": "m"}]),
        json!([]),
    );
    assert!(evaluate(&p, &claims()).unwrap_err().contains("claims.nope"));
    assert_eq!(p.audience(), "notification-controller");
}

fn receiver(spec: Value) -> Receiver {
    Receiver::new("r", serde_json::from_value(spec).unwrap())
}

#[test]
fn spec_rules_as_flux() {
    let ok_provider = json!({"issuerURL": "https://issuer.test",
        "validations": [{"expression": "claims.sub == 'x'", "message": "m"}]});
    let ok =
        receiver(json!({"type": "generic-oidc", "resources": [], "oidcProviders": [ok_provider]}));
    validate_spec(&ok).unwrap();
    let cases = [
        (
            json!({"type": "generic-oidc", "resources": []}),
            "at least one oidcProvider",
        ),
        (
            json!({"type": "generic", "resources": [], "secretRef": {"name": "s"}, "oidcProviders": [ok_provider]}),
            "only be set when type is generic-oidc",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "secretRef": {"name": "s"}, "oidcProviders": [ok_provider]}),
            "secretRef cannot be set",
        ),
        (
            json!({"type": "github", "resources": []}),
            "secretRef is required",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "oidcProviders": [ok_provider, ok_provider]}),
            "duplicate issuerURL",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "oidcProviders": [
            {"issuerURL": "issuer.test", "validations": [{"expression": "true", "message": "m"}]}]}),
            "must start with http",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "oidcProviders": [
            {"issuerURL": "https://i", "validations": []}]}),
            "at least one validation",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "oidcProviders": [
            {"issuerURL": "https://i", "validations": [{"expression": "claims.(", "message": "m"}]}]}),
            "failed to parse",
        ),
        (
            json!({"type": "generic-oidc", "resources": [], "oidcProviders": [
            {"issuerURL": "https://i", "validations": [{"expression": "res.x", "message": "m"}]}]}),
            "undeclared reference",
        ),
    ];
    for (spec, want) in cases {
        let err = validate_spec(&receiver(spec.clone())).unwrap_err();
        assert!(err.contains(want), "{spec}: {err}");
    }
}
