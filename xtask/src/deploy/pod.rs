//! The Deployment's pod and the container in it that runs `wedge serve`:
//! its ports, probes, shutdown, security context, resources and volumes,
//! checked against the settings `wedge` resolved from its arguments. (Where
//! the key-value stores live, and so how many pods may run: [`super::stores`].)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use super::serve::ServeConfig;
use super::under;
use super::units::{flag_duration, parse_quantity};
use super::yaml::strings;

/// Time the kubelet should leave after `--shutdown-delay` and
/// `--shutdown-grace` before its SIGKILL: the process still has to log
/// what it cut and exit.
const MARGIN: Duration = Duration::from_secs(5);

/// Kubernetes' `terminationGracePeriodSeconds` when a pod sets none.
const DEFAULT_TERMINATION_GRACE_SECONDS: u64 = 30;

/// The pod template of the Deployment in `file`, and its serving container.
pub(crate) struct Pod<'a> {
    /// The manifest's file name, which every message starts with.
    pub(crate) file: &'a str,
    /// `spec.template`: the pod's metadata and spec.
    pub(crate) template: &'a Value,
    /// The container that runs `wedge serve`.
    pub(crate) container: &'a Value,
    /// The container's `wedge` arguments (its command's after `wedge`,
    /// then its args).
    pub(crate) args: Vec<&'a str>,
}

impl Pod<'_> {
    pub(crate) fn spec(&self) -> &Value {
        &self.template["spec"]
    }

    /// The pod's labels, which the Service, PDB and selector must match.
    pub(crate) fn labels(&self) -> &Value {
        &self.template["metadata"]["labels"]
    }

    /// The container's `containerPort`s, and those with a name by name.
    pub(crate) fn ports(&self) -> Ports {
        let mut ports = Ports::default();
        for port in self.container["ports"].as_array().into_iter().flatten() {
            if let Some(number) = port["containerPort"].as_u64() {
                ports.declared.insert(number);
                if let Some(name) = port["name"].as_str() {
                    ports.named.insert(name.to_owned(), number);
                }
            }
        }
        ports
    }

    /// The container's mount that holds `path` (the deepest, as the kubelet
    /// stacks them), and the pod volume it names if there is one.
    pub(crate) fn mount_of(&self, path: &str) -> Option<(&Value, Option<&Value>)> {
        let mount = self.container["volumeMounts"]
            .as_array()?
            .iter()
            .filter(|mount| under(path, &mount_path(mount)))
            .max_by_key(|mount| mount_path(mount).len())?;
        let volume = self.spec()["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|volume| volume["name"].is_string() && volume["name"] == mount["name"]);
        Some((mount, volume))
    }
}

pub(crate) fn mount_path(mount: &Value) -> String {
    mount["mountPath"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned()
}

/// A container's ports: a probe's or a Service's port is a number or the
/// name of one of them.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    declared: BTreeSet<u64>,
    named: BTreeMap<String, u64>,
}

impl Ports {
    /// The port number `port` (a number or a name) stands for.
    pub(crate) fn resolve(&self, port: &Value) -> Option<u64> {
        port.as_u64()
            .or_else(|| port.as_str().and_then(|name| self.named.get(name).copied()))
    }
}

/// Every check of the pod that needs the container's settings.
pub(crate) fn check(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    check_listener_ports(pod, settings, problems);
    check_probes(pod, settings, problems);
    check_metrics_annotations(pod, settings, problems);
    check_termination_grace(pod, settings, problems);
    check_memory_limit(pod, settings, problems);
    check_routes_volume(pod, settings, problems);
    if let Some(cache) = settings.cache() {
        check_writable_folder(pod, "--cache-dir", cache, problems);
    }
    if let Some(data) = settings.data() {
        check_writable_folder(pod, "--data-dir", data, problems);
    }
}

/// `--listen`'s and `--admin`'s ports are containerPorts.
fn check_listener_ports(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let ports = pod.ports();
    let listeners = [
        ("--listen", Some(settings.listen)),
        ("--admin", settings.admin),
    ];
    for (flag, address) in listeners {
        if let Some(address) = address
            && !ports.declared.contains(&u64::from(address.port()))
        {
            problems.push(format!(
                "{}: no containerPort {} for {flag}",
                pod.file,
                address.port()
            ));
        }
    }
}

/// The readiness probe asks `/readyz` and the liveness probe `/healthz`,
/// both on the `--admin` port, where wedge answers them.
fn check_probes(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let file = pod.file;
    let ports = pod.ports();
    let admin = settings.admin.map(|address| u64::from(address.port()));
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &pod.container[probe]["httpGet"];
        if get.is_null() {
            problems.push(format!("{file}: no {probe}.httpGet"));
            continue;
        }
        if get["path"].as_str() != Some(path) {
            problems.push(format!("{file}: {probe} asks {}, not {path}", get["path"]));
        }
        let port = ports.resolve(&get["port"]);
        if port.is_none() || port != admin {
            problems.push(format!(
                "{file}: {probe} port {} is not the --admin port ({admin:?})",
                get["port"]
            ));
        }
    }
}

/// Prometheus, when asked to scrape the pod, scrapes `/metrics` on the
/// `--admin` port.
fn check_metrics_annotations(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let file = pod.file;
    let annotations = &pod.template["metadata"]["annotations"];
    if annotations["prometheus.io/scrape"].as_str() != Some("true") {
        return;
    }
    let admin = settings.admin.map(|address| u64::from(address.port()));
    let port = annotations["prometheus.io/port"]
        .as_str()
        .and_then(|port| port.parse::<u64>().ok());
    if port != admin {
        problems.push(format!(
            "{file}: prometheus.io/port {} is not the --admin port ({admin:?})",
            annotations["prometheus.io/port"]
        ));
    }
    if let Some(path) = annotations["prometheus.io/path"].as_str()
        && path != "/metrics"
    {
        problems.push(format!("{file}: prometheus.io/path {path} is not /metrics"));
    }
}

/// On SIGTERM wedge waits `--shutdown-delay`, drains for up to
/// `--shutdown-grace`, then exits: `terminationGracePeriodSeconds` covers
/// both and [`MARGIN`] before the kubelet's SIGKILL.
fn check_termination_grace(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let needed = Duration::from_millis(settings.shutdown_delay_ms)
        + Duration::from_millis(settings.shutdown_grace_ms)
        + MARGIN;
    let period = pod.spec()["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS);
    if Duration::from_secs(period) < needed {
        problems.push(format!(
            "{}: terminationGracePeriodSeconds {period} < --shutdown-delay {} \
             + --shutdown-grace {} + {}s margin",
            pod.file,
            flag_duration(settings.shutdown_delay_ms),
            flag_duration(settings.shutdown_grace_ms),
            MARGIN.as_secs()
        ));
    }
}

/// The container runs as non-root under RuntimeDefault seccomp (its own
/// settings, else the pod's), with a read-only root filesystem, no
/// privilege escalation and every capability dropped.
pub(crate) fn check_security_context(pod: &Pod, problems: &mut Vec<String>) {
    let file = pod.file;
    let pod_security = &pod.spec()["securityContext"];
    let security = &pod.container["securityContext"];
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
}

/// The container requests CPU and memory and limits memory, so that the
/// scheduler and the HPA have numbers to work with.
pub(crate) fn check_resources_declared(pod: &Pod, problems: &mut Vec<String>) {
    let resources = &pod.container["resources"];
    for field in ["/requests/cpu", "/requests/memory", "/limits/memory"] {
        if resources.pointer(field).is_none() {
            problems.push(format!(
                "{}: no resources{}",
                pod.file,
                field.replace('/', ".")
            ));
        }
    }
}

/// The memory limit holds every guest the settings allow at once,
/// `--max-instances` × `--max-instance-memory`, so that wedge's own limits
/// act before the OOM killer (which would cut every request in the pod).
fn check_memory_limit(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let file = pod.file;
    let Some(limit) = pod.container["resources"].pointer("/limits/memory") else {
        return; // check_resources_declared says so.
    };
    let limit_text = match limit {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let Some(limit) = parse_quantity(&limit_text) else {
        problems.push(format!(
            "{file}: cannot read the memory limit {limit_text:?}"
        ));
        return;
    };
    let (instances, memory) = (settings.max_instances, settings.max_instance_memory);
    let guests = instances.saturating_mul(memory);
    if limit < guests {
        problems.push(format!(
            "{file}: memory limit {limit_text} is below --max-instances {instances} \
             × --max-instance-memory {memory} B = {guests} B of guest memory"
        ));
    }
}

/// The routes folder is on a mount of a pod volume, without `subPath`
/// (which the kubelet never updates, so reloads would never happen), and a
/// ConfigMap volume's items are valid.
fn check_routes_volume(pod: &Pod, settings: &ServeConfig, problems: &mut Vec<String>) {
    let file = pod.file;
    let Some(routes) = settings.routes() else {
        return; // check_settings says so.
    };
    let Some((mount, volume)) = pod.mount_of(routes) else {
        problems.push(format!(
            "{file}: nothing is mounted at the routes folder {routes}"
        ));
        return;
    };
    if !mount["subPath"].is_null() || !mount["subPathExpr"].is_null() {
        problems.push(format!(
            "{file}: the routes mount uses subPath, which the kubelet never updates"
        ));
    }
    let Some(volume) = volume else {
        problems.push(format!(
            "{file}: the routes mount names no volume of the pod"
        ));
        return;
    };
    for item in volume["configMap"]["items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        check_configmap_item(file, item, problems);
    }
}

/// A ConfigMap volume item: a key Kubernetes accepts, a path inside the
/// volume.
fn check_configmap_item(file: &str, item: &Value, problems: &mut Vec<String>) {
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

/// The folder of `flag` (`--cache-dir`, `--data-dir`) is on a writable
/// volume (the root filesystem is read-only), in a subfolder of its mount:
/// wedge creates the folder 0700 and refuses one that others can write, as
/// an emptyDir (0777) is.
fn check_writable_folder(pod: &Pod, flag: &str, folder: &str, problems: &mut Vec<String>) {
    let file = pod.file;
    let Some((mount, volume)) = pod.mount_of(folder) else {
        problems.push(format!(
            "{file}: {flag} {folder} is on no volume, and the root filesystem is read-only"
        ));
        return;
    };
    if mount_path(mount) == folder {
        problems.push(format!(
            "{file}: {flag} {folder} is the mount itself: use a subfolder \
             (wedge creates it 0700; an emptyDir is 0777, which wedge refuses)"
        ));
    }
    let read_only = mount["readOnly"] == Value::Bool(true)
        || volume.is_none_or(|volume| {
            ["configMap", "secret", "projected", "downwardAPI"]
                .iter()
                .any(|kind| !volume[*kind].is_null())
        });
    if read_only {
        problems.push(format!(
            "{file}: {flag} {folder} is on a read-only mount or volume"
        ));
    }
}
