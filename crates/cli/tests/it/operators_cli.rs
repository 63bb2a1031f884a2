//! Operator accounts and console sessions through the `otter` binary, as an operator would use
//! them: `otter operator create/list/disable`, the console's sign-in form over HTTP (name and
//! password, or a token), the session cookie on pages and on the API (with the console's CSRF
//! header), sign-out and expiry; and `--admin-listen`, which keeps the API, the console and the
//! metrics off the devices' port while downloads go on there.

use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::OTTER;
use otter_testkit::Running;

const PASSWORD: &str = "correct horse battery staple";
const PRODUCT: &str = "a1Ops000001";

/// `otter operator create NAME --scope SCOPE --password-stdin`, the password written to stdin.
fn create_operator(http: &str, data: &Path, name: &str, scope: &str, password: &str) -> Output {
    let mut child = OTTER
        .admin(http, data)
        .args([
            "operator",
            "create",
            name,
            "--scope",
            scope,
            "--password-stdin",
        ])
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the console's sign-in form.
async fn post_login(http: &str, form: &[(&str, &str)]) -> reqwest::Response {
    no_redirects()
        .post(format!("{http}/login"))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Signs in through the form, which must succeed; returns the session's `Set-Cookie` and the
/// cookie to send back (`otter_session=…`).
async fn signed_in(http: &str, form: &[(&str, &str)]) -> (String, String) {
    let resp = post_login(http, form).await;
    assert_eq!(resp.status().as_u16(), 303, "{:?}", resp.text().await);
    let set_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("otter_session="))
        .expect("a session cookie");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    (set_cookie, cookie)
}

/// GET `path` with the session cookie; status and body.
async fn get(http: &str, cookie: &str, path: &str) -> (u16, String, Option<String>) {
    let resp = no_redirects()
        .get(format!("{http}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (resp.status().as_u16(), resp.text().await.unwrap(), location)
}

/// An API call made with the session cookie, as the console's script makes it (with the
/// `X-Otter-Console` header) or as a cross-site form would (without).
async fn api_with_cookie(
    http: &str,
    cookie: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
    console_header: bool,
) -> (u16, Value) {
    let mut request = no_redirects()
        .request(method, format!("{http}/api/v1{path}"))
        .header("cookie", cookie)
        .json(&body);
    if console_header {
        request = request.header("X-Otter-Console", "1");
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_to_the_console_and_is_named_in_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _, http) = OTTER.serve(&data, &[]);
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", PRODUCT, "--dialect", "aliyun"],
    );
    OTTER.json(
        &http,
        &data,
        &["device", "create", "--product", PRODUCT, "--name", "dev1"],
    );

    // A short password is refused with a clear message, and nothing is created.
    let short = create_operator(&http, &data, "alice", "operate", "eleven char");
    assert!(!short.status.success());
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(stderr.contains("at least 12 characters"), "{stderr}");

    let created = create_operator(&http, &data, "alice", "operate", PASSWORD);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(
        (created["name"].as_str(), created["scope"].as_str()),
        (Some("alice"), Some("operate"))
    );
    let again = create_operator(&http, &data, "alice", "admin", PASSWORD);
    assert!(!again.status.success(), "a taken name is refused");
    let listed = OTTER.json(&http, &data, &["operator", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "alice");
    assert!(
        !listed.to_string().contains("argon2"),
        "listings never carry the hash: {listed}"
    );

    // A wrong password opens nothing.
    let wrong = post_login(
        &http,
        &[("name", "alice"), ("password", "not the password!")],
    )
    .await;
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let html = wrong.text().await.unwrap();
    assert!(html.contains("Wrong operator name or password"), "{html}");
    assert!(
        html.contains(r#"value="alice""#),
        "the name is kept: {html}"
    );
    // A name with markup comes back escaped.
    let odd = post_login(&http, &[("name", "<b>x"), ("password", "whatever it is")]).await;
    let html = odd.text().await.unwrap();
    assert!(!html.contains("<b>x"), "{html}");

    // The right one opens a session: an HttpOnly cookie the pages and the API accept.
    let (set_cookie, cookie) = signed_in(
        &http,
        &[
            ("name", "alice"),
            ("password", PASSWORD),
            ("next", "/products"),
        ],
    )
    .await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "plain HTTP: no Secure: {set_cookie}"
    );
    let (status, html, _) = get(&http, &cookie, "/products").await;
    assert_eq!(status, 200);
    assert!(html.contains(PRODUCT), "{html}");

    // What the operator does through the console is theirs in the audit log.
    let tags = format!("/products/{PRODUCT}/devices/dev1/tags");
    let (status, body) = api_with_cookie(
        &http,
        &cookie,
        reqwest::Method::PUT,
        &tags,
        json!({"add": ["lab"]}),
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Without the console's header, a cookie-authenticated change is refused (CSRF).
    let (status, body) = api_with_cookie(
        &http,
        &cookie,
        reqwest::Method::PUT,
        &tags,
        json!({"add": ["forged"]}),
        false,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("X-Otter-Console: 1"),
        "{body}"
    );
    // The operator's scope holds through the console as through a token.
    let (status, body) = api_with_cookie(
        &http,
        &cookie,
        reqwest::Method::POST,
        "/products",
        json!({"id": "a1Ops000002", "dialect": "aliyun"}),
        true,
    )
    .await;
    assert_eq!(status, 403, "operate cannot create products: {body}");

    let audit = OTTER.json(&http, &data, &["audit"]);
    let by = |action: &str| -> Vec<String> {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(by("console.sign_in"), ["operator:alice"], "{audit}");
    assert_eq!(by("device.tags"), ["operator:alice"], "{audit}");
    assert_eq!(by("operator.create"), ["admin"], "{audit}");

    // Sign-out revokes the session: the same cookie is refused by pages and API alike.
    let out = no_redirects()
        .post(format!("{http}/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let (status, _, location) = get(&http, &cookie, "/products").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/login?next=%2Fproducts"));
    let (status, _, _) = get(&http, &cookie, "/api/v1/products").await;
    assert_eq!(status, 401);
    let audit = OTTER.json(&http, &data, &["audit", "--action", "console.sign_out"]);
    assert_eq!(audit[0]["actor"], "operator:alice", "{audit}");

    // Disabling the account ends its live sessions and its sign-ins.
    let (_, cookie) = signed_in(&http, &[("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(get(&http, &cookie, "/api/v1/products").await.0, 200);
    let disabled = OTTER.json(&http, &data, &["operator", "disable", "alice"]);
    assert!(disabled["disabled_at"].is_number(), "{disabled}");
    assert_eq!(get(&http, &cookie, "/api/v1/products").await.0, 401);
    assert_eq!(get(&http, &cookie, "/products").await.0, 303);
    let refused = post_login(&http, &[("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(refused.status().as_u16(), 401);

    // A token still signs in, and the audit names it.
    let token = admin_token(&data);
    signed_in(&http, &[("token", &token)]).await;
    let audit = OTTER.json(&http, &data, &["audit", "--action", "console.sign_in"]);
    assert_eq!(audit[0]["actor"], "admin", "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_session_expires_after_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _, http) = OTTER.serve(&data, &["--console-session-ttl", "3s"]);
    let token = admin_token(&data);
    let (set_cookie, cookie) = signed_in(&http, &[("token", &token)]).await;
    assert!(set_cookie.contains("Max-Age=3"), "{set_cookie}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut was_live = false;
    loop {
        let (status, _, _) = get(&http, &cookie, "/api/v1/products").await;
        match status {
            200 => was_live = true,
            401 => break,
            other => panic!("unexpected status {other}"),
        }
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(was_live, "the session worked before it expired");
    let (status, _, location) = get(&http, &cookie, "/products").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/login?next=%2Fproducts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_listener_the_device_port_serves_devices_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http, admin) = OTTER.serve_admin(&data, &[]);
    assert_ne!(http, admin);
    let token = admin_token(&data);
    let client = no_redirects();
    let status = |url: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The devices' port: no API, console or metrics.
    for path in [
        "/api/v1/products",
        "/api/v1/openapi.json",
        "/login",
        "/products",
        "/metrics",
    ] {
        assert_eq!(
            status(format!("{http}{path}")).await,
            404,
            "{path} on the device port"
        );
    }
    assert_eq!(status(format!("{http}/healthz")).await, 200);
    // The admin port: all of them (and no downloads).
    for path in [
        "/api/v1/products",
        "/api/v1/openapi.json",
        "/login",
        "/metrics",
        "/healthz",
    ] {
        assert_eq!(
            status(format!("{admin}{path}")).await,
            200,
            "{path} on the admin port"
        );
    }
    assert_eq!(
        status(format!("{admin}/products")).await,
        303,
        "console pages sign in first"
    );

    // The CLI talks to the admin port; a device downloads from the device port.
    OTTER.json(
        &admin,
        &data,
        &["product", "create", "--id", PRODUCT, "--dialect", "aliyun"],
    );
    let device = OTTER.json(
        &admin,
        &data,
        &["device", "create", "--product", PRODUCT, "--name", "dev1"],
    );
    let secret = device["secret"].as_str().unwrap().to_owned();
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![9u8; 100_000]).unwrap();
    OTTER.json(
        &admin,
        &data,
        &[
            "firmware",
            "upload",
            "--product",
            PRODUCT,
            "--version",
            "1.1.0",
            image.to_str().unwrap(),
        ],
    );
    let installed = dir.path().join("installed.bin");
    let _agent = Running(
        Command::new(OTTER)
            .args(["agent", "--broker", &mqtt, "--dialect", "aliyun"])
            .args([
                "--product",
                PRODUCT,
                "--device",
                "dev1",
                "--current-version",
                "1.0.0",
            ])
            .arg("--secret")
            .arg(&secret)
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .arg("--install-command")
            .arg(format!(
                "cp \"$OTTER_FIRMWARE_PATH\" {}",
                installed.display()
            ))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let show = ["device", "show", "--product", PRODUCT, "--name", "dev1"];
    wait_for(&admin, &data, &show, |v| v["online"] == true);
    OTTER.json(
        &admin,
        &data,
        &[
            "upgrade",
            "--product",
            PRODUCT,
            "--device",
            "dev1",
            "--version",
            "1.1.0",
        ],
    );
    let shown = wait_for(&admin, &data, &show, |v| {
        v["upgrade"]["state"] == "succeeded"
    });
    assert_eq!(shown["version"], "1.1.0");
    assert_eq!(std::fs::read(&installed).unwrap(), vec![9u8; 100_000]);
}

fn wait_for(http: &str, data: &Path, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = OTTER.json(http, data, args);
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never got there: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
