//! Masterminds/semver for Helm: the rules live in the `plumb-semver` crate (shared with git tag
//! selection); this module adds only Sprig's `semver` value, which needs the template [`Value`].

use std::collections::BTreeMap;

pub use plumb_semver::{Version, constraint_matches};

use crate::value::Value;

/// Sprig's `semver`: a map with the parts (fields named as Go's methods).
pub fn semver_value(s: &str) -> Result<Value, String> {
    let v = Version::parse(s).ok_or_else(|| "Invalid Semantic Version".to_string())?;
    let mut m = BTreeMap::new();
    m.insert("Major".to_string(), Value::I64(v.major as i64));
    m.insert("Minor".to_string(), Value::I64(v.minor as i64));
    m.insert("Patch".to_string(), Value::I64(v.patch as i64));
    m.insert(
        "Prerelease".to_string(),
        Value::str(v.prerelease().as_str()),
    );
    m.insert("Metadata".to_string(), Value::str(v.build.as_str()));
    m.insert("Original".to_string(), Value::str(s));
    Ok(Value::map(m))
}
