//! The container recipe (`Containerfile`), checked without a container engine (CI has none):
//! its build stage runs exactly the build CI runs (`.ci/run`, which builds the debug profile of
//! the same command), the runtime stage copies the binary from where that build puts it, runs
//! as an unprivileged user with its data in the volume, and the `otter` built here accepts the
//! runtime command and serves with it (on port 0 and a temporary folder instead of the image's).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use otter_testkit::Running;
use serde_json::Value;

use crate::OTTER;

/// The build command of the recipe.
const BUILD: &str = "cargo build --release --locked -p otter-cli";

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The recipe's stages, each a list of instructions starting with its FROM.
fn stages(text: &str) -> Vec<Vec<Instruction>> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical.into_iter().filter(|l| !l.trim().is_empty()) {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the recipe starts with FROM")
            .push(instruction);
    }
    stages
}

fn all<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

fn one<'a>(stage: &'a [Instruction], keyword: &str) -> &'a str {
    let found = all(stage, keyword);
    assert_eq!(found.len(), 1, "one {keyword} expected: {found:?}");
    found[0]
}

/// The exec (JSON) form of CMD or ENTRYPOINT.
fn exec_form(args: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("not the exec form (JSON array) {args:?}: {e}"));
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_containerfile_builds_what_ci_builds_and_runs_what_otter_accepts() {
    let root = workspace();
    let recipe = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    let stages = stages(&recipe);
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);

    // Build stage: the toolchain image, the whole source, exactly the build command.
    assert_eq!(
        one(build, "FROM"),
        "docker.io/library/rust:1-bookworm AS build"
    );
    assert_eq!(
        all(build, "RUN"),
        [BUILD],
        "the build stage runs only the build"
    );
    let workdir = one(build, "WORKDIR");
    assert_eq!(one(build, "COPY"), ". .");
    // CI builds the same command in the debug profile, so a recipe whose command stopped
    // building (a lock file out of date: --locked) fails CI.
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let debug = BUILD.replace(" --release", "");
    assert!(
        ci.lines().any(|l| l.trim() == debug),
        ".ci/run must run `{debug}`, the recipe's build in the debug profile"
    );
    // The build context leaves out what is built here (a build's target folder is gigabytes).
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");

    // Runtime stage: copies the binary from where cargo puts it: <workdir>/target/release/<bin>,
    // the bin being the one this test runs (CARGO_BIN_EXE_otter, from crates/cli's [[bin]]).
    assert_eq!(
        one(runtime, "FROM"),
        "docker.io/library/debian:bookworm-slim"
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_otter"))
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let copy = one(runtime, "COPY");
    let built = format!("{workdir}/target/release/{bin}");
    assert_eq!(copy, format!("--from=build {built} /usr/local/bin/{bin}"));

    // An unprivileged user made in this stage, the data folder a volume it owns.
    let user = one(runtime, "USER");
    assert!(user != "root" && user != "0", "runs as root: {user}");
    let runs = all(runtime, "RUN").join(" ");
    assert!(
        runs.contains("useradd --system") && runs.contains(&format!(" {user}")),
        "{runs}"
    );
    let volume = one(runtime, "VOLUME");
    assert!(
        runs.contains(&format!("chown {user}:{user} {volume}")),
        "{runs}"
    );

    // The command: `otter serve` on the volume, listening on every interface at the exposed ports.
    let entrypoint = exec_form(one(runtime, "ENTRYPOINT"));
    assert_eq!(entrypoint, [bin]);
    let cmd = exec_form(one(runtime, "CMD"));
    assert_eq!(cmd[0], "serve");
    let flag = |name: &str| {
        let at = cmd
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("CMD has no {name}"));
        cmd[at + 1].clone()
    };
    assert_eq!(flag("--data-dir"), volume);
    let mut ports = Vec::new();
    for listen in ["--mqtt-listen", "--http-listen"] {
        let addr = flag(listen);
        let (host, port) = addr.rsplit_once(':').unwrap();
        assert_eq!(
            host, "0.0.0.0",
            "{listen} {addr}: reachable from outside the container"
        );
        ports.push(port.to_owned());
    }
    let exposed: Vec<&str> = one(runtime, "EXPOSE").split_whitespace().collect();
    assert_eq!(
        exposed, ports,
        "EXPOSE names the ports the command listens on"
    );

    // The binary built here runs that command: the same flags, with port 0 and a temporary
    // folder in place of the image's, serves (announces its addresses).
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = cmd
        .iter()
        .map(|a| {
            if *a == volume {
                dir.path().to_str().unwrap().to_owned()
            } else if a.starts_with("0.0.0.0:") {
                "0.0.0.0:0".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut server = Running(
        Command::new(OTTER)
            .args(&args)
            .env_remove("OTTER_TOKEN")
            .env_remove("OTTER_DATA_DIR")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = Vec::new();
    let announced = BufReader::new(server.0.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .inspect(|l| log.push(l.clone()))
        .any(|l| l.starts_with("otter: MQTT on "));
    assert!(
        announced,
        "otter {args:?} exited without serving:\n{}",
        log.join("\n")
    );
    assert!(
        dir.path().join("admin-token").is_file(),
        "it made its data folder"
    );
}
