//! The Dockerfile's facts, hadolint aside: a build stage and a runtime
//! stage, a numeric non-root user, `wedge serve` listening beyond loopback
//! on ports it exposes and logging JSON, every workspace member copied in
//! and not dropped by `.dockerignore`.

use std::collections::BTreeSet;

use super::serve::{self, Resolve, ServeConfig};
use super::under;

/// What the image is made from.
pub(crate) struct Image<'a> {
    /// The Dockerfile's text.
    pub(crate) dockerfile: &'a str,
    /// `.dockerignore`'s text.
    pub(crate) dockerignore: &'a str,
    /// The workspace members' folders (`host`, …).
    pub(crate) members: &'a [String],
    /// The Deployment's `runAsUser`, if it sets one.
    pub(crate) pod_user: Option<u64>,
}

/// One Dockerfile instruction: its keyword, upper-cased, and the rest.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    rest: String,
}

/// Checks the image's files; `resolve` says what the CMD's arguments mean.
pub(crate) fn check(image: &Image, resolve: &Resolve<'_>, problems: &mut Vec<String>) {
    let instructions = instructions(image.dockerfile);
    let Some((build, runtime)) = stages(&instructions, problems) else {
        return;
    };
    check_user(runtime, image.pod_user, problems);
    check_entrypoint(runtime, problems);
    check_cmd(runtime, resolve, problems);
    let copied = copied_sources(build);
    check_members_copied(&copied, image.members, problems);
    check_cargo_build(build, problems);
    check_dockerignore(image.dockerignore, &copied, problems);
}

/// The instructions, continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<Instruction> {
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
            Some((keyword, rest)) => Instruction {
                keyword: keyword.to_ascii_uppercase(),
                rest: rest.trim().to_owned(),
            },
            None => Instruction {
                keyword: line.to_ascii_uppercase(),
                rest: String::new(),
            },
        })
        .collect()
}

/// The build stages and the runtime stage (the last): two at least, so
/// that the toolchain stays out of the image.
fn stages<'a>(
    instructions: &'a [Instruction],
    problems: &mut Vec<String>,
) -> Option<(&'a [Instruction], &'a [Instruction])> {
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, instruction)| instruction.keyword == "FROM")
        .map(|(i, _)| i)
        .collect();
    let Some(&last) = froms.last() else {
        problems.push("Dockerfile: no FROM".into());
        return None;
    };
    if froms.len() < 2 {
        problems.push(
            "Dockerfile: one stage; build in one and copy the binary into a small runtime stage"
                .into(),
        );
    }
    Some(instructions.split_at(last))
}

/// The rest of the stage's last `keyword` instruction.
fn last<'a>(stage: &'a [Instruction], keyword: &str) -> Option<&'a str> {
    stage
        .iter()
        .rev()
        .find(|instruction| instruction.keyword == keyword)
        .map(|instruction| instruction.rest.as_str())
}

/// The stage's last `keyword` instruction in exec (JSON) form.
fn exec_form(stage: &[Instruction], keyword: &str) -> Option<Vec<String>> {
    last(stage, keyword).and_then(|rest| serde_json::from_str(rest).ok())
}

/// The runtime stage's USER is a numeric non-root uid (Kubernetes'
/// `runAsNonRoot` cannot verify a name), the Deployment's `runAsUser` if
/// it sets one.
fn check_user(runtime: &[Instruction], pod_user: Option<u64>, problems: &mut Vec<String>) {
    let Some(user) = last(runtime, "USER") else {
        problems.push("Dockerfile: the runtime stage sets no USER".into());
        return;
    };
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

/// ENTRYPOINT is the bare `wedge` binary in exec form, so that a
/// Deployment's `args` (which replace CMD) are wedge's whole arguments.
fn check_entrypoint(runtime: &[Instruction], problems: &mut Vec<String>) {
    match exec_form(runtime, "ENTRYPOINT") {
        Some(entrypoint) if entrypoint.len() == 1 && entrypoint[0].ends_with("wedge") => {}
        _ => problems.push("Dockerfile: ENTRYPOINT is not [\"…/wedge\"] in exec form".into()),
    }
}

/// CMD, in exec form, is arguments wedge accepts that pass the settings'
/// own rules, and which the runtime stage's EXPOSE and log format follow.
fn check_cmd(runtime: &[Instruction], resolve: &Resolve<'_>, problems: &mut Vec<String>) {
    let Some(cmd) = exec_form(runtime, "CMD") else {
        problems.push("Dockerfile: no CMD in exec (JSON) form".into());
        return;
    };
    let context = "Dockerfile CMD";
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let settings = match resolve(&args) {
        Ok(settings) => settings,
        Err(refused) => {
            problems.push(format!("{context}: {refused}"));
            return;
        }
    };
    serve::check_settings(&settings, context, problems);
    check_exposed(runtime, &settings, problems);
    check_log_format(&settings, problems);
}

/// The runtime stage EXPOSEs `--listen`'s and `--admin`'s ports.
fn check_exposed(runtime: &[Instruction], settings: &ServeConfig, problems: &mut Vec<String>) {
    let exposed: BTreeSet<u16> = runtime
        .iter()
        .filter(|instruction| instruction.keyword == "EXPOSE")
        .flat_map(|instruction| instruction.rest.split_whitespace())
        .filter_map(|port| port.split('/').next()?.parse().ok())
        .collect();
    let listeners = [
        ("--listen", Some(settings.listen)),
        ("--admin", settings.admin),
    ];
    for (flag, address) in listeners {
        if let Some(address) = address
            && !exposed.contains(&address.port())
        {
            problems.push(format!(
                "Dockerfile: {flag} port {} is not EXPOSEd",
                address.port()
            ));
        }
    }
}

/// The image logs JSON lines, which log collectors read.
fn check_log_format(settings: &ServeConfig, problems: &mut Vec<String>) {
    if settings.log_format != "json" {
        problems.push(format!(
            "Dockerfile: CMD lacks --log-format json (it logs {})",
            settings.log_format
        ));
    }
}

/// What the build stages COPY from the build context (not `--from` a
/// stage), as paths relative to it without `./` or a trailing `/`.
fn copied_sources(build: &[Instruction]) -> BTreeSet<String> {
    build
        .iter()
        .filter(|i| i.keyword == "COPY" && !i.rest.contains("--from"))
        .flat_map(|instruction| {
            let words: Vec<&str> = instruction
                .rest
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let sources = words.len().saturating_sub(1);
            words[..sources]
                .iter()
                .map(|w| w.trim_start_matches("./").trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The build stage copies `Cargo.toml`, `Cargo.lock` and every workspace
/// member: cargo loads every member's manifest, and `--locked` needs the
/// lock file to match them all.
fn check_members_copied(copied: &BTreeSet<String>, members: &[String], problems: &mut Vec<String>) {
    let needed = ["Cargo.toml".to_owned(), "Cargo.lock".to_owned()];
    for path in needed.iter().chain(members) {
        if !copied.contains(path) {
            problems.push(format!(
                "Dockerfile: the build stage does not COPY {path} (cargo needs every workspace member)"
            ));
        }
    }
}

/// The build stage runs `cargo build … --locked`: the image builds what
/// Cargo.lock pins.
fn check_cargo_build(build: &[Instruction], problems: &mut Vec<String>) {
    let builds = build.iter().any(|i| {
        i.keyword == "RUN" && i.rest.contains("cargo build") && i.rest.contains("--locked")
    });
    if !builds {
        problems.push("Dockerfile: no `cargo build … --locked` in the build stage".into());
    }
}

/// `.dockerignore` keeps build output and git history out of the context,
/// and drops nothing the Dockerfile copies.
fn check_dockerignore(dockerignore: &str, copied: &BTreeSet<String>, problems: &mut Vec<String>) {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deploy::serve::tests::settings_with;

    const GOOD: &str = "FROM rust AS build\nCOPY Cargo.toml Cargo.lock ./\nCOPY host host\n\
        RUN cargo build --release \\\n    --locked -p wedge\n\
        FROM distroless\nUSER 65532:65532\nEXPOSE 3000 9000\n\
        ENTRYPOINT [\"/usr/local/bin/wedge\"]\n\
        CMD [\"serve\", \"/routes\", \"--listen\", \"0.0.0.0:3000\", \"--admin\", \
        \"0.0.0.0:9000\", \"--cache-dir\", \"/cache/wedge\", \"--log-format\", \"json\"]\n";
    const IGNORE: &str = "**/target\n.git\n";

    /// The problems of `dockerfile` and `dockerignore`, wedge resolving the
    /// CMD to `settings`.
    fn problems(dockerfile: &str, dockerignore: &str, settings: &ServeConfig) -> Vec<String> {
        let members = ["host".to_owned()];
        let image = Image {
            dockerfile,
            dockerignore,
            members: &members,
            pod_user: Some(65532),
        };
        let resolve = |args: &[&str]| {
            assert_eq!(args.first(), Some(&"serve"), "wedge is asked about the CMD");
            Ok(settings.clone())
        };
        let mut problems = Vec::new();
        check(&image, &resolve, &mut problems);
        problems
    }

    #[test]
    fn the_dockerfile_needs_two_stages_a_user_and_every_member() {
        let settings = settings_with(|_| {});
        assert_eq!(problems(GOOD, IGNORE, &settings), Vec::<String>::new());
        let broken = [
            (GOOD.replace("USER 65532:65532", "USER root"), IGNORE),
            (GOOD.replace("COPY host host\n", ""), IGNORE),
            (GOOD.replace("EXPOSE 3000 9000", "EXPOSE 3000"), IGNORE),
            (GOOD.replace("FROM distroless\n", ""), IGNORE),
            (GOOD.replace("--locked", ""), IGNORE),
            (GOOD.to_owned(), "**/target\n.git\nhost\n"),
        ];
        for (dockerfile, dockerignore) in broken {
            assert!(
                !problems(&dockerfile, dockerignore, &settings).is_empty(),
                "no problem with {dockerfile}\n{dockerignore}"
            );
        }
    }

    #[test]
    fn the_cmd_is_read_as_wedge_resolves_it() {
        let cases: [(&str, ServeConfig); 3] = [
            (
                "CMD lacks --log-format json",
                settings_with(|p| p["log_format"] = json!("pretty")),
            ),
            (
                "--admin port 9001 is not EXPOSEd",
                settings_with(|p| p["admin"] = json!("0.0.0.0:9001")),
            ),
            (
                "Dockerfile CMD: --admin 127.0.0.1:9000 is loopback",
                settings_with(|p| p["admin"] = json!("127.0.0.1:9000")),
            ),
        ];
        for (expected, settings) in cases {
            let problems = problems(GOOD, IGNORE, &settings);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:#?}"
            );
        }
    }

    #[test]
    fn arguments_wedge_refuses_are_a_problem_of_the_cmd() {
        let image = Image {
            dockerfile: GOOD,
            dockerignore: IGNORE,
            members: &["host".to_owned()],
            pod_user: None,
        };
        let refuse = |_: &[&str]| Err("error: unexpected argument '--nope' found".to_owned());
        let mut problems = Vec::new();
        check(&image, &refuse, &mut problems);
        assert_eq!(
            problems,
            ["Dockerfile CMD: error: unexpected argument '--nope' found"]
        );
    }
}
