//! Where the key-value stores live, and so how many pods may run. Wedge
//! opens its data folder (`--data-dir`) at every start-up, refuses one that
//! another server has open, and keeps there every store that no
//! `[key_value.NAME]` table of `--config` puts on Redis: embedded stores
//! are one pod's own. So:
//!
//! - a Deployment that may run more than one pod (its `replicas`, or an
//!   HPA's `maxReplicas`) passes `--config` from a ConfigMap or Secret
//!   among the manifests whose `[key_value.default]`, and every other
//!   store's table, says `backend = "redis"` (which other stores the routes
//!   grant is their sidecars' to say, which the manifests do not hold);
//! - a data folder on a PersistentVolumeClaim, the same folder for every
//!   pod, is for one pod, replaced with `strategy: Recreate` (a rolling
//!   update starts the new pod while the old one holds the folder), in a
//!   pod whose `fsGroup` lets the non-root user write a new volume.

use serde_json::Value;

use super::pod::{Pod, mount_path};
use super::serve::ServeConfig;
use super::yaml::Document;

/// TOML text as JSON, or why it is not TOML: Python's `tomllib` in
/// [`super::check`], a fixed value in the tests.
pub(crate) type ReadToml<'a> = dyn Fn(&str) -> Result<Value, String> + 'a;

/// The most pods the Deployment runs at once, and what says so.
struct MostPods {
    count: u64,
    because: String,
}

/// Checks the Deployment (`deployment`, whose pod is `pod`) against where
/// its settings put the key-value stores.
pub(crate) fn check(
    deployment: &Document,
    pod: &Pod,
    settings: &ServeConfig,
    documents: &[Document],
    read_toml: &ReadToml<'_>,
    problems: &mut Vec<String>,
) {
    let pods = most_pods(deployment, documents);
    if pods.count > 1
        && let Err(why) = shared_stores(pod, settings, documents, read_toml)
    {
        problems.push(format!(
            "{}: up to {} pods ({}), but {why}",
            pod.file, pods.count, pods.because
        ));
    }
    check_claim(deployment, pod, settings, &pods, problems);
}

/// The Deployment's `replicas` (1 when unset), or the largest
/// `maxReplicas` of an HPA that scales it.
fn most_pods(deployment: &Document, documents: &[Document]) -> MostPods {
    let replicas = deployment.value["spec"]["replicas"].as_u64();
    let mut most = MostPods {
        count: replicas.unwrap_or(1),
        because: match replicas {
            Some(replicas) => format!("spec.replicas {replicas}"),
            None => "spec.replicas unset".into(),
        },
    };
    let name = &deployment.value["metadata"]["name"];
    for hpa in documents {
        let spec = &hpa.value["spec"];
        if hpa.value["kind"] != "HorizontalPodAutoscaler"
            || spec["scaleTargetRef"]["kind"] != "Deployment"
            || spec["scaleTargetRef"]["name"] != *name
        {
            continue;
        }
        if let Some(max) = spec["maxReplicas"].as_u64()
            && max > most.count
        {
            most = MostPods {
                count: max,
                because: format!("{} maxReplicas {max}", hpa.file),
            };
        }
    }
    most
}

/// Whether `--config` puts the default store, and every store it names, on
/// Redis; if not, why not.
fn shared_stores(
    pod: &Pod,
    settings: &ServeConfig,
    documents: &[Document],
    read_toml: &ReadToml<'_>,
) -> Result<(), String> {
    const EMBEDDED: &str = "each pod would have embedded key-value stores of its own";
    let Some(config) = settings.config.as_deref() else {
        return Err(format!(
            "no --config puts the stores on Redis: {EMBEDDED} (run one pod, or pass --config \
             with [key_value.default] backend = \"redis\")"
        ));
    };
    let (source, text) = config_text(pod, config, documents)?;
    let parsed = read_toml(text).map_err(|e| format!("{source} is not TOML: {e}"))?;
    let stores = &parsed["key_value"];
    if stores["default"]["backend"] != "redis" {
        return Err(format!(
            "{source} has no [key_value.default] with backend = \"redis\": {EMBEDDED}"
        ));
    }
    for (name, store) in stores.as_object().into_iter().flatten() {
        if store["backend"] != "redis" {
            return Err(format!(
                "{source}'s [key_value.{name}] is not on Redis: {EMBEDDED}"
            ));
        }
    }
    Ok(())
}

/// The `--config` file's text, from the ConfigMap or Secret among the
/// manifests that its mount shows, and where it was found.
fn config_text<'a>(
    pod: &Pod,
    config: &str,
    documents: &'a [Document],
) -> Result<(String, &'a str), String> {
    let unreadable =
        |why: &str| format!("--config {config} {why}, so its stores cannot be checked");
    let Some((mount, Some(volume))) = pod.mount_of(config) else {
        return Err(unreadable("is on no volume of the pod"));
    };
    let Some(relative) = config
        .strip_prefix(mount_path(mount).as_str())
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(unreadable("is not a file in its mount"));
    };
    let key = match volume["configMap"]["items"]
        .as_array()
        .or(volume["secret"]["items"].as_array())
    {
        Some(items) => items
            .iter()
            .find(|item| item["path"] == relative)
            .and_then(|item| item["key"].as_str())
            .ok_or_else(|| unreadable("is not among its volume's items"))?,
        None => relative,
    };
    let (kind, name, fields) = match (
        volume["configMap"]["name"].as_str(),
        volume["secret"]["secretName"].as_str(),
    ) {
        (Some(name), _) => ("ConfigMap", name, ["data", "data"]),
        (None, Some(name)) => ("Secret", name, ["stringData", "data"]),
        (None, None) => return Err(unreadable("is on neither a ConfigMap nor a Secret")),
    };
    let Some(holder) = documents
        .iter()
        .find(|d| d.value["kind"] == kind && d.value["metadata"]["name"] == name)
    else {
        return Err(unreadable(&format!(
            "is in the {kind} {name:?}, which is not among the manifests"
        )));
    };
    let source = format!("{}'s {key}", holder.file);
    match holder.value[fields[0]][key].as_str() {
        Some(text) => Ok((source, text)),
        None if !holder.value[fields[1]][key].is_null() => Err(unreadable(&format!(
            "is in {source}, base64 (xtask reads a Secret's stringData)"
        ))),
        None => Err(unreadable(&format!(
            "is in {}, which has no key {key}",
            holder.file
        ))),
    }
}

/// A data folder on a PersistentVolumeClaim: one pod, replaced with
/// `Recreate`, with an `fsGroup`.
fn check_claim(
    deployment: &Document,
    pod: &Pod,
    settings: &ServeConfig,
    pods: &MostPods,
    problems: &mut Vec<String>,
) {
    let Some(data) = settings.data() else {
        return; // check_settings says so.
    };
    let Some((_, Some(volume))) = pod.mount_of(data) else {
        return; // pod::check says so.
    };
    let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() else {
        return;
    };
    let file = pod.file;
    let on_claim = format!("--data-dir {data} is on the claim {claim:?}");
    if pods.count > 1 {
        problems.push(format!(
            "{file}: {on_claim}, one folder for up to {} pods ({}): wedge refuses a second \
             server on a data folder; give each pod an emptyDir, the stores on Redis",
            pods.count, pods.because
        ));
    }
    let strategy = deployment.value["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate");
    if strategy != "Recreate" {
        problems.push(format!(
            "{file}: {on_claim}, and strategy {strategy} starts the new pod while the old one \
             holds it: use strategy: Recreate"
        ));
    }
    if pod.spec()["securityContext"]["fsGroup"].is_null() {
        problems.push(format!(
            "{file}: {on_claim}, and no securityContext.fsGroup lets the non-root user write \
             a new volume"
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::deploy::manifests::tests::{manifests, pod_spec, problems_of, redis};
    use crate::deploy::serve::tests::printed;

    use super::*;

    /// A change to a way to deploy: its manifests, what wedge prints for
    /// the container's args, and its `--config` as `tomllib` reads it.
    type Change = fn(&mut Vec<Document>, &mut Value, &mut Value);

    /// The problems of the default way to deploy (one pod on a claim) with
    /// `change` made.
    fn default_with(change: Change) -> Vec<String> {
        let (mut documents, mut printed, mut toml) = (manifests(), printed(), json!({}));
        change(&mut documents, &mut printed, &mut toml);
        problems_of(documents, &printed, &toml)
    }

    /// The problems of the Redis way to deploy with `change` made.
    fn redis_with(change: Change) -> Vec<String> {
        let (mut documents, mut printed, mut toml) = redis();
        change(&mut documents, &mut printed, &mut toml);
        problems_of(documents, &printed, &toml)
    }

    fn config_volume(documents: &mut [Document]) -> &mut Value {
        &mut pod_spec(documents)["volumes"][3]
    }

    #[test]
    fn each_way_to_deploy_keeps_its_stores_where_its_pods_share_them() {
        let fine: [(&str, Vec<String>); 4] = [
            ("one pod on a claim", default_with(|_, _, _| {})),
            ("pods sharing Redis", redis_with(|_, _, _| {})),
            (
                "the config in a Secret's stringData",
                redis_with(|d, _, _| {
                    *config_volume(d) = json!({"name": "config", "secret": {"secretName": "s",
                        "items": [{"key": "stores", "path": "wedge.toml"}]}});
                    d[2].value = json!({"kind": "Secret", "metadata": {"name": "s"},
                        "stringData": {"stores": "…"}});
                }),
            ),
            (
                "an autoscaler that never runs a second pod",
                redis_with(|d, p, _| {
                    p["config"] = Value::Null;
                    d[3].value["spec"]["maxReplicas"] = json!(1);
                }),
            ),
        ];
        for (what, problems) in fine {
            assert_eq!(problems, Vec::<String>::new(), "{what}");
        }
    }

    #[test]
    fn each_misplaced_store_is_named() {
        let cases: Vec<(&str, Vec<String>)> = vec![
            (
                "up to 2 pods (spec.replicas 2), but no --config puts the stores on Redis",
                default_with(|d, _, _| d[0].value["spec"]["replicas"] = json!(2)),
            ),
            (
                "on the claim \"data\", one folder for up to 2 pods",
                default_with(|d, _, _| d[0].value["spec"]["replicas"] = json!(2)),
            ),
            (
                "and strategy RollingUpdate starts the new pod",
                default_with(|d, _, _| {
                    d[0].value["spec"]
                        .as_object_mut()
                        .unwrap()
                        .remove("strategy");
                }),
            ),
            (
                "no securityContext.fsGroup",
                default_with(|d, _, _| {
                    pod_spec(d)["securityContext"]
                        .as_object_mut()
                        .unwrap()
                        .remove("fsGroup");
                }),
            ),
            (
                "up to 10 pods (redis/hpa.yaml maxReplicas 10), but no --config",
                redis_with(|_, p, _| p["config"] = Value::Null),
            ),
            (
                "redis/config.yaml's wedge.toml has no [key_value.default] with backend = \"redis\"",
                redis_with(|_, _, t| t["key_value"]["default"]["backend"] = json!("embedded")),
            ),
            (
                "redis/config.yaml's wedge.toml's [key_value.sessions] is not on Redis",
                redis_with(|_, _, t| t["key_value"]["sessions"] = json!({"max_key_size": 64})),
            ),
            (
                "redis/config.yaml's wedge.toml is not TOML: expected '='",
                redis_with(|_, _, t| *t = json!("expected '=' (at line 2)")),
            ),
            (
                "is in the ConfigMap \"wedge-config\", which is not among the manifests",
                redis_with(|d, _, _| {
                    d.remove(2);
                }),
            ),
            (
                "is in redis/config.yaml, which has no key wedge.toml",
                redis_with(|d, _, _| d[2].value["data"] = json!({"config.toml": "…"})),
            ),
            (
                "--config /srv/wedge.toml is on no volume of the pod",
                redis_with(|_, p, _| p["config"] = json!("/srv/wedge.toml")),
            ),
            (
                "is not among its volume's items",
                redis_with(|d, _, _| {
                    config_volume(d)["configMap"]["items"] =
                        json!([{"key": "wedge.toml", "path": "other.toml"}]);
                }),
            ),
            (
                "base64 (xtask reads a Secret's stringData)",
                redis_with(|d, _, _| {
                    *config_volume(d) = json!({"name": "config", "secret": {"secretName": "s"}});
                    d[2].value = json!({"kind": "Secret", "metadata": {"name": "s"},
                        "data": {"wedge.toml": "W2tleV92YWx1ZS5kZWZhdWx0XQo="}});
                }),
            ),
            (
                "is on neither a ConfigMap nor a Secret",
                redis_with(|d, _, _| *config_volume(d) = json!({"name": "config", "emptyDir": {}})),
            ),
            (
                "one folder for up to 10 pods (redis/hpa.yaml maxReplicas 10)",
                redis_with(|d, _, _| {
                    pod_spec(d)["volumes"][2] =
                        json!({"name": "data", "persistentVolumeClaim": {"claimName": "data"}});
                }),
            ),
        ];
        for (expected, problems) in cases {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }
}
