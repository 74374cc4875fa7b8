//! The manifests, read as JSON: PyYAML (from the linters' virtual
//! environment) loads every document of every file, duplicate keys refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

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
pub(crate) struct Document {
    /// The file's name in `deploy/kubernetes/`.
    pub(crate) file: String,
    pub(crate) value: Value,
}

/// Whether the file is the kustomization, which kubernetes-validate has no
/// schema for and which alone holds the `Kustomization`.
pub(crate) fn is_kustomization(path: &Path) -> bool {
    matches!(
        path.file_name().and_then(|name| name.to_str()),
        Some("kustomization.yaml" | "kustomization.yml")
    )
}

/// The `.yaml` and `.yml` files in `folder`, sorted.
pub(crate) fn manifest_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

/// Every document of `files`, in order, read by `python`'s PyYAML.
pub(crate) fn load(python: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
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

/// The strings of a JSON array, others skipped.
pub(crate) fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
