//! The manifests against one another: one Deployment whose selector, pods
//! and serving container the Service, HPA, PDB and kustomization agree
//! with. The pod's own checks are in [`super::pod`].

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::pod::{self, Pod};
use super::serve::{self, Resolve, ServeConfig};
use super::yaml::{Document, is_kustomization, strings};

/// Checks the manifests' documents against one another, and the serving
/// container against the settings `resolve` gives for its arguments.
pub(crate) fn check(documents: &[Document], resolve: &Resolve<'_>, problems: &mut Vec<String>) {
    check_placement(documents, problems);
    let deployments = of_kind(documents, "Deployment");
    let [deployment] = deployments.as_slice() else {
        problems.push(format!(
            "expected one Deployment, found {}",
            deployments.len()
        ));
        return;
    };
    check_selector(deployment, problems);
    check_autoscalers(documents, name(&deployment.value), problems);
    check_disruption_budgets(documents, &deployment.value["spec"]["template"], problems);
    let pod = serving_pod(deployment, problems);
    check_kustomization(documents, pod.as_ref(), problems);
    let Some(pod) = pod else {
        return;
    };
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

fn is_kustomization_name(file: &str) -> bool {
    is_kustomization(Path::new(file))
}

/// The Kustomization is in `kustomization.yaml`, and only there.
fn check_placement(documents: &[Document], problems: &mut Vec<String>) {
    for document in documents {
        let is_kustomization = kind(&document.value) == "Kustomization";
        if is_kustomization != is_kustomization_name(&document.file) {
            problems.push(format!(
                "{}: a {} document (only kustomization.yaml holds the Kustomization)",
                document.file,
                kind(&document.value)
            ));
        }
    }
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

/// A HorizontalPodAutoscaler scales this Deployment, on CPU.
fn check_autoscalers(documents: &[Document], deployment_name: &str, problems: &mut Vec<String>) {
    let autoscalers = of_kind(documents, "HorizontalPodAutoscaler");
    if autoscalers.is_empty() {
        problems.push("no HorizontalPodAutoscaler".into());
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

/// One Kustomization, listing exactly the folder's other manifests, and
/// (when the serving container is known) renaming its image.
fn check_kustomization(documents: &[Document], pod: Option<&Pod>, problems: &mut Vec<String>) {
    let kustomizations = of_kind(documents, "Kustomization");
    let [kustomization] = kustomizations.as_slice() else {
        problems.push(format!(
            "expected one Kustomization, found {}",
            kustomizations.len()
        ));
        return;
    };
    check_kustomization_resources(documents, kustomization, problems);
    if let Some(pod) = pod {
        check_kustomization_image(kustomization, pod, problems);
    }
}

/// The kustomization's `resources` are the folder's other manifests, no
/// more and no fewer.
fn check_kustomization_resources(
    documents: &[Document],
    kustomization: &Document,
    problems: &mut Vec<String>,
) {
    let files: BTreeSet<&str> = documents.iter().map(|d| d.file.as_str()).collect();
    let listed: BTreeSet<&str> = strings(&kustomization.value["resources"])
        .into_iter()
        .collect();
    for missing in listed.difference(&files) {
        problems.push(format!(
            "{}: resource {missing} is not in the folder",
            kustomization.file
        ));
    }
    for unlisted in files
        .iter()
        .filter(|f| !is_kustomization_name(f) && !listed.contains(*f))
    {
        problems.push(format!(
            "{}: {unlisted} is not among its resources",
            kustomization.file
        ));
    }
}

/// The kustomization's `images` has an entry for the serving container's
/// image, which is how a deployer names their registry.
fn check_kustomization_image(kustomization: &Document, pod: &Pod, problems: &mut Vec<String>) {
    let image = pod.container["image"].as_str().unwrap_or("");
    let image_name = image_name(image);
    let renamed = kustomization.value["images"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["name"].as_str() == Some(image_name));
    if !renamed {
        problems.push(format!(
            "{}: no images entry for the container image {image_name:?}",
            kustomization.file
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
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;
    use crate::deploy::serve::tests::printed;

    /// The serving container's args, which [`printed`] is wedge's reading of.
    const ARGS: [&str; 10] = [
        "serve",
        "/routes",
        "--listen=0.0.0.0:3000",
        "--admin=0.0.0.0:9000",
        "--cache-dir=/cache/wedge",
        "--log-format=json",
        "--shutdown-delay=5s",
        "--shutdown-grace=10s",
        "--max-instances=4",
        "--max-instance-memory=16MiB",
    ];

    fn manifests() -> Vec<Document> {
        let labels = json!({"app": "wedge"});
        let deployment = json!({
            "kind": "Deployment",
            "metadata": {"name": "wedge"},
            "spec": {
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
                                {"name": "cache", "mountPath": "/cache"}]
                        }],
                        "volumes": [
                            {"name": "routes", "configMap": {"name": "r", "items": [
                                {"key": "api.id.wasm", "path": "api/[id].wasm"}]}},
                            {"name": "cache", "emptyDir": {}}
                        ]
                    }
                }
            }
        });
        let service = json!({"kind": "Service", "spec": {"selector": labels,
            "ports": [{"port": 80, "targetPort": "http"}]}});
        let hpa = json!({"kind": "HorizontalPodAutoscaler", "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "wedge"},
            "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]}});
        let pdb = json!({"kind": "PodDisruptionBudget",
            "spec": {"selector": {"matchLabels": labels}}});
        let kustomization = json!({"kind": "Kustomization",
            "resources": ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"],
            "images": [{"name": "wedge"}]});
        [
            ("deployment.yaml", deployment),
            ("service.yaml", service),
            ("hpa.yaml", hpa),
            ("pdb.yaml", pdb),
            ("kustomization.yaml", kustomization),
        ]
        .into_iter()
        .map(|(file, value)| Document {
            file: file.into(),
            value,
        })
        .collect()
    }

    /// The problems once `change` has been made to the manifests and to
    /// what wedge prints for the container's args.
    fn problems_with(change: impl FnOnce(&mut [Document], &mut Value)) -> Vec<String> {
        let mut documents = manifests();
        let mut printed = printed();
        change(&mut documents, &mut printed);
        let resolve = |_: &[&str]| ServeConfig::from_json(printed.clone());
        let mut problems = Vec::new();
        check(&documents, &resolve, &mut problems);
        problems
    }

    fn pod_spec(documents: &mut [Document]) -> &mut Value {
        &mut documents[0].value["spec"]["template"]["spec"]
    }

    fn container(documents: &mut [Document]) -> &mut Value {
        &mut pod_spec(documents)["containers"][0]
    }

    #[test]
    fn consistent_manifests_pass() {
        assert_eq!(problems_with(|_, _| {}), Vec::<String>::new());
    }

    /// A change that breaks one fact: to the manifests, or to the settings
    /// wedge resolves from the container's arguments.
    type Break = fn(&mut [Document], &mut Value);

    #[test]
    fn each_broken_fact_is_named() {
        let cases: Vec<(&str, Break)> = vec![
            ("a Kustomization document", |d, _| {
                d[1].value["kind"] = json!("Kustomization");
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
            ("the mount itself", |_, p| p["cache_dir"] = json!("/cache")),
            ("is on no volume", |_, p| {
                p["cache_dir"] = json!("/var/cache")
            }),
            ("read-only mount", |d, _| {
                container(d)["volumeMounts"][1]["readOnly"] = json!(true);
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
            ("scaleTargetRef", |d, _| {
                d[2].value["spec"]["scaleTargetRef"]["name"] = json!("other");
            }),
            ("pdb.yaml: selector", |d, _| {
                d[3].value["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
            }),
            ("pdb.yaml is not among its resources", |d, _| {
                d[4].value["resources"] = json!(["deployment.yaml", "service.yaml", "hpa.yaml"]);
            }),
            ("no images entry", |d, _| {
                container(d)["image"] = json!("registry.example:5000/edge:2");
            }),
            ("--admin 127.0.0.1:9000 is loopback", |_, p| {
                p["admin"] = json!("127.0.0.1:9000");
            }),
            ("runs `wedge dev`", |_, p| p["command"] = json!("dev")),
        ];
        for (expected, change) in cases {
            let problems = problems_with(change);
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
        let mut documents = manifests();
        let mut problems = Vec::new();
        check(&documents, &resolve, &mut problems);
        container(&mut documents)["command"] = json!(["/usr/local/bin/wedge", "--log-format=json"]);
        container(&mut documents)["args"] = json!(["serve", "/routes"]);
        check(&documents, &resolve, &mut problems);
        assert_eq!(
            *asked.borrow(),
            [ARGS.join(" "), "--log-format=json serve /routes".into()]
        );
    }

    #[test]
    fn arguments_wedge_refuses_name_the_container() {
        let mut documents = manifests();
        container(&mut documents)["command"] = json!(["wedge"]);
        let refuse = |_: &[&str]| Err("error: invalid value 'x' for '--listen <LISTEN>'".into());
        let mut problems = Vec::new();
        check(&documents, &refuse, &mut problems);
        assert_eq!(
            problems,
            ["deployment.yaml: container \"wedge\" command and args: \
                 error: invalid value 'x' for '--listen <LISTEN>'"]
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
