//! The dependency invariants of ARCHITECTURE.md, checked on the workspace's real dependency graph
//! (`cargo metadata --format-version 1`, read with serde_json: the few fields used here —
//! packages, workspace members and the resolve graph's edges with their kinds — are stable
//! parts of cargo's documented format, and the `cargo_metadata` crate would be another
//! dependency for no more than that).
//!
//! Only normal dependencies count, followed transitively: what a crate links. Dev-dependencies
//! (tests may use OpenSSL, say) and build-dependencies are not followed. A broken invariant fails
//! with the crate and the whole path to the forbidden dependency.
//!
//! To add an invariant, add one line to [`RULES`].

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Command;

/// Crates that do I/O or run an async runtime: `otter-protocol` and `otter-core` are pure.
const IO: &[&str] = &[
    "tokio",
    "tokio-*",
    "mio",
    "socket2",
    "async-std",
    "smol",
    "hyper",
    "hyper-*",
    "h2",
    "reqwest",
    "axum",
    "axum-*",
    "tower",
    "tower-*",
    "rmqtt",
    "rmqtt-*",
    "rumqttc",
    "sqlx",
    "sqlx-*",
    "libsqlite3-sys",
    "object_store",
    "openssl",
    "openssl-sys",
    "rustls",
];
const RMQTT: &[&str] = &["rmqtt", "rmqtt-*"];
const SQLX: &[&str] = &["sqlx", "sqlx-*"];
const OPENSSL: &[&str] = &["openssl", "openssl-sys"];

enum Rule {
    /// The crate depends on none of these, directly or not.
    Never(&'static str, &'static [&'static str]),
    /// These are reached only through the crate: no other workspace crate depends on them except
    /// by way of it.
    OnlyThrough(&'static [&'static str], &'static str),
    /// A crate for tests only: no workspace crate has it as a normal dependency, so nothing it
    /// depends on ships and the other rules do not look at it.
    TestsOnly(&'static str),
}
use Rule::{Never, OnlyThrough, TestsOnly};

/// ARCHITECTURE.md's invariants. Names end in `*` to match a family of crates.
const RULES: &[Rule] = &[
    Never("otter-protocol", IO),
    Never("otter-core", IO),
    Never("otter-api", IO),
    Never("otter-http", RMQTT),
    Never("otter-engine", RMQTT),
    Never("otter-mqtt", RMQTT),
    OnlyThrough(RMQTT, "otter-broker"),
    OnlyThrough(SQLX, "otter-store"),
    OnlyThrough(OPENSSL, "otter-psk"),
    TestsOnly("otter-testkit"),
];

/// The workspace's dependency graph: package id → (name, its normal dependencies' ids).
struct Graph {
    names: BTreeMap<String, String>,
    edges: BTreeMap<String, Vec<String>>,
    /// Build dependencies (what a crate's build script links), by package id.
    build_edges: BTreeMap<String, Vec<String>>,
    /// Workspace members by name.
    members: BTreeMap<String, String>,
}

impl Graph {
    fn load() -> Graph {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--manifest-path",
                manifest,
            ])
            .output()
            .expect("running cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
        let names: BTreeMap<String, String> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (str_of(&p["id"]), str_of(&p["name"])))
            .collect();
        let members = meta["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| (names[id.as_str().unwrap()].clone(), str_of(id)))
            .collect();
        let mut edges = BTreeMap::new();
        let mut build_edges = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
            // `kind` is null for a normal dependency ("dev" and "build" otherwise).
            let of_kind = |kind: Option<&str>| -> Vec<String> {
                node["deps"]
                    .as_array()
                    .expect("deps")
                    .iter()
                    .filter(|d| {
                        d["dep_kinds"]
                            .as_array()
                            .expect("dep_kinds")
                            .iter()
                            .any(|k| k["kind"].as_str() == kind)
                    })
                    .map(|d| str_of(&d["pkg"]))
                    .collect()
            };
            edges.insert(str_of(&node["id"]), of_kind(None));
            build_edges.insert(str_of(&node["id"]), of_kind(Some("build")));
        }
        Graph {
            names,
            edges,
            build_edges,
            members,
        }
    }

    /// The shortest path of normal dependencies from `from` to a crate matching `targets`, never
    /// passing through `avoid`; as crate names.
    fn path(&self, from: &str, targets: &[&str], avoid: Option<&str>) -> Option<Vec<String>> {
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut seen = BTreeSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(id) = queue.pop_front() {
            if id != from && matches(&self.names[id], targets) {
                let mut path = vec![self.names[id].clone()];
                let mut at = id;
                while let Some(&up) = parent.get(at) {
                    path.push(self.names[up].clone());
                    at = up;
                }
                path.reverse();
                return Some(path);
            }
            for dep in self.edges.get(id).into_iter().flatten() {
                if Some(self.names[dep].as_str()) == avoid || !seen.insert(dep) {
                    continue;
                }
                parent.insert(dep, id);
                queue.push_back(dep);
            }
        }
        None
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().expect("a string").to_owned()
}

fn matches(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// Every broken invariant, one line each.
fn violations(graph: &Graph) -> Vec<String> {
    let tests_only: Vec<&str> = RULES
        .iter()
        .filter_map(|rule| match *rule {
            TestsOnly(krate) => Some(krate),
            _ => None,
        })
        .collect();
    let mut broken = Vec::new();
    for rule in RULES {
        match *rule {
            Never(krate, forbidden) => {
                let id = &graph.members[krate];
                if let Some(path) = graph.path(id, forbidden, None) {
                    broken.push(format!(
                        "{krate} must not depend on {}: {}",
                        path.last().unwrap(),
                        path.join(" -> ")
                    ));
                }
            }
            OnlyThrough(deps, through) => {
                for (name, id) in &graph.members {
                    if name == through || tests_only.contains(&name.as_str()) {
                        continue;
                    }
                    if let Some(path) = graph.path(id, deps, Some(through)) {
                        broken.push(format!(
                            "{name} reaches {} other than through {through}: {}",
                            path.last().unwrap(),
                            path.join(" -> ")
                        ));
                    }
                }
            }
            TestsOnly(krate) => {
                for (name, id) in &graph.members {
                    if let Some(path) = graph.path(id, &[krate], None) {
                        broken.push(format!(
                            "{name} must have {krate} as a dev-dependency only: {}",
                            path.join(" -> ")
                        ));
                    }
                }
            }
        }
    }
    broken
}

#[test]
fn dependency_invariants_hold() {
    let graph = Graph::load();
    let broken = violations(&graph);
    assert!(
        broken.is_empty(),
        "ARCHITECTURE.md's dependency invariants are broken (normal dependencies):\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn every_crate_the_rules_name_exists() {
    let graph = Graph::load();
    for rule in RULES {
        let krate = match *rule {
            Never(krate, _) | OnlyThrough(_, krate) | TestsOnly(krate) => krate,
        };
        assert!(
            graph.members.contains_key(krate),
            "{krate} is named in RULES but is not a workspace member (a rule about it would \
             never run; if it was renamed, rename it in RULES)"
        );
    }
}

/// README's set-up needs nothing before `cargo`: OpenSSL (for TLS-PSK) is built from source by
/// the `openssl` crate's `vendored` feature, so `openssl-sys` must build `openssl-src` and never
/// look for the system's headers.
#[test]
fn openssl_is_built_from_source() {
    let graph = Graph::load();
    let ids: Vec<&String> = graph
        .names
        .iter()
        .filter(|(id, name)| *name == "openssl-sys" && graph.edges.contains_key(*id))
        .map(|(id, _)| id)
        .collect();
    assert!(
        !ids.is_empty(),
        "no openssl-sys in the graph: update this test"
    );
    for id in ids {
        let builds = &graph.build_edges[id];
        assert!(
            builds.iter().any(|d| graph.names[d] == "openssl-src"),
            "{id} builds against the system's OpenSSL (no openssl-src): enable the `openssl` \
             crate's `vendored` feature"
        );
    }
}

#[test]
fn the_checker_finds_a_path_and_honours_the_way_through() {
    // a -> b -> tokio, a -> c -> rmqtt-codec: a reaches both; b is the way to tokio.
    let ids = ["a", "b", "c", "tokio", "rmqtt-codec"];
    let graph = Graph {
        names: ids.iter().map(|&i| (i.into(), i.into())).collect(),
        edges: BTreeMap::from([
            ("a".into(), vec!["b".into(), "c".into()]),
            ("b".into(), vec!["tokio".into()]),
            ("c".into(), vec!["rmqtt-codec".into()]),
        ]),
        build_edges: BTreeMap::new(),
        members: BTreeMap::from([("a".into(), "a".into())]),
    };
    assert_eq!(graph.path("a", IO, None).unwrap(), ["a", "b", "tokio"]);
    assert_eq!(
        graph.path("a", RMQTT, None).unwrap(),
        ["a", "c", "rmqtt-codec"]
    );
    assert_eq!(graph.path("a", &["tokio"], Some("b")), None);
    assert_eq!(graph.path("b", SQLX, None), None);
}
