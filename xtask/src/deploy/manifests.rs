//! One way to deploy against itself: one Deployment whose selector, pods
//! and serving container the Service, HPA, PDB and kustomizations' images
//! agree with. The pod's own checks are in [`super::pod`], those of where
//! its key-value stores live in [`super::stores`].

use serde_json::Value;

use super::kustomize::Build;
use super::pod::{self, Pod};
use super::serve::{self, Resolve, ServeConfig};
use super::stores::{self, ReadToml};
use super::yaml::{Document, strings};

/// Checks a build's resources against one another, and the serving
/// container against the settings `resolve` gives for its arguments
/// (`read_toml` reads the `--config` a ConfigMap holds).
pub(crate) fn check(
    build: &Build,
    resolve: &Resolve<'_>,
    read_toml: &ReadToml<'_>,
    problems: &mut Vec<String>,
) {
    let documents = build.documents.as_slice();
    let deployments = of_kind(documents, "Deployment");
    let [deployment] = deployments.as_slice() else {
        problems.push(format!(
            "expected one Deployment, found {}",
            deployments.len()
        ));
        return;
    };
    check_selector(deployment, problems);
    check_autoscalers(documents, deployment, problems);
    check_disruption_budgets(documents, &deployment.value["spec"]["template"], problems);
    let Some(pod) = serving_pod(deployment, problems) else {
        return;
    };
    check_image(&build.images, &pod, problems);
    pod::check_security_context(&pod, problems);
    pod::check_resources_declared(&pod, problems);

    let context = arguments_context(&pod);
    let settings = match resolve(&pod.args) {
        Ok(settings) => settings,
        Err(refused) => {
            problems.push(format!("{context}: {refused}"));
            return;
        }
    };
    serve::check_settings(&settings, &context, problems);
    pod::check(&pod, &settings, problems);
    stores::check(deployment, &pod, &settings, documents, read_toml, problems);
    check_services(documents, &pod, &settings, problems);
}

/// The `runAsUser` of the Deployment's pod, if it sets one: the
/// Dockerfile's USER must be the same.
pub(crate) fn pod_user(documents: &[Document]) -> Option<u64> {
    documents
        .iter()
        .find(|d| kind(&d.value) == "Deployment")?
        .value
        .pointer("/spec/template/spec/securityContext/runAsUser")
        .and_then(Value::as_u64)
}

fn kind(value: &Value) -> &str {
    value["kind"].as_str().unwrap_or("")
}

fn name(value: &Value) -> &str {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn of_kind<'a>(documents: &'a [Document], wanted: &str) -> Vec<&'a Document> {
    documents
        .iter()
        .filter(|d| kind(&d.value) == wanted)
        .collect()
}

/// Whether every label `selector` asks for is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|wanted| {
        !wanted.is_empty()
            && wanted
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
    })
}

/// The Deployment's selector matches its own pods' labels.
fn check_selector(deployment: &Document, problems: &mut Vec<String>) {
    let spec = &deployment.value["spec"];
    if !selects(
        &spec["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"],
    ) {
        problems.push(format!(
            "{}: spec.selector.matchLabels does not match the pod template's labels",
            deployment.file
        ));
    }
}

/// The container's `wedge` arguments: after a `command` that runs wedge,
/// its own arguments and then `args`; without a `command`, the image's
/// ENTRYPOINT runs (bare `wedge`, as the Dockerfile check requires) with
/// `args`. `None` if the command is another program.
fn wedge_args(container: &Value) -> Option<Vec<&str>> {
    let command = strings(&container["command"]);
    let args = strings(&container["args"]);
    match command.split_first() {
        None => Some(args),
        Some((program, rest)) if *program == "wedge" || program.ends_with("/wedge") => {
            Some(rest.iter().chain(&args).copied().collect())
        }
        Some(_) => None,
    }
}

/// Where a problem with the container's arguments is to be fixed.
fn arguments_context(pod: &Pod) -> String {
    let fields = if pod.container["command"].is_null() {
        "args"
    } else {
        "command and args"
    };
    format!(
        "{}: container {:?} {fields}",
        pod.file,
        pod.container["name"].as_str().unwrap_or("")
    )
}

/// Exactly one container of the Deployment runs `wedge serve`: its
/// `wedge` arguments name `serve`.
fn serving_pod<'a>(deployment: &'a Document, problems: &mut Vec<String>) -> Option<Pod<'a>> {
    let template = &deployment.value["spec"]["template"];
    let mut serving: Vec<(&Value, Vec<&str>)> = template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c, wedge_args(c)?)))
        .filter(|(_, args)| args.contains(&"serve"))
        .collect();
    if serving.len() != 1 {
        problems.push(format!(
            "{}: expected one container whose wedge args name `serve`, found {}",
            deployment.file,
            serving.len()
        ));
        return None;
    }
    let (container, args) = serving.remove(0);
    Some(Pod {
        file: &deployment.file,
        template,
        container,
        args,
    })
}

/// A Service selects the pods, and sends to `--listen`, never to `--admin`.
fn check_services(
    documents: &[Document],
    pod: &Pod,
    settings: &ServeConfig,
    problems: &mut Vec<String>,
) {
    let services: Vec<&Document> = of_kind(documents, "Service")
        .into_iter()
        .filter(|d| selects(&d.value["spec"]["selector"], pod.labels()))
        .collect();
    if services.is_empty() {
        problems.push(format!(
            "no Service selects the Deployment's pods ({})",
            pod.file
        ));
    }
    let ports = pod.ports();
    let listen = Some(u64::from(settings.listen.port()));
    let admin = settings.admin.map(|address| u64::from(address.port()));
    for service in services {
        for port in service.value["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let target = match &port["targetPort"] {
                Value::Null => port["port"].as_u64(),
                target => ports.resolve(target),
            };
            if target.is_some() && target == admin {
                problems.push(format!(
                    "{}: port {} exposes the admin listener",
                    service.file, port["port"]
                ));
            } else if target != listen {
                problems.push(format!(
                    "{}: port {} targets {}, not the container's --listen port ({listen:?})",
                    service.file, port["port"], port["targetPort"]
                ));
            }
        }
    }
}

/// A HorizontalPodAutoscaler, if there is one, scales this Deployment, on
/// CPU; and the Deployment leaves `replicas` to it.
fn check_autoscalers(documents: &[Document], deployment: &Document, problems: &mut Vec<String>) {
    let deployment_name = name(&deployment.value);
    let autoscalers = of_kind(documents, "HorizontalPodAutoscaler");
    if let Some(hpa) = autoscalers.first()
        && let Some(replicas) = deployment.value["spec"].get("replicas")
    {
        problems.push(format!(
            "{}: spec.replicas {replicas} while {} scales it: every apply would reset the \
             autoscaler's count (leave replicas out)",
            deployment.file, hpa.file
        ));
    }
    for hpa in autoscalers {
        let target = &hpa.value["spec"]["scaleTargetRef"];
        if target["kind"].as_str() != Some("Deployment")
            || target["apiVersion"].as_str() != Some("apps/v1")
            || target["name"].as_str() != Some(deployment_name)
        {
            problems.push(format!(
                "{}: scaleTargetRef {target} is not the apps/v1 Deployment {deployment_name:?}",
                hpa.file
            ));
        }
        let on_cpu = hpa.value["spec"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["resource"]["name"].as_str() == Some("cpu"));
        if !on_cpu {
            problems.push(format!("{}: no cpu metric", hpa.file));
        }
    }
}

/// Every PodDisruptionBudget selects the Deployment's pods (`template`).
fn check_disruption_budgets(documents: &[Document], template: &Value, problems: &mut Vec<String>) {
    let labels = &template["metadata"]["labels"];
    for pdb in of_kind(documents, "PodDisruptionBudget") {
        if !selects(&pdb.value["spec"]["selector"]["matchLabels"], labels) {
            problems.push(format!(
                "{}: selector does not match the Deployment's pods",
                pdb.file
            ));
        }
    }
}

/// A kustomization's `images` has an entry for the serving container's
/// image, which is how a deployer names their registry.
fn check_image(images: &[Value], pod: &Pod, problems: &mut Vec<String>) {
    let image = pod.container["image"].as_str().unwrap_or("");
    let image_name = image_name(image);
    let renamed = images
        .iter()
        .any(|i| i["name"].as_str() == Some(image_name));
    if !renamed {
        problems.push(format!(
            "{}: no kustomization's images has an entry for the container image {image_name:?}",
            pod.file
        ));
    }
}

/// An image reference without its tag or digest (`registry:5000/wedge:1`
/// → `registry:5000/wedge`).
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => without_digest,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;
    use crate::deploy::serve::tests::printed;

    /// The serving container's args, which [`printed`] is wedge's reading of.
    const ARGS: [&str; 11] = [
        "serve",
        "/routes",
        "--listen=0.0.0.0:3000",
        "--admin=0.0.0.0:9000",
        "--cache-dir=/cache/wedge",
        "--data-dir=/data/wedge",
        "--log-format=json",
        "--shutdown-delay=5s",
        "--shutdown-grace=10s",
        "--max-instances=4",
        "--max-instance-memory=16MiB",
    ];

    /// The default way to deploy, in small: one pod whose data folder is on
    /// a claim, and the Service. The Deployment comes first.
    pub(crate) fn manifests() -> Vec<Document> {
        let labels = json!({"app": "wedge"});
        let deployment = json!({
            "kind": "Deployment",
            "metadata": {"name": "wedge"},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"prometheus.io/scrape": "true",
                            "prometheus.io/port": "9000", "prometheus.io/path": "/metrics"}
                    },
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "fsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}
                        },
                        "containers": [{
                            "name": "wedge",
                            "image": "wedge:1",
                            "args": ARGS,
                            "ports": [{"name": "http", "containerPort": 3000},
                                {"name": "admin", "containerPort": 9000}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9000}},
                            "resources": {"requests": {"cpu": "1", "memory": "64Mi"},
                                "limits": {"memory": "128Mi"}},
                            "securityContext": {
                                "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}
                            },
                            "volumeMounts": [{"name": "routes", "mountPath": "/routes"},
                                {"name": "cache", "mountPath": "/cache"},
                                {"name": "data", "mountPath": "/data"}]
                        }],
                        "volumes": [
                            {"name": "routes", "configMap": {"name": "r", "items": [
                                {"key": "api.id.wasm", "path": "api/[id].wasm"}]}},
                            {"name": "cache", "emptyDir": {}},
                            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
                        ]
                    }
                }
            }
        });
        let service = json!({"kind": "Service", "spec": {"selector": labels,
            "ports": [{"port": 80, "targetPort": "http"}]}});
        let claim = json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "data"}});
        [
            ("base/deployment.yaml", deployment),
            ("base/service.yaml", service),
            ("base/pvc.yaml", claim),
        ]
        .into_iter()
        .map(|(file, value)| Document {
            file: file.into(),
            value,
        })
        .collect()
    }

    /// Where [`redis`]'s `--config` is.
    const CONFIG: &str = "/etc/wedge/wedge.toml";

    /// The Redis way to deploy, in small: [`manifests`] scaled by an HPA,
    /// with `--config` (in the ConfigMap) and a data folder per pod; the
    /// settings wedge resolves; and the config as `tomllib` reads it. The
    /// Deployment comes first, then the Service, the ConfigMap, the HPA
    /// and the PDB.
    pub(crate) fn redis() -> (Vec<Document>, Value, Value) {
        let mut documents = manifests();
        documents.pop();
        let spec = &mut documents[0].value["spec"];
        let labels = spec["selector"]["matchLabels"].clone();
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("replicas");
        }
        spec["strategy"] = json!({"type": "RollingUpdate"});
        let pod = &mut spec["template"]["spec"];
        pod["containers"][0]["volumeMounts"]
            .as_array_mut()
            .expect("mounts")
            .push(json!({"name": "config", "mountPath": "/etc/wedge", "readOnly": true}));
        pod["volumes"][2] = json!({"name": "data", "emptyDir": {}});
        pod["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "config", "configMap": {"name": "wedge-config"}}));
        let config = json!({"kind": "ConfigMap", "metadata": {"name": "wedge-config"},
            "data": {"wedge.toml": "[key_value.default]\nbackend = \"redis\"\n…"}});
        let hpa = json!({"kind": "HorizontalPodAutoscaler", "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "wedge"},
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]}});
        let pdb = json!({"kind": "PodDisruptionBudget",
            "spec": {"selector": {"matchLabels": labels}}});
        for (file, value) in [
            ("redis/config.yaml", config),
            ("redis/hpa.yaml", hpa),
            ("redis/pdb.yaml", pdb),
        ] {
            documents.push(Document {
                file: file.into(),
                value,
            });
        }
        let mut printed = printed();
        printed["config"] = json!(CONFIG);
        let toml =
            json!({"key_value": {"default": {"backend": "redis", "url": "redis://r:6379/0"}}});
        (documents, printed, toml)
    }

    /// The problems of `documents` as a build, wedge resolving the
    /// container's arguments to `printed` and `tomllib` reading any TOML
    /// as `toml` (a string: as failing with that message).
    pub(crate) fn problems_of(
        documents: Vec<Document>,
        printed: &Value,
        toml: &Value,
    ) -> Vec<String> {
        let build = Build {
            folder: String::new(),
            documents,
            patched: Vec::new(),
            images: vec![json!({"name": "wedge", "newName": "registry.example/wedge"})],
        };
        let resolve = |_: &[&str]| ServeConfig::from_json(printed.clone());
        let read_toml = |_: &str| match toml {
            Value::String(refused) => Err(refused.clone()),
            parsed => Ok(parsed.clone()),
        };
        let mut problems = Vec::new();
        check(&build, &resolve, &read_toml, &mut problems);
        problems
    }

    /// The problems once `change` has been made to [`manifests`] and to
    /// what wedge prints for the container's args.
    fn problems_with(change: impl FnOnce(&mut [Document], &mut Value)) -> Vec<String> {
        let mut documents = manifests();
        let mut printed = printed();
        change(&mut documents, &mut printed);
        problems_of(documents, &printed, &json!({}))
    }

    pub(crate) fn pod_spec(documents: &mut [Document]) -> &mut Value {
        &mut documents[0].value["spec"]["template"]["spec"]
    }

    pub(crate) fn container(documents: &mut [Document]) -> &mut Value {
        &mut pod_spec(documents)["containers"][0]
    }

    #[test]
    fn consistent_manifests_pass() {
        assert_eq!(problems_with(|_, _| {}), Vec::<String>::new());
        let (documents, printed, toml) = redis();
        assert_eq!(
            problems_of(documents, &printed, &toml),
            Vec::<String>::new()
        );
    }

    /// A change that breaks one fact: to the manifests, or to the settings
    /// wedge resolves from the container's arguments.
    type Break = fn(&mut [Document], &mut Value);

    #[test]
    fn each_broken_fact_is_named() {
        let cases: Vec<(&str, Break)> = vec![
            ("expected one Deployment, found 2", |d, _| {
                d[1].value = d[0].value.clone();
            }),
            ("spec.selector.matchLabels", |d, _| {
                d[0].value["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
            }),
            ("expected one container", |d, _| {
                container(d)["command"] = json!(["/bin/sh", "-c"]);
            }),
            ("no containerPort 3001 for --listen", |_, p| {
                p["listen"] = json!("0.0.0.0:3001");
            }),
            ("readinessProbe port", |d, _| {
                container(d)["readinessProbe"]["httpGet"]["port"] = json!("http");
            }),
            ("livenessProbe asks", |d, _| {
                container(d)["livenessProbe"]["httpGet"]["path"] = json!("/readyz");
            }),
            ("prometheus.io/port", |_, p| {
                p["admin"] = json!("0.0.0.0:9001")
            }),
            ("terminationGracePeriodSeconds 15", |d, _| {
                pod_spec(d)["terminationGracePeriodSeconds"] = json!(15);
            }),
            ("--shutdown-delay 5s + --shutdown-grace 1m", |_, p| {
                p["shutdown_grace_ms"] = json!(60_000);
            }),
            ("readOnlyRootFilesystem", |d, _| {
                container(d)["securityContext"]["readOnlyRootFilesystem"] = json!(false);
            }),
            ("runAsUser is 0", |d, _| {
                pod_spec(d)["securityContext"]["runAsUser"] = json!(0);
            }),
            ("no resources.requests.cpu", |d, _| {
                container(d)["resources"]["requests"] = json!({"memory": "64Mi"});
            }),
            ("below --max-instances", |d, _| {
                container(d)["resources"]["limits"]["memory"] = json!("32Mi");
            }),
            ("below --max-instances 9", |_, p| {
                p["max_instances"] = json!(9)
            }),
            ("nothing is mounted at the routes folder /srv", |_, p| {
                p["routes_dir"] = json!("/srv");
            }),
            ("subPath", |d, _| {
                container(d)["volumeMounts"][0]["subPath"] = json!("routes");
            }),
            ("--cache-dir /cache is the mount itself", |_, p| {
                p["cache_dir"] = json!("/cache")
            }),
            ("--cache-dir /var/cache is on no volume", |_, p| {
                p["cache_dir"] = json!("/var/cache")
            }),
            (
                "--cache-dir /cache/wedge is on a read-only mount",
                |d, _| {
                    container(d)["volumeMounts"][1]["readOnly"] = json!(true);
                },
            ),
            ("--data-dir /data is the mount itself", |_, p| {
                p["data_dir"] = json!("/data")
            }),
            ("--data-dir /var/lib/wedge is on no volume", |_, p| {
                p["data_dir"] = json!("/var/lib/wedge")
            }),
            ("--data-dir /data/wedge is on a read-only mount", |d, _| {
                pod_spec(d)["volumes"][2] = json!({"name": "data", "secret": {"secretName": "s"}});
            }),
            ("ConfigMap key", |d, _| {
                pod_spec(d)["volumes"][0]["configMap"]["items"][0]["key"] = json!("api/[id].wasm");
            }),
            ("exposes the admin listener", |d, _| {
                d[1].value["spec"]["ports"][0]["targetPort"] = json!(9000);
            }),
            ("no Service selects", |d, _| {
                d[1].value["spec"]["selector"] = json!({"app": "other"});
            }),
            ("no kustomization's images has an entry", |d, _| {
                container(d)["image"] = json!("registry.example:5000/edge:2");
            }),
            ("--admin 127.0.0.1:9000 is loopback", |_, p| {
                p["admin"] = json!("127.0.0.1:9000");
            }),
            ("runs `wedge dev`", |_, p| p["command"] = json!("dev")),
            ("no absolute --data-dir", |_, p| {
                p["data_dir"] = json!(".wedge/data")
            }),
        ];
        for (expected, change) in cases {
            let problems = problems_with(change);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }

    /// A change to [`redis`]'s manifests, settings or config.
    type RedisBreak = fn(&mut Vec<Document>, &mut Value, &mut Value);

    #[test]
    fn autoscalers_and_disruption_budgets_match_the_deployment() {
        let cases: Vec<(&str, RedisBreak)> = vec![
            ("redis/hpa.yaml: scaleTargetRef", |d, _, _| {
                d[3].value["spec"]["scaleTargetRef"]["name"] = json!("other");
            }),
            ("redis/hpa.yaml: no cpu metric", |d, _, _| {
                d[3].value["spec"]["metrics"] = json!([]);
            }),
            (
                "spec.replicas 2 while redis/hpa.yaml scales it",
                |d, _, _| {
                    d[0].value["spec"]["replicas"] = json!(2);
                },
            ),
            ("redis/pdb.yaml: selector", |d, _, _| {
                d[4].value["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
            }),
        ];
        for (expected, change) in cases {
            let (mut documents, mut printed, mut toml) = redis();
            change(&mut documents, &mut printed, &mut toml);
            let problems = problems_of(documents, &printed, &toml);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn wedge_is_asked_about_the_command_after_wedge_then_the_args() {
        let asked = RefCell::new(Vec::new());
        let resolve = |args: &[&str]| {
            asked.borrow_mut().push(args.join(" "));
            ServeConfig::from_json(printed())
        };
        let read_toml = |_: &str| Ok(Value::Null);
        let mut build = Build {
            folder: String::new(),
            documents: manifests(),
            patched: Vec::new(),
            images: Vec::new(),
        };
        let mut problems = Vec::new();
        check(&build, &resolve, &read_toml, &mut problems);
        container(&mut build.documents)["command"] =
            json!(["/usr/local/bin/wedge", "--log-format=json"]);
        container(&mut build.documents)["args"] = json!(["serve", "/routes"]);
        check(&build, &resolve, &read_toml, &mut problems);
        assert_eq!(
            *asked.borrow(),
            [ARGS.join(" "), "--log-format=json serve /routes".into()]
        );
    }

    #[test]
    fn arguments_wedge_refuses_name_the_container() {
        let mut build = Build {
            folder: String::new(),
            documents: manifests(),
            patched: Vec::new(),
            images: vec![json!({"name": "wedge"})],
        };
        container(&mut build.documents)["command"] = json!(["wedge"]);
        let refuse = |_: &[&str]| Err("error: invalid value 'x' for '--listen <LISTEN>'".into());
        let read_toml = |_: &str| Ok(Value::Null);
        let mut problems = Vec::new();
        check(&build, &refuse, &read_toml, &mut problems);
        assert_eq!(
            problems,
            [
                "base/deployment.yaml: container \"wedge\" command and args: \
                 error: invalid value 'x' for '--listen <LISTEN>'"
            ]
        );
    }

    #[test]
    fn image_names_lose_their_tag_and_digest_but_not_their_port() {
        assert_eq!(image_name("wedge:0.1.0"), "wedge");
        assert_eq!(image_name("registry:5000/wedge"), "registry:5000/wedge");
        assert_eq!(
            image_name("registry:5000/wedge:1@sha256:ab"),
            "registry:5000/wedge"
        );
    }
}
