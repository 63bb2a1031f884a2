//! The web console from the server side: sign-in and sessions, pages rendered from the store
//! (escaped, paged and counted in SQL at 20,000 devices), the campaign event stream and the
//! audit log. The browser side is e2e/console (headless chromium).

use crate::common::{TestServer, start};
use otter_core::{DeviceName, Module, ProductId, Version};
use otter_protocol::Dialect;
use otter_store::VersionReport;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in through the form; returns the session cookie (`name=value`).
async fn sign_in(server: &TestServer) -> String {
    let resp = no_redirects()
        .post(server.url("/login"))
        .form(&[("token", server.token.as_str()), ("next", "/products")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/products");
    let cookie = session_set_cookie(&resp);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: not Secure: {cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

/// The `Set-Cookie` of the console session in a response.
fn session_set_cookie(resp: &reqwest::Response) -> String {
    let cookies: Vec<&str> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.starts_with("otter_session="))
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    cookies[0].to_owned()
}

/// GET a console page with the session; returns status and HTML.
async fn page(server: &TestServer, cookie: &str, path: &str) -> (u16, String) {
    let resp = no_redirects()
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn pages_need_a_session_and_the_form_gives_one() {
    let server = start().await;
    server.device(Dialect::Aliyun, "Prod1", "dev1").await;
    let client = no_redirects();

    let resp = client.get(server.url("/products")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/login?next=%2Fproducts");
    let login = client.get(server.url("/login")).send().await.unwrap();
    assert!(login.text().await.unwrap().contains(r#"name="token""#));

    let wrong = client
        .post(server.url("/login"))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not the admin token or a live API token.")
    );
    let bad_cookie = page(&server, "otter_session=nope", "/products").await;
    assert_eq!(bad_cookie.0, 303, "a wrong cookie is no session");
    let old_cookie = page(
        &server,
        &format!("otter_token={}", server.token),
        "/products",
    )
    .await;
    assert_eq!(old_cookie.0, 303, "the token itself is no session cookie");

    let cookie = sign_in(&server).await;
    let (status, html) = page(&server, &cookie, "/products").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"<tr data-product="Prod1">"#), "{html}");
    assert_eq!(page(&server, &cookie, "/").await.0, 303);

    // After sign-in only a local path is followed.
    let resp = client
        .post(server.url("/login"))
        .form(&[
            ("token", server.token.as_str()),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/products");

    // The API takes the session cookie too; a change made with it needs the console's header.
    let api = client
        .get(server.url("/api/v1/products"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 200);
    let forged = client
        .post(server.url("/api/v1/products"))
        .header("cookie", &cookie)
        .json(&json!({"id": "Forged1", "dialect": "aliyun"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let body: Value = forged.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("X-Otter-Console: 1"),
        "{body}"
    );
    let made = client
        .post(server.url("/api/v1/products"))
        .header("cookie", &cookie)
        .header("x-otter-console", "1")
        .json(&json!({"id": "Console1", "dialect": "aliyun"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201, "{:?}", made.text().await);

    // Sign-out revokes the session: the same cookie opens nothing any more.
    let out = client
        .post(server.url("/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(session_set_cookie(&out).contains("Max-Age=0"));
    assert_eq!(page(&server, &cookie, "/products").await.0, 303);
    let api = client
        .get(server.url("/api/v1/products"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
    let js = client
        .get(server.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript");
    let js = js.text().await.unwrap();
    assert!(js.contains("X-Otter-Console"));
    assert!(
        !js.contains("document.cookie"),
        "the script never reads the session"
    );
}

#[tokio::test]
async fn pages_escape_what_devices_and_operators_typed() {
    let server = start().await;
    server.device(Dialect::Aliyun, "Prod1", "dev1").await;
    let (status, _) = server
        .api(
            reqwest::Method::PUT,
            "/products/Prod1/devices/dev1/tags",
            Some(json!({ "add": ["<script>alert(1)</script>"] })),
        )
        .await;
    assert_eq!(status, 200);
    let cookie = sign_in(&server).await;
    for path in [
        "/products/Prod1/devices/dev1",
        "/products/Prod1/devices",
        "/audit",
    ] {
        let (status, html) = page(&server, &cookie, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path} unescaped");
        assert!(html.contains("&lt;script&gt;alert(1)"), "{path}: {html}");
    }
    let (status, html) = page(&server, &cookie, "/products/Prod1/devices/nobody").await;
    assert_eq!(status, 404);
    assert!(html.contains("device Prod1/nobody not found"));
    let (status, _) = page(&server, &cookie, "/campaigns/1/rows?state=bogus").await;
    assert_eq!(status, 404, "unknown campaign first");
}

#[tokio::test]
async fn twenty_thousand_devices_are_counted_in_sql_and_paged() {
    const FLEET: usize = 20_000;
    let server = start().await;
    server.device(Dialect::Aliyun, "Big1", "seed").await;
    // Registered straight in the database: 20,000 API calls would only test the API.
    let store = otter_store::Store::open_sqlite(&server.dir.path().join("otter.db"))
        .await
        .unwrap();
    let product = ProductId::parse("Big1").unwrap();
    let (v1, v2) = (
        Version::parse("1.0.0").unwrap(),
        Version::parse("2.0.0").unwrap(),
    );
    let mut reports = Vec::new();
    for i in 1..FLEET {
        let name = DeviceName::parse(format!("d{i:05}")).unwrap();
        store.create_device(&product, &name, "s").await.unwrap();
        let version = if i % 2 == 0 { &v1 } else { &v2 };
        reports.push(VersionReport {
            product: product.clone(),
            device: name,
            module: Module::default(),
            version: version.clone(),
            at: otter_store::now_ms().into(),
        });
    }
    store.record_versions(&reports).await.unwrap();
    let cookie = sign_in(&server).await;

    let started = Instant::now();
    let (status, html) = page(&server, &cookie, "/products/Big1/devices").await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(html.contains("<strong>20000</strong> devices match"));
    assert_eq!(
        html.matches("<tr><td><a href=\"/products/Big1/devices/")
            .count(),
        50
    );
    assert!(html.contains("1–50 of 20000"));
    eprintln!("device list page of 20,000 devices rendered in {took:?}");

    let (_, html) = page(
        &server,
        &cookie,
        "/products/Big1/devices?version=2.0.0&offset=9950",
    )
    .await;
    assert!(
        html.contains("<strong>10000</strong> devices match"),
        "{html}"
    );
    assert!(html.contains("9951–10000 of 10000"));
    assert!(!html.contains("rel=\"next\""));
    let (_, html) = page(&server, &cookie, "/products/Big1/devices?version=%23none").await;
    assert!(
        html.contains("<strong>1</strong> devices match"),
        "the seed never reported"
    );
    let (_, html) = page(&server, &cookie, "/products/Big1/devices?q=d1999&online=no").await;
    assert!(
        html.contains("<strong>10</strong> devices match"),
        "d19990…d19999"
    );

    let (_, html) = page(&server, &cookie, "/products/Big1").await;
    assert!(html.contains("10000 (50.0%)"), "chart bar of 2.0.0");
    assert!(html.contains("9999 (50.0%)"), "chart bar of 1.0.0");
    assert!(html.contains(r#"data-version="never reported""#));
}

/// A product with `n` devices, firmware 1.1.0 and a campaign (not started until tomorrow).
async fn scheduled_campaign(server: &TestServer, n: usize) -> i64 {
    for i in 0..n {
        server
            .device(Dialect::Aliyun, "Prod1", &format!("dev{i}"))
            .await;
    }
    server.upload("Prod1", "1.1.0", b"image").await;
    let devices: Vec<String> = (0..n).map(|i| format!("dev{i}")).collect();
    let start = otter_store::now_ms() + 86_400_000;
    let created = server
        .post(
            "/campaigns",
            json!({ "product": "Prod1", "version": "1.1.0", "selection": { "devices": devices },
                    "skip_verification": true, "strategy": { "start_at_ms": start } }),
        )
        .await;
    created["id"].as_i64().unwrap()
}

/// Reads server-sent events until `until` holds for one `campaign` event; returns them all.
async fn read_events(resp: &mut reqwest::Response, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + crate::common::WAIT;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.contains("event: campaign") {
                let data = block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                let event: Value = serde_json::from_str(data).unwrap();
                let done = until(&event);
                events.push(event);
                if done {
                    return events;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .expect("stream still open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn campaign_stream_sends_changes_and_ends_with_the_campaign() {
    let server = start().await;
    let id = scheduled_campaign(&server, 3).await;
    let unauthorized = server
        .client
        .get(server.url(&format!("/api/v1/campaigns/{id}/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    let mut resp = server
        .client
        .get(server.url(&format!("/api/v1/campaigns/{id}/stream")))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = read_events(&mut resp, |_| true).await;
    assert_eq!(first[0]["state"], "scheduled");
    assert_eq!(first[0]["counts"]["queued"], 3);
    assert_eq!(first[0]["total"], 3);

    server
        .post(&format!("/campaigns/{id}/pause"), json!({}))
        .await;
    let paused = read_events(&mut resp, |e| e["state"] == "paused").await;
    assert_eq!(paused.last().unwrap()["reason"], "paused by operator");
    server
        .post(&format!("/campaigns/{id}/cancel"), json!({}))
        .await;
    let last = read_events(&mut resp, |e| e["state"] == "canceled").await;
    assert_eq!(last.last().unwrap()["counts"]["canceled"], 3);
    let end = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "no more events after the end");

    let missing = server
        .client
        .get(server.url("/api/v1/campaigns/999/stream"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn campaign_page_and_rows_render_counts_and_filter_by_state() {
    let server = start().await;
    let id = scheduled_campaign(&server, 2).await;
    let cookie = sign_in(&server).await;
    let (status, html) = page(&server, &cookie, &format!("/campaigns/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("data-campaign=\"{id}\"")));
    assert!(html.contains(r#"<dd data-count="queued">2</dd>"#), "{html}");
    assert!(html.contains(r#"data-action="cancel""#));
    server
        .post(&format!("/campaigns/{id}/cancel"), json!({}))
        .await;
    let (_, rows) = page(
        &server,
        &cookie,
        &format!("/campaigns/{id}/rows?state=canceled"),
    )
    .await;
    assert!(rows.starts_with("<div id=\"device-table\""), "{rows}");
    assert_eq!(rows.matches("data-state=\"canceled\"").count(), 2);
    let (_, rows) = page(
        &server,
        &cookie,
        &format!("/campaigns/{id}/rows?state=queued"),
    )
    .await;
    assert!(rows.contains("No device in this state."));
    let (status, _) = page(
        &server,
        &cookie,
        &format!("/campaigns/{id}/rows?state=bogus"),
    )
    .await;
    assert_eq!(status, 400);
    for path in [
        "/campaigns".to_owned(),
        "/campaigns/new".to_owned(),
        "/campaigns/new?product=Prod1".to_owned(),
        "/products/Prod1/firmware".to_owned(),
    ] {
        let (status, html) = page(&server, &cookie, &path).await;
        assert_eq!(status, 200, "{path}: {html}");
    }
}

#[tokio::test]
async fn operator_actions_are_in_the_audit_log() {
    let server = start().await;
    let id = scheduled_campaign(&server, 1).await;
    server
        .post(&format!("/campaigns/{id}/pause"), json!({}))
        .await;
    server
        .post(&format!("/campaigns/{id}/resume"), json!({}))
        .await;
    server
        .post(&format!("/campaigns/{id}/cancel"), json!({}))
        .await;
    sign_in(&server).await;
    let log = server.get("/audit").await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "console.sign_in",
            "campaign.cancel",
            "campaign.resume",
            "campaign.pause",
            "campaign.create",
            "firmware.upload",
            "device.create",
            "product.create"
        ]
    );
    let campaigns = server.get("/audit?action=campaign.&limit=2").await;
    assert_eq!(campaigns.as_array().unwrap().len(), 2);
    assert_eq!(campaigns[0]["subject"], format!("campaign #{id}"));
    let upload = &log[5];
    assert_eq!(upload["subject"], "Prod1 1.1.0");
    assert_eq!(upload["detail"]["size"], 5);
    assert_eq!(upload["actor"], "admin");
}

/// The product page says when its devices cannot download: links carry a port (the test server's
/// own) that Alibaba's and Tencent's C SDKs cannot dial. EnOS devices can; no port, no warning.
#[tokio::test]
async fn product_page_warns_when_links_carry_a_port_its_sdks_cannot_dial() {
    let server = start().await;
    server.device(Dialect::Aliyun, "AliProd", "dev1").await;
    server.device(Dialect::Tencent, "TcProd", "dev1").await;
    server.device(Dialect::Enos, "EnProd", "dev1").await;
    let cookie = sign_in(&server).await;
    let port = format!("carry port {}", server.http.port());
    let (_, html) = page(&server, &cookie, "/products/AliProd").await;
    assert!(html.contains(r#"id="link-port""#), "{html}");
    assert!(html.contains(&port) && html.contains("Alibaba"), "{html}");
    let (_, html) = page(&server, &cookie, "/products/TcProd").await;
    assert!(html.contains(&port) && html.contains("Tencent"), "{html}");
    let (_, html) = page(&server, &cookie, "/products/EnProd").await;
    assert!(!html.contains("link-port"), "{html}");

    let server =
        crate::common::start_with(|c| c.public_url = Some("http://127.0.0.1:80/".into())).await;
    server.device(Dialect::Aliyun, "AliProd", "dev1").await;
    let cookie = sign_in(&server).await;
    let (status, html) = page(&server, &cookie, "/products/AliProd").await;
    assert_eq!(status, 200);
    assert!(!html.contains("link-port"), "{html}");
}

/// Issue 19, finding 1: whatever `next` holds, signing in leads to a path of this server, never
/// to another origin (a browser drops tabs and newlines and reads `\` as `/` in `Location`), and
/// never answers 500 (CR, LF and DEL cannot go into a header).
#[tokio::test]
async fn sign_in_only_ever_leads_to_a_path_of_this_server() {
    let server = start().await;
    let client = no_redirects();
    let origin = url::Url::parse(&server.url("/")).unwrap();
    let hostile = [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\r/evil.example",
        "/\x7f/evil.example",
        "/\u{0}/evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "//evil.example",
        "///evil.example",
        "/.//evil.example",
        "/..//evil.example",
        "https://evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        " /evil",
        "/products\r\nSet-Cookie: x=1",
    ];
    for next in hostile {
        let resp = client
            .post(server.url("/login"))
            .form(&[("token", server.token.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "next {next:?}");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with('/')
                && !location.starts_with("//")
                && !location.contains(|c: char| c.is_control() || c == '\\'),
            "next {next:?} gave Location {location:?}"
        );
        let resolved = origin.join(&location).unwrap();
        assert_eq!(
            resolved.origin(),
            origin.origin(),
            "next {next:?} gave Location {location:?}, which leaves the server"
        );
        session_set_cookie(&resp);

        // The form carries only the sanitised target too.
        let form = client
            .get(server.url("/login"))
            .query(&[("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(form.status().as_u16(), 200, "next {next:?}");
        let html = form.text().await.unwrap();
        assert!(!html.contains("evil.example"), "next {next:?}: {html}");
    }

    // Local targets survive, query included (rebuilt, percent-encoded).
    for (next, expected) in [
        ("/devices?product=P1", "/devices?product=P1"),
        ("/campaigns/7", "/campaigns/7"),
        ("/devices?q=a b", "/devices?q=a%20b"),
        ("/a/../products", "/products"),
    ] {
        let resp = client
            .post(server.url("/login"))
            .form(&[("token", server.token.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(resp.headers()["location"], expected, "next {next:?}");
    }
}
