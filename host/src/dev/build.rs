//! Running one route's build command and putting its output in place.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use super::RouteBuild;

/// How much of a failed build's output is kept: its end, where compilers
/// put the summary. A page of errors is a few KiB.
const MAX_OUTPUT: usize = 64 << 10;

/// Runs `build`'s command; on success, installs its output as the route's
/// `.wasm`. Logs one line either way. A build that did not produce a new
/// version is what went wrong, then what the command printed (its end).
pub(super) async fn run(build: &RouteBuild) -> Result<(), String> {
    let started = Instant::now();
    let result = command(build).await.and_then(|()| install(build));
    let ms = started.elapsed().as_millis();
    match result {
        Ok(()) => {
            tracing::info!(route = %build.name, "build ok in {ms} ms");
            Ok(())
        }
        Err(output) => {
            tracing::error!(route = %build.name, "build failed in {ms} ms:\n{output}");
            Err(output)
        }
    }
}

/// Runs the command through the shell in `workdir`, its output captured
/// (printed only if it fails), killed if the build is dropped.
async fn command(build: &RouteBuild) -> Result<(), String> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&build.command)
        .current_dir(&build.workdir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run `sh -c {}`: {e}", build.command))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(format!(
        "`{}` in {} failed ({}):\n{}",
        build.command,
        build.workdir.display(),
        output.status,
        tail(&text, MAX_OUTPUT)
    ))
}

/// Copies the output over the route's `.wasm` through a private temporary
/// file and a rename, so the reloader never reads it half-written. Nothing
/// is copied if the content is the same.
fn install(build: &RouteBuild) -> Result<(), String> {
    let (output, target) = (&build.output, &build.target);
    let bytes = std::fs::read(output).map_err(|e| {
        format!(
            "the command succeeded, but its output {} cannot be read ({e}); set [build] output \
             in {} to the .wasm it writes",
            output.display(),
            build.sidecar.display()
        )
    })?;
    if std::fs::read(target).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    let temporary = private_sibling(target);
    std::fs::write(&temporary, &bytes)
        .and_then(|()| std::fs::rename(&temporary, target))
        .map_err(|e| format!("cannot write {}: {e}", target.display()))
}

/// `.NAME.build` beside `file`: private (a leading `.`), so never a route.
fn private_sibling(file: &Path) -> std::path::PathBuf {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!(".{name}.build"))
}

/// The last `max` bytes of `text` or fewer, starting at a line.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let from = text[start..].find('\n').map_or(start, |n| start + n + 1);
    &text[from..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_its_last_whole_lines() {
        let text = "first line\nsecond line\nthird line\n";
        assert_eq!(tail(text, 100), text);
        assert_eq!(tail(text, 15), "third line\n");
        assert_eq!(tail("ééé\nabc", 4), "abc");
    }

    #[test]
    fn temporary_copies_are_private_names() {
        let sibling = private_sibling(Path::new("routes/api/[id].wasm"));
        assert_eq!(sibling, Path::new("routes/api/.[id].wasm.build"));
    }
}
