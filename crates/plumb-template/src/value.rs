//! The dynamic value model of the template engine, shaped after the Go types
//! Helm templates see: `map[string]interface{}`, `[]interface{}`, `string`,
//! `float64` (every number read from YAML or JSON), `int`/`int64` (template
//! literals and Sprig arithmetic) and `bool`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::budget;

/// A Go map shared by reference: Sprig's `set`/`unset`/`merge` mutate it in place
/// and every holder sees the change, as in Go. Dropping the last holder frees
/// nested values without recursion (see [`ListRef`]).
#[derive(Clone, Debug, Default)]
pub struct MapRef(pub Rc<RefCell<BTreeMap<String, Value>>>);

/// A Go slice. Templates can nest values without bound (`$d = dict "a" $d`
/// in a loop); dropping such a chain through the compiler's recursive drop
/// glue would overflow the stack, so the last holder hands nested containers
/// to an iterative worklist instead.
#[derive(Clone, Debug, Default)]
pub struct ListRef(pub Rc<Vec<Value>>);

impl std::ops::Deref for MapRef {
    type Target = Rc<RefCell<BTreeMap<String, Value>>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::Deref for ListRef {
    type Target = Rc<Vec<Value>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for ListRef {
    fn drop(&mut self) {
        if let Some(v) = Rc::get_mut(&mut self.0)
            && v.iter().any(Value::is_container)
        {
            drop_iteratively(std::mem::take(v));
        }
    }
}

impl Drop for MapRef {
    fn drop(&mut self) {
        if let Some(m) = Rc::get_mut(&mut self.0) {
            let m = m.get_mut();
            if m.values().any(Value::is_container) {
                drop_iteratively(std::mem::take(m).into_values().collect());
            }
        }
    }
}

thread_local! {
    /// Containers waiting to be dropped while an outer drop is running.
    static PENDING: RefCell<Option<Vec<Value>>> = const { RefCell::new(None) };
}

/// Drops `items` and everything they uniquely hold with a loop instead of
/// recursion: a drop that runs inside it queues its children here.
fn drop_iteratively(items: Vec<Value>) {
    let queued = PENDING.try_with(|p| match p.try_borrow_mut() {
        Ok(mut p) => match p.as_mut() {
            Some(q) => {
                q.extend(items);
                None
            }
            None => {
                *p = Some(Vec::new());
                Some(items)
            }
        },
        Err(_) => Some(items),
    });
    let mut stack = match queued {
        Ok(Some(items)) => items,
        Ok(None) => return,
        // Thread teardown: no worklist; the values are small by then.
        Err(_) => return,
    };
    while let Some(v) = stack.pop() {
        drop(v);
        let _ = PENDING.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut()
                && let Some(q) = p.as_mut()
            {
                stack.append(q);
            }
        });
    }
    let _ = PENDING.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            *p = None;
        }
    });
}

/// Objects with methods (`.Files`, `.Capabilities.APIVersions`, ...).
pub trait Object: fmt::Debug {
    /// Go type name, for `typeOf` and `%T`.
    fn type_name(&self) -> &str;
    /// Field or method access; `args` are the method arguments.
    /// `None` means no such field or method.
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
    /// The `fmt.Stringer` text, when the object has one.
    fn to_text(&self) -> String;
    /// For downcasting to the concrete type.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Go truth (empty maps are false).
    fn truthy(&self) -> bool {
        true
    }
    /// Key/value pairs when the object can be ranged over (Go maps).
    fn range_entries(&self) -> Option<Vec<(Value, Value)>> {
        None
    }
    /// The elements when the object is a Go slice of its own type (Helm's
    /// `chartutil.VersionSet`), for Sprig's list functions and `range`.
    fn as_list(&self) -> Option<Vec<Value>> {
        None
    }
}

/// A template value.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// A nil interface: a missing map key, `nil`, YAML `null`.
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (template literals, `len`, `int`).
    Int(i64),
    /// `int64` (Sprig arithmetic, `int64`).
    I64(i64),
    /// `float64` (numbers from YAML/JSON, `float64`, `mulf`...).
    Float(f64),
    /// `string`.
    Str(Rc<str>),
    /// `[]byte` (`.Files.GetBytes`).
    Bytes(Rc<[u8]>),
    /// `[]interface{}`.
    List(ListRef),
    /// `map[string]interface{}`.
    Map(MapRef),
    /// An object with methods.
    Object(Rc<dyn Object>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }
    /// A list value.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(ListRef(Rc::new(v)))
    }
    /// A map value.
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(MapRef(Rc::new(RefCell::new(m))))
    }
    /// An empty map value.
    pub fn empty_map() -> Value {
        Value::map(BTreeMap::new())
    }

    /// Go's truth: false for nil, zero numbers, empty strings and collections.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) | Value::I64(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            Value::Object(o) => o.truthy(),
        }
    }

    /// Go type name as `%T` prints it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::I64(_) => "int64".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::Bytes(_) => "[]uint8".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::Map(_) => "map[string]interface {}".into(),
            Value::Object(o) => o.type_name().into(),
        }
    }

    /// Go reflect kind name, for `kindOf`/`kindIs`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::I64(_) => "int64",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Bytes(_) | Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Object(_) => "ptr",
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a list or a map (something that nests).
    pub fn is_container(&self) -> bool {
        matches!(self, Value::List(_) | Value::Map(_))
    }

    /// Deep copy (maps are shared by reference otherwise). Stops at the depth
    /// limit (see [`crate::budget`]), leaving nil below it.
    pub fn deep_copy(&self) -> Value {
        self.deep_copy_at(0)
    }

    fn deep_copy_at(&self, d: usize) -> Value {
        match self {
            Value::Map(m) => budget::deeper(d, || {
                if let Err(e) = budget::charge_items(m.borrow().len() as u64 + 8, 64) {
                    budget::record(e);
                    return Value::Nil;
                }
                Value::map(
                    m.borrow()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.deep_copy_at(d + 1)))
                        .collect(),
                )
            })
            .unwrap_or_default(),
            Value::List(l) => budget::deeper(d, || {
                if let Err(e) = budget::charge_items(l.len() as u64 + 1, 32) {
                    budget::record(e);
                    return Value::Nil;
                }
                Value::list(l.iter().map(|v| v.deep_copy_at(d + 1)).collect())
            })
            .unwrap_or_default(),
            other => other.clone(),
        }
    }

    /// Converts to JSON (objects become their string form). Stops at the
    /// depth limit, leaving null below it.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_at(0)
    }

    fn to_json_at(&self, d: usize) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) | Value::I64(i) => J::from(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    J::from(*f as i64)
                } else {
                    serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
                }
            }
            Value::Str(s) => J::String(s.to_string()),
            Value::Bytes(b) => {
                use base64::Engine;
                J::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::List(l) => budget::deeper(d, || {
                J::Array(l.iter().map(|v| v.to_json_at(d + 1)).collect())
            })
            .unwrap_or(J::Null),
            Value::Map(m) => budget::deeper(d, || {
                J::Object(
                    m.borrow()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_json_at(d + 1)))
                        .collect(),
                )
            })
            .unwrap_or(J::Null),
            Value::Object(o) => J::String(o.to_text()),
        }
    }

    /// Converts from JSON the way Go's `encoding/json` does into `interface{}`:
    /// every number becomes `float64`.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            J::String(s) => Value::str(s.as_str()),
            J::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Structural equality as Go's `reflect.DeepEqual` on these types
    /// (false past the depth limit).
    pub fn deep_equal(&self, other: &Value) -> bool {
        self.deep_equal_at(other, 0)
    }

    fn deep_equal_at(&self, other: &Value, d: usize) -> bool {
        match (self, other) {
            (Value::Nil, Value::Nil) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) | (Value::I64(a), Value::I64(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len()
                    && budget::deeper(d, || {
                        a.iter()
                            .zip(b.iter())
                            .all(|(x, y)| x.deep_equal_at(y, d + 1))
                    })
                    .unwrap_or(false)
            }
            (Value::Map(a), Value::Map(b)) => {
                if Rc::ptr_eq(a, b) {
                    return true;
                }
                let (a, b) = (a.borrow(), b.borrow());
                a.len() == b.len()
                    && budget::deeper(d, || {
                        a.iter()
                            .zip(b.iter())
                            .all(|((ka, va), (kb, vb))| ka == kb && va.deep_equal_at(vb, d + 1))
                    })
                    .unwrap_or(false)
            }
            (Value::Object(a), Value::Object(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
