//! The OpenAPI document (`GET /api/v1/openapi.json`) against what the server and the CLI do:
//!
//! (a) every route the server answers is in the document, at the methods it answers: each
//!     documented operation reaches a handler, each other method of a documented path is 405,
//!     the API's source adds no route outside utoipa-axum's `routes!` (the one list the router
//!     and the document are both built from), and the routes the API promises are all there;
//! (b) every request and response body has a schema: a named component (or an array of one, or
//!     a plain value), no bare `Object`, every `$ref` resolving;
//! (c) the CLI's requests and answers are the documented ones: each `--json` answer of the CLI
//!     (the response read into its otter-api type and printed back) conforms to the documented
//!     response schema of the operation the command calls, field for field.

use otter_testkit::Running;
use otter_testkit::otter::Otter;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

const OTTER: Otter = Otter::new(env!("CARGO_BIN_EXE_otter"));

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Routes the API promises (method, path under /api/v1): the document must list each.
const PROMISED: &[(&str, &str)] = &[
    ("get", "/products"),
    ("post", "/products"),
    ("get", "/products/{product}"),
    ("patch", "/products/{product}"),
    ("get", "/products/{product}/keys"),
    ("post", "/products/{product}/keys"),
    ("get", "/products/{product}/devices"),
    ("post", "/products/{product}/devices"),
    ("get", "/products/{product}/devices/{device}"),
    ("put", "/products/{product}/devices/{device}/tags"),
    ("get", "/products/{product}/devices/{device}/history"),
    ("post", "/products/{product}/devices/{device}/secret"),
    ("get", "/products/{product}/firmware"),
    ("post", "/products/{product}/firmware"),
    ("post", "/products/{product}/firmware/verify"),
    ("post", "/products/{product}/firmware/signature"),
    ("get", "/campaigns"),
    ("post", "/campaigns"),
    ("get", "/campaigns/{id}"),
    ("get", "/campaigns/{id}/devices"),
    ("get", "/campaigns/{id}/stream"),
    ("post", "/campaigns/{id}/pause"),
    ("post", "/campaigns/{id}/resume"),
    ("post", "/campaigns/{id}/cancel"),
    ("get", "/tokens"),
    ("post", "/tokens"),
    ("delete", "/tokens/{id}"),
    ("get", "/operators"),
    ("post", "/operators"),
    ("delete", "/operators/{name}"),
    ("get", "/audit"),
    ("post", "/broker/authn"),
    ("post", "/broker/authz"),
];

/// Component properties that are free-form on purpose (their shape depends on another field).
const FREE_FORM: &[(&str, &str)] = &[("AuditEntry", "detail")];

struct Server {
    _dir: tempfile::TempDir,
    _server: Running,
    data: std::path::PathBuf,
    http: String,
    token: String,
    doc: Value,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, _, http) = OTTER.serve(&data, &["--broker-secret", "broker-sekrit"]);
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let url = format!("{http}/api/v1/openapi.json");
    let (status, body) = fetch("GET", &url, None, false);
    assert_eq!(status, 200, "{url}");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    Server {
        _dir: dir,
        _server: server,
        data,
        http,
        token,
        doc,
    }
}

/// `(status, body)` of one HTTP request (reqwest on a runtime of its own: these tests are sync).
fn fetch(method: &str, url: &str, token: Option<&str>, json_body: bool) -> (u16, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client.request(method.clone(), url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if json_body {
            req = req.header("content-type", "application/json").body("{}");
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    })
}

/// `(status, body)` of one request with the admin token (and `{}` as a JSON body but for GET).
fn request(s: &Server, method: &str, path: &str) -> (u16, String) {
    let url = format!("{}{path}", s.http);
    let (status, body) = fetch(method, &url, Some(&s.token), method != "GET");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn paths(doc: &Value) -> &Map<String, Value> {
    doc["paths"].as_object().expect("paths")
}

/// Fills a path template with values naming nothing (handlers answer 404 with a body).
fn fill(template: &str) -> String {
    template
        .replace("{product}", "NOSUCHPRODUCT")
        .replace("{device}", "nosuchdevice")
        .replace("{id}", "987654321")
}

#[test]
fn the_document_the_router_and_the_cli_agree() {
    let s = start();
    routes_are_documented(&s);
    bodies_have_schemas(&s.doc);
    cli_answers_are_the_documented_ones(&s);
}

/// (a)
fn routes_are_documented(s: &Server) {
    let documented: BTreeSet<(String, String)> = paths(&s.doc)
        .iter()
        .flat_map(|(path, ops)| {
            METHODS
                .iter()
                .filter(|m| ops.get(**m).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    for (method, path) in PROMISED {
        assert!(
            documented.contains(&(method.to_string(), format!("/api/v1{path}"))),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    for (path, ops) in paths(&s.doc) {
        assert!(path.starts_with("/api/v1/"), "{path}: not under /api/v1");
        for method in METHODS {
            let (status, body) = request(s, &method.to_uppercase(), &fill(path));
            if ops.get(method).is_some() {
                // A handler answered: never "no such route" (the router's bare 404) or 405.
                assert_ne!(status, 405, "{method} {path}: documented but not routed");
                assert!(
                    !(status == 404 && body.is_empty()),
                    "{method} {path}: documented but the router has no such route"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path}: answered ({status} {body}) but not documented"
                );
            }
        }
    }
    // No route is added beside the documented list: the API's modules route only through
    // utoipa-axum's `routes!` (the document itself is the one plain route).
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("../http/src/api");
    for entry in std::fs::read_dir(&api).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for needle in [".route(", ".route_service(", ".nest(", ".fallback("] {
            // The document's own route; the API nested under /api/v1 (router and document).
            let allowed = name == "openapi.rs" && matches!(needle, ".route(" | ".nest(")
                || name == "mod.rs" && needle == ".nest(";
            assert!(
                allowed || !text.contains(needle),
                "{name} adds a route with {needle}: routes go through utoipa-axum's routes! so that \
                 the OpenAPI document lists them"
            );
        }
    }
}

/// The component a `$ref` names.
fn component<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("{reference}: not a component"));
    doc["components"]["schemas"]
        .get(name)
        .unwrap_or_else(|| panic!("{reference}: no such component"))
}

/// A body schema: a component, an array of described items, or a plain value.
fn described(doc: &Value, schema: &Value, what: &str) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        component(doc, r);
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => described(doc, &schema["items"], what),
        Some("string" | "integer" | "number" | "boolean") => {}
        other => panic!("{what}: body without a schema ({other:?}: {schema})"),
    }
}

/// No bare object anywhere in a component (a free-form property only where meant).
fn no_bare_object(doc: &Value, schema: &Value, at: &str) {
    let Some(o) = schema.as_object() else { return };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        component(doc, r);
    }
    let bare = o.get("type").and_then(Value::as_str) == Some("object")
        && !o.contains_key("properties")
        && !o.contains_key("additionalProperties");
    let free = FREE_FORM
        .iter()
        .any(|(c, p)| at.ends_with(&format!("{c}.{p}")));
    assert!(!bare || free, "{at}: a bare object, no schema");
    for key in ["allOf", "oneOf", "anyOf"] {
        for (i, part) in o
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            no_bare_object(doc, part, &format!("{at}/{key}{i}"));
        }
    }
    for (name, p) in o
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        no_bare_object(doc, p, &format!("{at}.{name}"));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = o.get(key) {
            no_bare_object(doc, inner, &format!("{at}[{key}]"));
        }
    }
}

/// (b)
fn bodies_have_schemas(doc: &Value) {
    for (path, ops) in paths(doc) {
        for method in METHODS {
            let Some(op) = ops.get(method) else { continue };
            let what = format!("{method} {path}");
            if let Some(body) = op.get("requestBody") {
                let content = body["content"].as_object().expect("request content");
                assert!(!content.is_empty(), "{what}: request body without content");
                for (kind, c) in content {
                    described(doc, &c["schema"], &format!("{what} request {kind}"));
                }
            }
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{what}: no success response"
            );
            for (status, r) in responses {
                let content = r.get("content").and_then(Value::as_object);
                let content = content.unwrap_or_else(|| panic!("{what} {status}: no body schema"));
                for (kind, c) in content {
                    described(doc, &c["schema"], &format!("{what} {status} {kind}"));
                }
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        no_bare_object(doc, schema, name);
    }
}

/// Checks `value` against `schema`: every field documented, every required field present,
/// recursively (through `$ref`, `allOf` for flattened fields, `oneOf` for nullable ones).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return conforms(doc, component(doc, r), value, at);
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        if value.is_null() && variants.iter().any(|v| v["type"] == "null") {
            return;
        }
        let typed: Vec<&Value> = variants.iter().filter(|v| v["type"] != "null").collect();
        if typed.len() == 1 {
            return conforms(doc, typed[0], value, at);
        }
        return; // an enum of plain values
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // Flattened structs: the object's fields are the union of the parts'.
        let (mut known, mut required) = (BTreeSet::new(), BTreeSet::new());
        for part in parts {
            let part = resolve_object(doc, part, value);
            let Some(part) = part else { continue };
            known.extend(part.0);
            required.extend(part.1);
        }
        let obj = value
            .as_object()
            .unwrap_or_else(|| panic!("{at}: not an object"));
        let fields: BTreeSet<String> = obj.keys().cloned().collect();
        let undocumented: Vec<_> = fields.difference(&known).collect();
        assert!(
            undocumented.is_empty(),
            "{at}: undocumented fields {undocumented:?}"
        );
        let missing: Vec<_> = required.difference(&fields).collect();
        assert!(
            missing.is_empty(),
            "{at}: required fields missing {missing:?}"
        );
        for part in parts {
            let props = flat_properties(doc, part);
            for (name, p) in props {
                if let Some(v) = obj.get(&name) {
                    conforms(doc, &p, v, &format!("{at}.{name}"));
                }
            }
        }
        return;
    }
    match schema.get("type") {
        Some(t) if t == "array" || t.as_array().is_some_and(|t| t.contains(&"array".into())) => {
            if let Some(items) = value.as_array() {
                for (i, item) in items.iter().enumerate() {
                    conforms(doc, &schema["items"], item, &format!("{at}[{i}]"));
                }
            }
        }
        _ => {
            if let (Some(props), Some(obj)) = (
                schema.get("properties").and_then(Value::as_object),
                value.as_object(),
            ) {
                for key in obj.keys() {
                    assert!(props.contains_key(key), "{at}: undocumented field {key:?}");
                }
                for req in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let req = req.as_str().unwrap();
                    assert!(
                        obj.contains_key(req),
                        "{at}: required field {req:?} missing"
                    );
                }
                for (key, v) in obj {
                    conforms(doc, &props[key], v, &format!("{at}.{key}"));
                }
            }
        }
    }
}

/// The fields (all, required) an object part of an `allOf` documents; `None` for an optional
/// flattened part the value does not carry.
fn resolve_object(
    doc: &Value,
    part: &Value,
    value: &Value,
) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
    if let Some(r) = part.get("$ref").and_then(Value::as_str) {
        return resolve_object(doc, component(doc, r), value);
    }
    if let Some(variants) = part.get("oneOf").and_then(Value::as_array) {
        let typed = variants.iter().find(|v| v["type"] != "null")?;
        let fields = resolve_object(doc, typed, value)?;
        // Optional and flattened: present when its required fields are.
        let obj = value.as_object()?;
        return fields
            .1
            .iter()
            .all(|f| obj.contains_key(f))
            .then_some(fields);
    }
    if let Some(parts) = part.get("allOf").and_then(Value::as_array) {
        let (mut known, mut required) = (BTreeSet::new(), BTreeSet::new());
        for p in parts {
            if let Some((k, r)) = resolve_object(doc, p, value) {
                known.extend(k);
                required.extend(r);
            }
        }
        return Some((known, required));
    }
    let known = part
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let required = part
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((known, required))
}

/// Every property schema of an `allOf` part, flattened parts included.
fn flat_properties(doc: &Value, part: &Value) -> Vec<(String, Value)> {
    if let Some(r) = part.get("$ref").and_then(Value::as_str) {
        return flat_properties(doc, component(doc, r));
    }
    if let Some(variants) = part.get("oneOf").and_then(Value::as_array) {
        return variants
            .iter()
            .filter(|v| v["type"] != "null")
            .flat_map(|v| flat_properties(doc, v))
            .collect();
    }
    if let Some(parts) = part.get("allOf").and_then(Value::as_array) {
        return parts.iter().flat_map(|p| flat_properties(doc, p)).collect();
    }
    part.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The documented success schema of `method path` (path under /api/v1).
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][format!("/api/v1{path}")][method];
    let responses = op["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}: not documented"));
    let (_, ok) = responses
        .iter()
        .find(|(k, _)| k.starts_with('2'))
        .unwrap_or_else(|| panic!("{method} {path}: no success response"));
    &ok["content"]["application/json"]["schema"]
}

/// `otter args --json`, its one JSON document.
fn otter(s: &Server, args: &[&str]) -> Value {
    OTTER.json(&s.http, &s.data, args)
}

/// (c) Each command's `--json` answer against the documented answer of the call it makes.
fn cli_answers_are_the_documented_ones(s: &Server) {
    let doc = &s.doc;
    let check = |method: &str, path: &str, args: &[&str]| {
        let answer = otter(s, args);
        conforms(
            doc,
            response_schema(doc, method, path),
            &answer,
            &format!("otter {}", args.join(" ")),
        );
        answer
    };
    let firmware = s.data.join("../fw.bin");
    std::fs::write(&firmware, b"firmware image").unwrap();
    let firmware = firmware.to_str().unwrap();
    let p = "/products/{product}";
    let d = "/products/{product}/devices/{device}";
    check(
        "post",
        "/products",
        &["product", "create", "--id", "OAPI1", "--dialect", "aliyun"],
    );
    check("get", "/products", &["product", "list"]);
    check("get", p, &["product", "show", "--id", "OAPI1"]);
    check(
        "patch",
        p,
        &[
            "product",
            "set",
            "--id",
            "OAPI1",
            "--version-scheme",
            "numeric",
        ],
    );
    let dev = ["--product", "OAPI1", "--name", "dev1"];
    check(
        "post",
        "/products/{product}/devices",
        &[&["device", "create"][..], &dev].concat(),
    );
    check(
        "get",
        "/products/{product}/devices",
        &["device", "list", "--product", "OAPI1"],
    );
    check("get", d, &[&["device", "show"][..], &dev].concat());
    check(
        "put",
        &format!("{d}/tags"),
        &[&["device", "tag", "--add", "lab"][..], &dev].concat(),
    );
    check(
        "post",
        &format!("{d}/secret"),
        &[&["device", "rotate-secret"][..], &dev].concat(),
    );
    let upload = [
        "firmware",
        "upload",
        "--product",
        "OAPI1",
        "--version",
        "2.0",
        firmware,
    ];
    check("post", "/products/{product}/firmware", &upload);
    check(
        "get",
        "/products/{product}/firmware",
        &["firmware", "list", "--product", "OAPI1"],
    );
    let campaign = [
        "campaign",
        "create",
        "--product",
        "OAPI1",
        "--version",
        "2.0",
        "--device",
        "dev1",
        "--skip-verification",
    ];
    check(
        "post",
        "/campaigns",
        &[&campaign[..], &["--dry-run"]].concat(),
    );
    let created = check("post", "/campaigns", &campaign);
    let id = created["id"].to_string();
    check("get", "/campaigns", &["campaign", "list"]);
    // `campaign show` prints the campaign with its devices (two calls).
    let mut shown = otter(s, &["campaign", "show", &id]);
    let devices = shown.as_object_mut().unwrap().remove("devices").unwrap();
    let what = "otter campaign show";
    conforms(
        doc,
        response_schema(doc, "get", "/campaigns/{id}"),
        &shown,
        what,
    );
    let schema = response_schema(doc, "get", "/campaigns/{id}/devices");
    conforms(doc, schema, &devices, what);
    assert_eq!(
        devices.as_array().map(Vec::len),
        Some(1),
        "{what}: {devices}"
    );
    check("post", "/campaigns/{id}/pause", &["campaign", "pause", &id]);
    check(
        "post",
        "/campaigns/{id}/resume",
        &["campaign", "resume", &id],
    );
    check(
        "post",
        "/campaigns/{id}/cancel",
        &["campaign", "cancel", &id],
    );
    check(
        "get",
        &format!("{d}/history"),
        &[&["device", "history"][..], &dev].concat(),
    );
    let token = check(
        "post",
        "/tokens",
        &["token", "create", "--name", "ci", "--scope", "read"],
    );
    check("get", "/tokens", &["token", "list"]);
    check(
        "delete",
        "/tokens/{id}",
        &["token", "revoke", &token["id"].to_string()],
    );
    // `operator create` reads the password from stdin.
    let mut create = OTTER
        .admin(&s.http, &s.data)
        .args([
            "operator",
            "create",
            "ops1",
            "--scope",
            "read",
            "--password-stdin",
            "--json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(create.stdin.take().unwrap(), "a long enough password").unwrap();
    }
    let created = create.wait_with_output().unwrap();
    assert!(created.status.success(), "otter operator create failed");
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    conforms(
        doc,
        response_schema(doc, "post", "/operators"),
        &created,
        "otter operator create",
    );
    check("get", "/operators", &["operator", "list"]);
    check(
        "delete",
        "/operators/{name}",
        &["operator", "disable", "ops1"],
    );
    check("get", "/audit", &["audit"]);
}
