//! The manifests, read as JSON: PyYAML (from the linters' virtual
//! environment) loads every document of every file, duplicate keys refused;
//! and the TOML files a ConfigMap holds, read by the same Python's
//! `tomllib`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Reads TOML text (standard input) with Python's `tomllib` and prints it
/// as JSON.
const TOML_TO_JSON: &str = r#"
import json, sys
try:
    import tomllib
except ImportError:
    sys.exit("reading TOML needs Python 3.11 or later (tomllib)")
try:
    json.dump(tomllib.loads(sys.stdin.read()), sys.stdout, default=str)
except tomllib.TOMLDecodeError as e:
    sys.exit(str(e))
"#;

/// One YAML document of a manifest file.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// The file's path under `deploy/kubernetes/`, `/`-separated
    /// (`base/deployment.yaml`).
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

/// The `.yaml` and `.yml` files in `folder` and its subfolders, sorted.
pub(crate) fn manifest_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![folder.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                folders.push(path);
            } else if matches!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("yaml" | "yml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!("no manifests in {}", folder.display());
    }
    Ok(files)
}

/// Every document of `files` (under `folder`), in order, read by
/// `python`'s PyYAML.
pub(crate) fn load(
    python: &Path,
    folder: &Path,
    files: &[PathBuf],
) -> anyhow::Result<Vec<Document>> {
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
            .strip_prefix(folder)
            .unwrap_or(path)
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        for value in parsed.get(key.as_ref()).into_iter().flatten() {
            documents.push(Document {
                file: file.clone(),
                value: value.clone(),
            });
        }
    }
    Ok(documents)
}

/// `text` read as TOML by `python`'s `tomllib`, as JSON; the error is
/// Python's message.
pub(crate) fn toml_to_json(python: &Path, text: &str) -> Result<Value, String> {
    let mut child = Command::new(python)
        .args(["-c", TOML_TO_JSON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot write to {}: {e}", python.display()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("tomllib's JSON: {e}"))
}

/// The strings of a JSON array, others skipped.
pub(crate) fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
