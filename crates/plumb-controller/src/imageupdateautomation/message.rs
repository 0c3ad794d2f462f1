//! The commit message: `git.commit.messageTemplate` rendered with Flux's template data.
//!
//! Flux 2.9 hands the template a `TemplateData`: `.AutomationObject` (`Name`, `Namespace`),
//! `.Changed` (an `update.ResultV2`: `.FileChanges` maps a file to its objects, the methods
//! `.Objects` (object -> changes) and `.Changes` (every change)) and `.Values`
//! (`messageTemplateValues`). Objects are map keys with fields (`Kind`, `Name`, `Namespace`,
//! `APIVersion`), so they are template objects here, not strings.

use std::collections::BTreeMap;
use std::rc::Rc;

use plumb_image::setters::{Change, Changes, ObjectId};
use plumb_template::{Object, Value};

/// Flux's message when `messageTemplate` is empty.
pub const DEFAULT_MESSAGE: &str = "Update from image update automation";

/// A Go struct: named fields, nothing else.
#[derive(Debug)]
struct GoStruct {
    type_name: &'static str,
    fields: BTreeMap<&'static str, Value>,
    text: String,
}

impl Object for GoStruct {
    fn type_name(&self) -> &str {
        self.type_name
    }
    fn call(&self, name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        self.fields.get(name).cloned().map(Ok)
    }
    fn to_text(&self) -> String {
        self.text.clone()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A Go map with struct keys (`map[ObjectIdentifier][]Change`), ranged in key order.
#[derive(Debug)]
struct StructMap(Vec<(Value, Value)>);

impl Object for StructMap {
    fn type_name(&self) -> &str {
        "map[update.ObjectIdentifier][]update.Change"
    }
    fn call(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }
    fn to_text(&self) -> String {
        format!("map[{} objects]", self.0.len())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn range_entries(&self) -> Option<Vec<(Value, Value)>> {
        Some(self.0.clone())
    }
}

fn object(type_name: &'static str, text: String, fields: Vec<(&'static str, Value)>) -> Value {
    Value::Object(Rc::new(GoStruct {
        type_name,
        fields: fields.into_iter().collect(),
        text,
    }))
}

fn identifier(id: &ObjectId) -> Value {
    let s = |v: &str| Value::str(v);
    object(
        "update.ObjectIdentifier",
        format!("{} {}/{}", id.kind, id.namespace, id.name),
        vec![
            ("APIVersion", s(&id.api_version)),
            ("Kind", s(&id.kind)),
            ("Namespace", s(&id.namespace)),
            ("Name", s(&id.name)),
        ],
    )
}

fn change(c: &Change) -> Value {
    object(
        "update.Change",
        format!("{} -> {}", c.old_value, c.new_value),
        vec![
            ("OldValue", Value::str(c.old_value.as_str())),
            ("NewValue", Value::str(c.new_value.as_str())),
            ("Setter", Value::str(c.setter.as_str())),
        ],
    )
}

fn objects(map: &BTreeMap<ObjectId, Vec<Change>>) -> Value {
    let entries = map
        .iter()
        .map(|(id, changes)| {
            (
                identifier(id),
                Value::list(changes.iter().map(change).collect()),
            )
        })
        .collect();
    Value::Object(Rc::new(StructMap(entries)))
}

/// Flux's `TemplateData` for the automation `namespace/name`.
pub fn template_data(
    namespace: &str,
    name: &str,
    changed: &Changes,
    values: &BTreeMap<String, String>,
) -> Value {
    let files = changed
        .files
        .iter()
        .map(|(file, objs)| (file.clone(), objects(objs)))
        .collect();
    let changed_value = object(
        "update.ResultV2",
        String::new(),
        vec![
            ("FileChanges", Value::map(files)),
            ("Objects", objects(&changed.objects())),
            (
                "Changes",
                Value::list(changed.changes().iter().map(change).collect()),
            ),
        ],
    );
    let automation = object(
        "types.NamespacedName",
        format!("{namespace}/{name}"),
        vec![
            ("Namespace", Value::str(namespace)),
            ("Name", Value::str(name)),
        ],
    );
    let values = values
        .iter()
        .map(|(k, v)| (k.clone(), Value::str(v.as_str())))
        .collect();
    Value::map(BTreeMap::from([
        ("AutomationObject".to_string(), automation),
        ("Changed".to_string(), changed_value),
        ("Values".to_string(), Value::map(values)),
    ]))
}

/// The commit message, or the template error (Flux stalls on a template that fails).
pub fn render(
    template: Option<&str>,
    namespace: &str,
    name: &str,
    changed: &Changes,
    values: &BTreeMap<String, String>,
) -> Result<String, String> {
    let Some(src) = template.filter(|t| !t.trim().is_empty()) else {
        return Ok(DEFAULT_MESSAGE.to_string());
    };
    let data = template_data(namespace, name, changed, values);
    plumb_template::render_str("commit message", src, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes() -> Changes {
        let id = ObjectId {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "podinfo".into(),
        };
        let c = Change {
            old_value: "ghcr.io/podinfo:5.0.0".into(),
            new_value: "ghcr.io/podinfo:5.1.4".into(),
            setter: "flux-system:podinfo".into(),
        };
        let mut out = Changes::default();
        out.files.insert(
            "deploy/podinfo.yaml".into(),
            BTreeMap::from([(id, vec![c])]),
        );
        out
    }

    #[test]
    fn flux_documented_template_renders() {
        let template = r#"Automated image update

Automation name: {{ .AutomationObject }}
Cluster: {{ index .Values "cluster" }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
{{ len .Changed.Changes }} change(s)"#;
        let values = BTreeMap::from([("cluster".to_string(), "prod-eu".to_string())]);
        let msg = render(Some(template), "flux-system", "apps", &changes(), &values).unwrap();
        assert_eq!(
            msg,
            "Automated image update\n\nAutomation name: flux-system/apps\nCluster: prod-eu\n\n\
             Files:\n- deploy/podinfo.yaml\nObjects:\n- Deployment podinfo\n  Changes:\n    \
             - ghcr.io/podinfo:5.0.0 -> ghcr.io/podinfo:5.1.4\n1 change(s)"
        );
    }

    #[test]
    fn empty_template_is_flux_default_and_errors_are_reported() {
        let none = BTreeMap::new();
        assert_eq!(
            render(None, "ns", "a", &changes(), &none).unwrap(),
            DEFAULT_MESSAGE
        );
        let err = render(Some("{{ .Nope.Field }"), "ns", "a", &changes(), &none).unwrap_err();
        assert!(!err.is_empty());
    }
}
