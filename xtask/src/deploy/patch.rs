//! Patches as kustomize applies them to one resource: strategic merge
//! patches (the subset of Kubernetes' rules that these manifests' fields
//! need) and JSON patches (RFC 6902, less `move` and `copy`). Which
//! resources a patch applies to is [`super::kustomize`]'s to say.

use serde_json::{Map, Value};

/// The merge key of each list that a strategic merge patch merges item by
/// item (Kubernetes' `patchMergeKey`s of the fields these manifests can
/// patch); a list not named here is replaced whole, as Kubernetes replaces
/// `args` and `command`. `ports` is keyed by `containerPort` in a
/// container, by `port` in a Service.
const MERGE_KEYS: [(&str, &str); 9] = [
    ("containers", "name"),
    ("initContainers", "name"),
    ("ephemeralContainers", "name"),
    ("volumes", "name"),
    ("volumeMounts", "mountPath"),
    ("volumeDevices", "devicePath"),
    ("env", "name"),
    ("imagePullSecrets", "name"),
    ("topologySpreadConstraints", "topologyKey"),
];

/// A strategic merge patch: mappings merge key by key, `null` removes a
/// key, lists named in [`MERGE_KEYS`] merge item by item, anything else is
/// replaced. `field` is the key `target` is under.
pub(crate) fn merge(target: &mut Value, patch: &Value, field: &str) -> Result<(), String> {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if key.starts_with('$') {
                    return Err(format!("xtask does not apply the directive {key}"));
                }
                match (value, target.get_mut(key)) {
                    (Value::Null, _) => {
                        target.remove(key);
                    }
                    (_, Some(existing)) => merge(existing, value, key)?,
                    (_, None) => {
                        target.insert(key.clone(), fresh(value)?);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(items)) if merge_key(field, items).is_some() => {
            let key = merge_key(field, items).unwrap_or_default();
            for item in items {
                let Some(id) = item.get(key) else {
                    return Err(format!("an item of `{field}` has no `{key}`"));
                };
                match target.iter_mut().find(|t| t.get(key) == Some(id)) {
                    Some(existing) => merge(existing, item, "")?,
                    None => target.push(fresh(item)?),
                }
            }
        }
        (target, patch) => *target = fresh(patch)?,
    }
    Ok(())
}

/// The merge key of the list `field`, whose patch items are `items`.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    if field == "ports" {
        let in_container = items.iter().any(|item| item.get("containerPort").is_some());
        return Some(if in_container {
            "containerPort"
        } else {
            "port"
        });
    }
    MERGE_KEYS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, key)| *key)
}

/// A patch's value where the target has none: its `null`s dropped.
fn fresh(value: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::Object(map) => {
            let mut kept = Map::new();
            for (key, value) in map {
                if key.starts_with('$') {
                    return Err(format!("xtask does not apply the directive {key}"));
                }
                if !value.is_null() {
                    kept.insert(key.clone(), fresh(value)?);
                }
            }
            Value::Object(kept)
        }
        Value::Array(items) => Value::Array(items.iter().map(fresh).collect::<Result<_, _>>()?),
        other => other.clone(),
    })
}

/// A JSON patch (RFC 6902): `add`, `remove`, `replace` and `test`.
pub(crate) fn json_patch(target: &mut Value, operations: &[Value]) -> Result<(), String> {
    for operation in operations {
        let op = operation["op"].as_str().unwrap_or("");
        let Some(path) = operation["path"].as_str() else {
            return Err(format!("operation {operation} has no path"));
        };
        let value = &operation["value"];
        let done = match op {
            "test" => {
                if target.pointer(path) == Some(value) {
                    Ok(())
                } else {
                    Err(format!(
                        "{path} is {}, not {value}",
                        shown(target.pointer(path))
                    ))
                }
            }
            "replace" => match target.pointer_mut(path) {
                Some(existing) => {
                    *existing = value.clone();
                    Ok(())
                }
                None => Err(format!("{path} does not exist")),
            },
            "add" => add(target, path, value.clone()),
            "remove" => remove(target, path),
            _ => Err(format!("xtask does not apply {op:?} operations")),
        };
        done.map_err(|why| format!("{op} {path}: {why}"))?;
    }
    Ok(())
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "missing".to_owned(), Value::to_string)
}

/// The parent of the JSON pointer `path`'s target, and its last token.
fn parent<'a>(target: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| "not a JSON pointer".to_owned())?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let parent = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("{parent} does not exist"))?;
    Ok((parent, last))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    match parent(target, path)? {
        (Value::Object(map), key) => {
            map.insert(key, value);
        }
        (Value::Array(items), index) if index == "-" => items.push(value),
        (Value::Array(items), index) => match index.parse::<usize>() {
            Ok(index) if index <= items.len() => items.insert(index, value),
            _ => return Err(format!("{index} is not an index of the list")),
        },
        _ => return Err("its parent is neither a mapping nor a list".into()),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<(), String> {
    let removed = match parent(target, path)? {
        (Value::Object(map), key) => map.remove(&key).is_some(),
        (Value::Array(items), index) => match index.parse::<usize>() {
            Ok(index) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    };
    if removed {
        Ok(())
    } else {
        Err("nothing there".into())
    }
}
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strategic_merge_keys_lists_by_their_merge_key_and_replaces_the_rest() {
        let mut target = json!({"ports": [{"containerPort": 1, "name": "a"}],
            "env": [{"name": "A", "value": "1"}], "args": ["a", "b"]});
        let patch = json!({"ports": [{"containerPort": 1, "name": "b"}, {"containerPort": 2}],
            "env": [{"name": "A", "value": null, "valueFrom": {"x": 1}}], "args": ["c"]});
        merge(&mut target, &patch, "").expect("merges");
        assert_eq!(
            target,
            json!({"ports": [{"containerPort": 1, "name": "b"}, {"containerPort": 2}],
                "env": [{"name": "A", "valueFrom": {"x": 1}}], "args": ["c"]})
        );
        let mut service = json!({"ports": [{"port": 80, "targetPort": "http"}]});
        merge(
            &mut service,
            &json!({"ports": [{"port": 80, "targetPort": 3000}]}),
            "",
        )
        .unwrap();
        assert_eq!(
            service,
            json!({"ports": [{"port": 80, "targetPort": 3000}]})
        );
    }

    #[test]
    fn json_patch_adds_removes_and_replaces_by_pointer() {
        let mut target = json!({"a": [1, 3], "b~/c": {"d": 1}});
        let operations = json!([
            {"op": "add", "path": "/a/1", "value": 2},
            {"op": "add", "path": "/a/-", "value": 4},
            {"op": "replace", "path": "/b~0~1c/d", "value": 2},
            {"op": "add", "path": "/e", "value": true},
            {"op": "remove", "path": "/a/0"},
            {"op": "test", "path": "/a", "value": [2, 3, 4]}
        ]);
        json_patch(&mut target, operations.as_array().unwrap()).expect("applies");
        assert_eq!(target, json!({"a": [2, 3, 4], "b~/c": {"d": 2}, "e": true}));
        let missing = json!([{"op": "remove", "path": "/nope"}]);
        assert!(json_patch(&mut target, missing.as_array().unwrap()).is_err());
    }
}
