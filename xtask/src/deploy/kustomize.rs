//! What `kubectl kustomize FOLDER` makes of the manifests' folders, for the
//! part of kustomize they use (kustomize itself comes from no registry this
//! project installs from): `resources` (files, and folders with a
//! kustomization of their own), `patches` read from files (strategic merge
//! patches, `$patch: delete` among them, and JSON patches with a `target`;
//! [`super::patch`] applies them) and `images`, whose entries are gathered
//! rather than applied. Any other field of a kustomization is a problem,
//! not skipped: what is checked is what kubectl would apply, or nothing
//! passes.
//!
//! Every folder with a `kustomization.yaml` lists each manifest beside it
//! as a resource or a patch; one that no other kustomization builds on is a
//! way to deploy, a [`Build`] that [`super::manifests`] checks whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use super::patch::{json_patch, merge};
use super::yaml::{Document, is_kustomization, strings};

/// The fields of a kustomization that a build reads.
const KUSTOMIZATION_FIELDS: [&str; 5] = ["apiVersion", "kind", "resources", "patches", "images"];

/// How deep kustomizations may build on one another.
const MAX_DEPTH: usize = 8;

/// One way to deploy: a folder's kustomization, built.
#[derive(Debug)]
pub(crate) struct Build {
    /// The folder under `deploy/kubernetes/`, `""` for that folder itself.
    pub(crate) folder: String,
    /// The resources as kustomize emits them, each naming its file.
    pub(crate) documents: Vec<Document>,
    /// Which of `documents` a patch changed (indexes, ascending).
    pub(crate) patched: Vec<usize>,
    /// The `images` entries of every kustomization in the build.
    pub(crate) images: Vec<Value>,
}

impl Build {
    /// How messages name the folder: `deploy/kubernetes/redis`.
    pub(crate) fn name(&self) -> String {
        match self.folder.as_str() {
            "" => "deploy/kubernetes".to_owned(),
            folder => format!("deploy/kubernetes/{folder}"),
        }
    }
}

/// The ways to deploy, and the files that are patches (which no schema
/// validates on their own).
#[derive(Debug)]
pub(crate) struct Builds {
    pub(crate) builds: Vec<Build>,
    pub(crate) patch_files: BTreeSet<String>,
}

/// A resource on its way through a build.
#[derive(Debug, Clone)]
struct Resource {
    document: Document,
    patched: bool,
}

/// What one folder's kustomization builds.
#[derive(Debug, Clone)]
struct Built {
    resources: Vec<Resource>,
    images: Vec<Value>,
}

/// The manifests, read by folder.
struct Sources<'a> {
    documents: &'a [Document],
    files: BTreeSet<&'a str>,
    /// Each folder's kustomization.
    kustomizations: BTreeMap<String, &'a Document>,
}

impl<'a> Sources<'a> {
    fn new(documents: &'a [Document]) -> Sources<'a> {
        let kustomizations = documents
            .iter()
            .filter(|d| is_kustomization(Path::new(&d.file)) && kind(&d.value) == "Kustomization")
            .map(|d| (folder_of(&d.file).to_owned(), d))
            .collect();
        Sources {
            documents,
            files: documents.iter().map(|d| d.file.as_str()).collect(),
            kustomizations,
        }
    }

    fn documents_of(&self, file: &str) -> impl Iterator<Item = &'a Document> {
        self.documents.iter().filter(move |d| d.file == file)
    }
}

/// Builds every folder's kustomization; each problem is said once, naming
/// the file to fix.
pub(crate) fn build_all(documents: &[Document], problems: &mut Vec<String>) -> Builds {
    check_placement(documents, problems);
    let sources = Sources::new(documents);
    let mut builder = Builder {
        sources: &sources,
        built: BTreeMap::new(),
        building: BTreeSet::new(),
        bases: BTreeSet::new(),
        patch_files: BTreeSet::new(),
    };
    for folder in sources.kustomizations.keys() {
        builder.get(folder, problems);
    }
    for folder in sources.kustomizations.keys() {
        check_listing(&sources, folder, &builder.patch_files, problems);
    }
    check_unlisted_folders(&sources, problems);
    let Builder {
        built,
        bases,
        patch_files,
        ..
    } = builder;
    let builds = built
        .into_iter()
        .filter(|(folder, _)| !bases.contains(folder))
        .filter_map(|(folder, built)| Some((folder, built?)))
        .map(|(folder, built)| {
            let patched = (0..built.resources.len())
                .filter(|&i| built.resources[i].patched)
                .collect();
            Build {
                folder,
                documents: built.resources.into_iter().map(|r| r.document).collect(),
                patched,
                images: built.images,
            }
        })
        .collect();
    Builds {
        builds,
        patch_files,
    }
}

fn kind(value: &Value) -> &str {
    value["kind"].as_str().unwrap_or("")
}

/// The folder of a file under `deploy/kubernetes/` (`""` for the top).
fn folder_of(file: &str) -> &str {
    file.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// `relative` (a kustomization's entry) from `folder`, normalized; `None`
/// if it leaves `deploy/kubernetes/` or is a URL.
fn join(folder: &str, relative: &str) -> Option<String> {
    if relative.contains("://") || relative.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// `name` in `folder`.
fn in_folder(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// The Kustomization is in a `kustomization.yaml`, and only there.
fn check_placement(documents: &[Document], problems: &mut Vec<String>) {
    for document in documents {
        let is_kustomization_kind = kind(&document.value) == "Kustomization";
        if is_kustomization_kind != is_kustomization(Path::new(&document.file)) {
            problems.push(format!(
                "{}: a {} document (only a kustomization.yaml holds a Kustomization)",
                document.file,
                match kind(&document.value) {
                    "" => "kind-less",
                    other => other,
                }
            ));
        }
    }
}

/// Every manifest beside a kustomization is among its resources or
/// patches: a file it leaves out would be checked here and never applied.
fn check_listing(
    sources: &Sources,
    folder: &str,
    patch_files: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let kustomization = &sources.kustomizations[folder];
    let resources: BTreeSet<String> = strings(&kustomization.value["resources"])
        .into_iter()
        .filter_map(|entry| join(folder, entry))
        .collect();
    for file in &sources.files {
        if folder_of(file) == folder
            && !is_kustomization(Path::new(file))
            && !resources.contains(*file)
            && !patch_files.contains(*file)
        {
            problems.push(format!(
                "{}: {file} is neither among its resources nor its patches",
                kustomization.file
            ));
        }
    }
}

/// Every manifest is in a folder with a kustomization.
fn check_unlisted_folders(sources: &Sources, problems: &mut Vec<String>) {
    for file in &sources.files {
        if !sources.kustomizations.contains_key(folder_of(file)) {
            problems.push(format!(
                "{file}: no kustomization.yaml beside it, so no build applies it"
            ));
        }
    }
}

/// Builds folders once each, remembering which ones others build on.
struct Builder<'s, 'a> {
    sources: &'s Sources<'a>,
    built: BTreeMap<String, Option<Built>>,
    building: BTreeSet<String>,
    bases: BTreeSet<String>,
    patch_files: BTreeSet<String>,
}

impl Builder<'_, '_> {
    /// The folder's build, made the first time it is asked for.
    fn get(&mut self, folder: &str, problems: &mut Vec<String>) -> Option<Built> {
        if let Some(built) = self.built.get(folder) {
            return built.clone();
        }
        if self.building.len() >= MAX_DEPTH || !self.building.insert(folder.to_owned()) {
            problems.push(format!(
                "{}: kustomizations build on one another in a cycle",
                in_folder(folder, "kustomization.yaml")
            ));
            return None;
        }
        let built = self.build(folder, problems);
        self.building.remove(folder);
        self.built.insert(folder.to_owned(), built.clone());
        built
    }

    fn build(&mut self, folder: &str, problems: &mut Vec<String>) -> Option<Built> {
        let sources = self.sources;
        let kustomization = *sources.kustomizations.get(folder)?;
        let file = &kustomization.file;
        let Some(fields) = kustomization.value.as_object() else {
            problems.push(format!("{file}: not a mapping"));
            return None;
        };
        for field in fields.keys() {
            if !KUSTOMIZATION_FIELDS.contains(&field.as_str()) {
                problems.push(format!(
                    "{file}: xtask does not build `{field}` (it builds {}): check the build \
                     with `kubectl kustomize` and teach xtask/src/deploy/kustomize.rs",
                    KUSTOMIZATION_FIELDS[2..].join(", ")
                ));
            }
        }
        let mut built = Built {
            resources: Vec::new(),
            images: Vec::new(),
        };
        for entry in entries(
            file,
            "resources",
            &kustomization.value["resources"],
            problems,
        ) {
            let Some(entry) = entry.as_str() else {
                problems.push(format!("{file}: resource {entry} is not a path"));
                continue;
            };
            self.add_resource(folder, file, entry, &mut built, problems);
        }
        for patch in entries(file, "patches", &kustomization.value["patches"], problems) {
            self.apply(folder, file, patch, &mut built.resources, problems);
        }
        built
            .images
            .extend(entries(file, "images", &kustomization.value["images"], problems).cloned());
        Some(built)
    }

    /// Adds the resource `entry` of `folder`'s kustomization (`file`): a
    /// manifest, or the build of a folder with a kustomization.
    fn add_resource(
        &mut self,
        folder: &str,
        file: &str,
        entry: &str,
        built: &mut Built,
        problems: &mut Vec<String>,
    ) {
        let sources = self.sources;
        match join(folder, entry) {
            Some(path) if sources.kustomizations.contains_key(&path) => {
                self.bases.insert(path.clone());
                if let Some(base) = self.get(&path, problems) {
                    built.resources.extend(base.resources);
                    built.images.extend(base.images);
                }
            }
            Some(path) if sources.files.contains(path.as_str()) => {
                built
                    .resources
                    .extend(sources.documents_of(&path).map(|document| Resource {
                        document: document.clone(),
                        patched: false,
                    }));
            }
            _ => problems.push(format!(
                "{file}: resource {entry} is neither a manifest nor a folder with a \
                 kustomization.yaml under deploy/kubernetes"
            )),
        }
    }

    /// Applies one `patches` entry of `folder`'s kustomization (`file`).
    fn apply(
        &mut self,
        folder: &str,
        file: &str,
        entry: &Value,
        resources: &mut Vec<Resource>,
        problems: &mut Vec<String>,
    ) {
        let unknown = entry
            .as_object()
            .into_iter()
            .flat_map(Map::keys)
            .find(|key| !matches!(key.as_str(), "path" | "target"));
        if let Some(key) = unknown {
            problems.push(format!(
                "{file}: xtask does not apply a patch's `{key}` (only `path` and `target`)"
            ));
            return;
        }
        let Some(path) = entry["path"]
            .as_str()
            .and_then(|path| join(folder, path))
            .filter(|path| self.sources.files.contains(path.as_str()))
        else {
            problems.push(format!(
                "{file}: patch {} is not a manifest under deploy/kubernetes",
                entry["path"]
            ));
            return;
        };
        self.patch_files.insert(path.clone());
        let target = &entry["target"];
        for patch in self.sources.documents_of(&path) {
            if let Err(refused) = apply_patch(&patch.value, target, resources) {
                problems.push(format!("{file}: patch {path}: {refused}"));
            }
        }
    }
}

/// The items of a kustomization's list field.
fn entries<'a>(
    file: &str,
    field: &str,
    value: &'a Value,
    problems: &mut Vec<String>,
) -> std::slice::Iter<'a, Value> {
    const NONE: &[Value] = &[];
    match value {
        Value::Array(items) => items.iter(),
        Value::Null => NONE.iter(),
        _ => {
            problems.push(format!("{file}: `{field}` is not a list"));
            NONE.iter()
        }
    }
}

/// Applies one patch document to the resources it selects: its `target`,
/// else (a strategic merge patch) its own kind and name.
fn apply_patch(patch: &Value, target: &Value, resources: &mut Vec<Resource>) -> Result<(), String> {
    let selector = match (target, patch) {
        (Value::Object(_), _) => target.clone(),
        (Value::Null, Value::Object(_)) => serde_json::json!({
            "apiVersion": patch["apiVersion"],
            "kind": patch["kind"],
            "name": patch["metadata"]["name"],
        }),
        (Value::Null, _) => return Err("a JSON patch needs a `target`".into()),
        _ => return Err(format!("target {target} is not a mapping")),
    };
    if let Some(key) = selector
        .as_object()
        .into_iter()
        .flat_map(Map::keys)
        .find(|key| {
            !matches!(
                key.as_str(),
                "apiVersion" | "group" | "version" | "kind" | "name"
            )
        })
    {
        return Err(format!(
            "xtask selects by group, version, kind and name, not `{key}`"
        ));
    }
    let selected: Vec<usize> = (0..resources.len())
        .filter(|&i| selects(&selector, &resources[i].document.value))
        .collect();
    if selected.is_empty() {
        return Err(format!("no resource matches {selector}"));
    }
    if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
        for i in selected.into_iter().rev() {
            resources.remove(i);
        }
        return Ok(());
    }
    for i in selected {
        let resource = &mut resources[i];
        let mut patched = resource.document.value.clone();
        match patch {
            Value::Array(operations) => json_patch(&mut patched, operations)?,
            Value::Object(_) => merge(&mut patched, patch, "")?,
            _ => return Err("neither a mapping (strategic merge) nor a list (JSON patch)".into()),
        }
        resource.document.value = patched;
        resource.patched = true;
    }
    Ok(())
}

/// Whether `selector` (`kind`, `name`, and `group`/`version` or a whole
/// `apiVersion`) picks `resource`.
fn selects(selector: &Value, resource: &Value) -> bool {
    let api_version = resource["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let wanted = [
        ("apiVersion", api_version),
        ("group", group),
        ("version", version),
        ("kind", kind(resource)),
        ("name", resource["metadata"]["name"].as_str().unwrap_or("")),
    ];
    wanted
        .iter()
        .all(|(field, actual)| selector[*field].as_str().is_none_or(|want| want == *actual))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document(file: &str, value: Value) -> Document {
        Document {
            file: file.into(),
            value,
        }
    }

    /// A base with a Deployment and a claim, and an overlay that patches
    /// the one three ways and deletes the other: the layout of
    /// deploy/kubernetes in small.
    fn layout() -> Vec<Document> {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "template": {"spec": {
                "containers": [{"name": "w", "args": ["serve"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}}}
        });
        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c"}});
        let merge = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": null, "strategy": {"type": "RollingUpdate"}, "template": {"spec": {
                "containers": [{"name": "w",
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/w"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": null, "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "w"}}]}}}
        });
        let arg = json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "w"},
            {"op": "add", "path": "/spec/template/spec/containers/0/args/-",
                "value": "--config=/etc/w/w.toml"}
        ]);
        let delete = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c"}, "$patch": "delete"});
        vec![
            document(
                "kustomization.yaml",
                json!({"kind": "Kustomization", "resources": ["base"]}),
            ),
            document(
                "base/kustomization.yaml",
                json!({"kind": "Kustomization", "resources": ["deployment.yaml", "pvc.yaml"],
                    "images": [{"name": "w", "newTag": "1"}]}),
            ),
            document("base/deployment.yaml", deployment),
            document("base/pvc.yaml", claim),
            document(
                "over/kustomization.yaml",
                json!({"kind": "Kustomization", "resources": ["../base", "hpa.yaml"],
                    "patches": [{"path": "merge.yaml"}, {"path": "delete.yaml"},
                        {"path": "arg.yaml", "target": {"kind": "Deployment", "name": "w"}}]}),
            ),
            document(
                "over/hpa.yaml",
                json!({"apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler", "metadata": {"name": "w"}}),
            ),
            document("over/merge.yaml", merge),
            document("over/delete.yaml", delete),
            document("over/arg.yaml", arg),
        ]
    }

    fn built(documents: &[Document]) -> (Builds, Vec<String>) {
        let mut problems = Vec::new();
        let builds = build_all(documents, &mut problems);
        (builds, problems)
    }

    #[test]
    fn an_overlay_builds_as_kustomize_builds_it() {
        let (builds, problems) = built(&layout());
        assert_eq!(problems, Vec::<String>::new());
        let folders: Vec<&str> = builds.builds.iter().map(|b| b.folder.as_str()).collect();
        assert_eq!(
            folders,
            ["", "over"],
            "base/ is built on, so not a way of its own"
        );
        assert_eq!(
            builds.patch_files,
            BTreeSet::from(
                ["over/arg.yaml", "over/delete.yaml", "over/merge.yaml"].map(String::from)
            )
        );
        let top = &builds.builds[0];
        assert_eq!(top.documents.len(), 2);
        assert!(top.patched.is_empty());
        assert_eq!(top.images, [json!({"name": "w", "newTag": "1"})]);

        let over = &builds.builds[1];
        let files: Vec<&str> = over.documents.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(files, ["base/deployment.yaml", "over/hpa.yaml"]);
        assert_eq!(over.patched, [0]);
        assert_eq!(over.images.len(), 1);
        let spec = &over.documents[0].value["spec"];
        assert_eq!(spec.get("replicas"), None);
        assert_eq!(spec["strategy"], json!({"type": "RollingUpdate"}));
        let pod = &spec["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["args"],
            json!(["serve", "--config=/etc/w/w.toml"])
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data"}, {"name": "config", "mountPath": "/etc/w"}])
        );
        assert_eq!(
            pod["volumes"],
            json!([{"name": "data", "emptyDir": {}}, {"name": "config", "configMap": {"name": "w"}}])
        );
    }

    /// A change to the layout, and what the problem says.
    type Break = fn(&mut Vec<Document>);

    #[test]
    fn what_xtask_cannot_build_or_kustomize_would_refuse_is_named() {
        let cases: Vec<(&str, Break)> = vec![
            (
                "over/kustomization.yaml: xtask does not build `namePrefix`",
                |d| {
                    d[4].value["namePrefix"] = json!("x-");
                },
            ),
            (
                "resource nope.yaml is neither a manifest nor a folder",
                |d| {
                    d[1].value["resources"][1] = json!("nope.yaml");
                },
            ),
            ("resource ../../elsewhere is neither", |d| {
                d[4].value["resources"][0] = json!("../../elsewhere");
            }),
            (
                "base/kustomization.yaml: base/pvc.yaml is neither among its resources",
                |d| {
                    d[1].value["resources"] = json!(["deployment.yaml"]);
                    d.remove(7);
                    d[4].value["patches"] = json!([{"path": "merge.yaml"}]);
                },
            ),
            ("other/stray.yaml: no kustomization.yaml beside it", |d| {
                d.push(document("other/stray.yaml", json!({"kind": "Service"})));
            }),
            ("patch over/delete.yaml: no resource matches", |d| {
                d[7].value["metadata"]["name"] = json!("other");
            }),
            (
                "patch over/arg.yaml: test /spec/template/spec/containers/0/name",
                |d| {
                    d[8].value[0]["value"] = json!("other");
                },
            ),
            ("patch over/arg.yaml: a JSON patch needs a `target`", |d| {
                d[4].value["patches"][2] = json!({"path": "arg.yaml"});
            }),
            (
                "does not apply the directive $setElementOrder/volumes",
                |d| {
                    d[6].value["spec"]["$setElementOrder/volumes"] = json!([]);
                },
            ),
            ("does not apply \"move\" operations", |d| {
                d[8].value[1]["op"] = json!("move");
            }),
            ("a Service document (only a kustomization.yaml holds", |d| {
                d[0].value["kind"] = json!("Service");
            }),
            ("in a cycle", |d| {
                d[1].value["resources"] = json!(["../over"]);
            }),
        ];
        for (expected, change) in cases {
            let mut documents = layout();
            change(&mut documents);
            let (_, problems) = built(&documents);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn paths_stay_under_the_manifests_folder() {
        assert_eq!(join("redis", "../base").as_deref(), Some("base"));
        assert_eq!(join("", "./base/").as_deref(), Some("base"));
        assert_eq!(join("a/b", "../c.yaml").as_deref(), Some("a/c.yaml"));
        assert_eq!(join("", "../x"), None);
        assert_eq!(join("", "https://example.com/k"), None);
        assert_eq!(folder_of("redis/hpa.yaml"), "redis");
        assert_eq!(folder_of("kustomization.yaml"), "");
    }
}
