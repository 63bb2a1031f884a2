//! Transport security against a real `otter serve`: MQTT over TLS, client-certificate devices,
//! HTTPS downloads, plaintext switched off, and Tencent's TLS-PSK — with a test PKI made by rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{IMAGE_LEN, WAIT, image, md5_hex};
use bytes::BytesMut;
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_server::{Application, ServeConfig, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rumqttc::mqttbytes::v4::{Connect, Login, Packet as WirePacket, Publish as WirePublish};
use rumqttc::tokio_rustls::rustls;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const ANY_PORT: &str = "127.0.0.1:0";

// ---------------------------------------------------------------------------------------------
// Test PKI

/// A CA that signs a server certificate and device certificates, written as PEM files.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca, ca_key }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf certificate; returns the paths of its PEM chain and key.
    fn issue(
        &self,
        file: &str,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn device(&self, file: &str, cn: &str) -> (PathBuf, PathBuf) {
        self.issue(file, cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A rustls client trusting `ca`, optionally presenting a device certificate.
fn client_config(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca) {
        roots.add(cert).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder
                .with_client_auth_cert(read_certs(cert), key)
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

// ---------------------------------------------------------------------------------------------
// A server with TLS listeners, and an admin client over whichever HTTP it serves

struct TlsServer {
    app: Addrs,
    pki: Pki,
    token: String,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Addrs {
    mqtt: SocketAddr,
    mqtt_tls: Option<SocketAddr>,
    mqtt_psk: Option<SocketAddr>,
    https: Option<SocketAddr>,
    http: SocketAddr,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every TLS listener on; `configure` may switch things off or on.
async fn start(configure: impl FnOnce(&mut ServeConfig, &Pki)) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "otter-test-ca");
    let (cert, key) = pki.issue(
        "server",
        "localhost",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let mut config = ServeConfig::ephemeral(dir.path().join("data"));
    let any: SocketAddr = ANY_PORT.parse().unwrap();
    config.tls = TlsConfig {
        cert: Some(cert),
        key: Some(key),
        client_ca: None,
        mqtt_listen: Some(any),
        mqtt_psk_listen: Some(any),
        https_listen: Some(any),
        no_plain_mqtt: false,
        no_plain_http: false,
    };
    configure(&mut config, &pki);
    let app = Application::build(config).await.unwrap();
    let addrs = Addrs {
        mqtt: app.mqtt_addr(),
        mqtt_tls: app.mqtt_tls_addr(),
        mqtt_psk: app.mqtt_psk_addr(),
        https: app.https_addr(),
        http: app.http_addr(),
    };
    let token = app.admin_token().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca_path()).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = match addrs.https {
        Some(addr) => format!("https://localhost:{}", addr.port()),
        None => format!("http://{}", addrs.http),
    };
    TlsServer {
        app: addrs,
        pki,
        token,
        http,
        base,
        _dir: dir,
        stop: Some(stop),
    }
}

impl TlsServer {
    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "POST {path} → {}",
            resp.status()
        );
        resp.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// A device (and its product when new); returns its secret.
    async fn device(&self, dialect: Dialect, product: &str, device: &str) -> String {
        let status = self
            .http
            .get(format!("{}/api/v1/products/{product}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .status();
        if status.as_u16() == 404 {
            self.post(
                "/products",
                json!({ "id": product, "dialect": dialect.as_str() }),
            )
            .await;
        }
        let v = self
            .post(
                &format!("/products/{product}/devices"),
                json!({ "name": device }),
            )
            .await;
        v["secret"].as_str().unwrap().to_owned()
    }

    async fn upload(&self, product: &str, version: &str) {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/products/{product}/firmware?version={version}",
                self.base
            ))
            .bearer_auth(&self.token)
            .body(image())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }

    async fn upgrade(&self, product: &str, device: &str, version: &str) {
        self.post(
            "/campaigns",
            json!({ "product": product, "version": version, "selection": { "devices": [device] }, "skip_verification": true }),
        )
        .await;
    }

    /// Polls `device show` until `check` holds.
    async fn wait_show(&self, product: &str, device: &str, check: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self
                .get(&format!("/products/{product}/devices/{device}"))
                .await;
            if check(&v) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "never reached: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT over TLS with rumqttc

/// MQTT options for `addr` over TLS (server name `localhost`).
fn tls_options(client_id: &str, addr: SocketAddr, tls: rustls::ClientConfig) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, "localhost", addr.port());
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    opts
}

fn signed_options(
    dialect: Dialect,
    addr: &DeviceAddr,
    secret: &str,
    port: SocketAddr,
    tls: rustls::ClientConfig,
) -> MqttOptions {
    let creds = protocol::sign(dialect, addr, secret, 1_617_773_607_348);
    let mut opts = tls_options(&creds.client_id, port, tls);
    let password = String::from_utf8(creds.password.unwrap_or_default()).unwrap();
    opts.set_credentials(creds.username.unwrap_or_default(), password);
    opts
}

/// Connects; `Err` carries why no CONNACK 0 came.
async fn connect(opts: MqttOptions) -> Result<Device, String> {
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        match tokio::time::timeout(WAIT, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                return Ok(Device::spawn(client, eventloop));
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no CONNACK".into()),
        }
    }
}

struct Device {
    client: AsyncClient,
    inbox: tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    fn spawn(client: AsyncClient, mut eventloop: EventLoop) -> Self {
        let (tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    let value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let _ = tx.send((p.topic.clone(), value));
                }
            }
        });
        Self {
            client,
            inbox,
            task,
        }
    }

    async fn send(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    async fn next_on(&mut self, topic: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let (t, v) = self.inbox.recv().await.expect("connection closed");
                if t == topic {
                    return v;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {topic}"))
    }

    async fn nothing_for(&mut self, window: Duration) {
        if let Ok(Some(msg)) = tokio::time::timeout(window, self.inbox.recv()).await {
            panic!("unexpected message {msg:?}");
        }
    }
}

const VERSION_1: &str = r#"{"type": "report_version", "report":{"version":"1.0.0"}}"#;

// ---------------------------------------------------------------------------------------------
// (a) MQTT over TLS with a secret, and (c) the pushed https:// link downloads

#[tokio::test]
async fn device_over_tls_upgrades_and_downloads_over_https() {
    let server = start(|_, _| {}).await;
    let secret = server.device(Dialect::Tencent, "TLSPROD", "dev1").await;
    server.upload("TLSPROD", "1.1.0").await;
    let addr = DeviceAddr::new("TLSPROD", "dev1");
    let tls = client_config(&server.pki.ca_path(), None);
    let opts = signed_options(
        Dialect::Tencent,
        &addr,
        &secret,
        server.app.mqtt_tls.unwrap(),
        tls,
    );
    let mut dev = connect(opts).await.expect("TLS login");

    let (report, update) = ("$ota/report/TLSPROD/dev1", "$ota/update/TLSPROD/dev1");
    dev.send(report, VERSION_1).await;
    assert_eq!(dev.next_on(update).await["result_code"], 0);
    server.upgrade("TLSPROD", "dev1", "1.1.0").await;
    let push = dev.next_on(update).await;
    assert_eq!(push["type"], "update_firmware");
    let url = push["url"].as_str().unwrap();
    assert!(url.starts_with("https://"), "links default to https: {url}");

    // The link's host is the bound address (127.0.0.1): the certificate names that IP too.
    let resp = server
        .http
        .get(url)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    let tail = resp.bytes().await.unwrap();
    assert_eq!(tail.len(), IMAGE_LEN - 1000);
    assert_eq!(tail[..], image()[1000..]);
    let full = server
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(md5_hex(&full), md5_hex(&image()));
}

// ---------------------------------------------------------------------------------------------
// (b) and (c): plaintext switched off

#[tokio::test]
async fn plaintext_can_be_switched_off() {
    let free = free_port().await;
    let free_http = free_port().await;
    let server = start(|c, _| {
        c.mqtt_listen = free;
        c.http_listen = free_http;
        c.tls.no_plain_mqtt = true;
        c.tls.no_plain_http = true;
    })
    .await;
    // Nothing listens on the configured plaintext addresses.
    assert!(
        TcpStream::connect(free).await.is_err(),
        "plain MQTT refused"
    );
    assert!(
        TcpStream::connect(free_http).await.is_err(),
        "plain HTTP refused"
    );
    assert!(
        server.app.mqtt.ip().is_loopback(),
        "the broker keeps only a loopback listener"
    );
    assert_eq!(Some(server.app.http), server.app.https);

    // Plaintext MQTT sent to the TLS port gets no CONNACK.
    let mut tcp = TcpStream::connect(server.app.mqtt_tls.unwrap())
        .await
        .unwrap();
    let reply = mqtt_connect(&mut tcp, Connect::new("TLSPRODdev1")).await;
    assert!(
        reply.is_none(),
        "plaintext CONNECT on the TLS port must not be answered"
    );
    // Plain HTTP to the HTTPS port fails; HTTPS works.
    let plain = reqwest::get(format!("http://{}/healthz", server.app.https.unwrap())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let ok = server
        .http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
}

async fn free_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(ANY_PORT).await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------------
// (d) client certificates as device identity

#[tokio::test]
async fn client_certificate_identifies_the_device() {
    let server = start(|c, pki| {
        c.tls.client_ca = Some(pki.ca_path());
    })
    .await;
    server.device(Dialect::Aliyun, "a1CertProd", "dev1").await;
    server.device(Dialect::Aliyun, "a1CertProd", "dev2").await;
    let port = server.app.mqtt_tls.unwrap();
    let ca = server.pki.ca_path();

    // dev1's certificate, no secret at all.
    let dev1_cert = server.pki.device("dev1", "a1CertProd/dev1");
    let mut dev1 = connect(tls_options(
        "dev1-anything",
        port,
        client_config(&ca, Some(&dev1_cert)),
    ))
    .await
    .expect("a certificate login needs no secret");
    let (up, down) = (
        "/ota/device/inform/a1CertProd/dev1",
        "/ota/device/upgrade/a1CertProd/dev1",
    );
    dev1.send(up, r#"{"id":"1","params":{"version":"1.0.0"}}"#)
        .await;
    server
        .wait_show("a1CertProd", "dev1", |v| v["version"] == "1.0.0")
        .await;

    // dev2's certificate cannot publish as dev1, nor receive dev1's pushes.
    let dev2_cert = server.pki.device("dev2", "a1CertProd/dev2");
    let mut dev2 = connect(tls_options(
        "dev1",
        port,
        client_config(&ca, Some(&dev2_cert)),
    ))
    .await
    .expect("dev2 logs in as itself");
    dev2.client.subscribe(down, QoS::AtLeastOnce).await.unwrap();
    dev2.send(up, r#"{"id":"2","params":{"version":"9.9.9"}}"#)
        .await;
    server.upload("a1CertProd", "1.1.0").await;
    server.upgrade("a1CertProd", "dev1", "1.1.0").await;
    assert_eq!(dev1.next_on(down).await["data"]["version"], "1.1.0");
    dev2.nothing_for(Duration::from_millis(500)).await;
    server
        .wait_show("a1CertProd", "dev1", |v| v["version"] == "1.0.0")
        .await;

    // A certificate naming an unknown device is refused; so is one from another CA, and none.
    let ghost = server.pki.device("ghost", "a1CertProd/ghost");
    assert!(
        connect(tls_options("g", port, client_config(&ca, Some(&ghost))))
            .await
            .is_err()
    );
    let rogue = Pki::new(&server.pki.dir, "rogue-ca");
    let forged = rogue.device("forged", "a1CertProd/dev1");
    assert!(
        connect(tls_options("f", port, client_config(&ca, Some(&forged))))
            .await
            .is_err()
    );
    assert!(
        connect(tls_options("n", port, client_config(&ca, None)))
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// (e) Tencent TLS-PSK

/// A TLS-PSK client as Tencent's C SDK is one: TLS 1.2, PSK-AES128-CBC-SHA.
async fn psk_connect(
    addr: SocketAddr,
    identity: &str,
    key: Vec<u8>,
) -> Result<tokio_openssl::SslStream<TcpStream>, openssl::ssl::Error> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_cipher_list("PSK-AES128-CBC-SHA").unwrap();
    builder
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let identity = identity.as_bytes().to_vec();
    builder.set_psk_client_callback(move |_, _hint, id_out, key_out| {
        id_out[..identity.len()].copy_from_slice(&identity);
        id_out[identity.len()] = 0;
        key_out[..key.len()].copy_from_slice(&key);
        Ok(key.len())
    });
    let ssl = builder
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .use_server_name_indication(false)
        .into_ssl("localhost")
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut tls).connect().await?;
    Ok(tls)
}

/// Sends CONNECT; the CONNACK return code, or `None` when the connection ends without one.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    connect: Connect,
) -> Option<u8> {
    let mut out = BytesMut::new();
    connect.write(&mut out).unwrap();
    stream.write_all(&out).await.ok()?;
    let mut ack = [0u8; 4];
    match tokio::time::timeout(WAIT, stream.read_exact(&mut ack)).await {
        Ok(Ok(_)) if ack[..3] == [0x20, 0x02, 0x00] => Some(ack[3]),
        _ => None,
    }
}

/// The next PUBLISH's topic and JSON payload.
async fn next_publish<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> (String, Value) {
    tokio::time::timeout(WAIT, async {
        loop {
            match WirePacket::read(buf, 1 << 20) {
                Ok(WirePacket::Publish(p)) => {
                    return (p.topic, serde_json::from_slice(&p.payload).unwrap());
                }
                Ok(_) => continue,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    assert_ne!(stream.read_buf(buf).await.unwrap(), 0, "closed");
                }
                Err(e) => panic!("bad packet: {e:?}"),
            }
        }
    })
    .await
    .expect("a PUBLISH")
}

fn tencent_key(secret: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(secret)
        .unwrap()
}

#[tokio::test]
async fn tencent_psk_device_connects_and_reports() {
    let server = start(|_, _| {}).await;
    let secret = server.device(Dialect::Tencent, "PSKPROD", "dev1").await;
    let psk = server.app.mqtt_psk.unwrap();
    let identity = "PSKPRODdev1";

    let mut tls = psk_connect(psk, identity, tencent_key(&secret))
        .await
        .expect("PSK handshake");
    // As the C SDK does in PSK mode: a user name, no password.
    let mut connect = Connect::new(identity);
    connect.login = Some(Login::new(
        format!("{identity};21010406;abcde;9223372036854775807"),
        "",
    ));
    assert_eq!(mqtt_connect(&mut tls, connect).await, Some(0));
    let report = WirePublish::new(
        "$ota/report/PSKPROD/dev1",
        rumqttc::QoS::AtMostOnce,
        VERSION_1,
    );
    let mut out = BytesMut::new();
    report.write(&mut out).unwrap();
    tls.write_all(&out).await.unwrap();
    let (topic, rsp) = next_publish(&mut tls, &mut BytesMut::new()).await;
    assert_eq!(topic, "$ota/update/PSKPROD/dev1");
    assert_eq!(rsp["type"], "report_version_rsp");
    server
        .wait_show("PSKPROD", "dev1", |v| v["version"] == "1.0.0")
        .await;

    // A wrong key fails the handshake.
    let mut wrong = tencent_key(&secret);
    wrong[0] ^= 0xFF;
    assert!(psk_connect(psk, identity, wrong).await.is_err());
    // An unknown identity too.
    assert!(
        psk_connect(psk, "PSKPRODnobody", tencent_key(&secret))
            .await
            .is_err()
    );

    // A CONNECT naming another client id than the PSK identity is refused with CONNACK 5.
    server.device(Dialect::Tencent, "PSKPROD", "dev2").await;
    let mut tls = psk_connect(psk, identity, tencent_key(&secret))
        .await
        .unwrap();
    assert_eq!(
        mqtt_connect(&mut tls, Connect::new("PSKPRODdev2")).await,
        Some(5)
    );
}

/// Waits (bounded by a generous timeout, never asserting a duration) until the server closes
/// the connection: a read that ends or fails.
async fn closed_by_server<S: AsyncRead + Unpin>(mut stream: S, what: &str) {
    let mut buf = [0u8; 64];
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{what}: the server never closed the connection"
    );
}

/// Issue 19, finding 3: on every MQTT listener (plain, TLS, TLS-PSK), a connection that never
/// sends CONNECT is closed; one that completes the TLS handshake and then stays silent too.
#[tokio::test]
async fn connections_that_never_send_connect_are_closed_on_every_listener() {
    let server = start(|c, _| c.mqtt_connect_timeout = Duration::from_millis(300)).await;
    let plain = TcpStream::connect(server.app.mqtt).await.unwrap();
    let tls_raw = TcpStream::connect(server.app.mqtt_tls.unwrap())
        .await
        .unwrap();
    let psk_raw = TcpStream::connect(server.app.mqtt_psk.unwrap())
        .await
        .unwrap();
    let connector = rumqttc::tokio_rustls::TlsConnector::from(Arc::new(client_config(
        &server.pki.ca_path(),
        None,
    )));
    let tcp = TcpStream::connect(server.app.mqtt_tls.unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls_silent = connector.connect(name, tcp).await.expect("TLS handshake");

    closed_by_server(plain, "plain").await;
    closed_by_server(tls_raw, "TLS, no handshake").await;
    closed_by_server(tls_silent, "TLS, handshake then silence").await;
    closed_by_server(psk_raw, "TLS-PSK, no handshake").await;
}

/// The console's session cookie is `Secure` when the sign-in came over HTTPS (or a proxy says
/// it did), and not over plain HTTP, where a browser would drop a `Secure` cookie.
#[tokio::test]
async fn console_session_cookie_is_secure_over_https() {
    let server = start(|_, _| {}).await;
    let no_redirects = |builder: reqwest::ClientBuilder| {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server.pki.ca_path()).unwrap()).unwrap();
    let https = no_redirects(reqwest::Client::builder().add_root_certificate(ca));
    let plain = no_redirects(reqwest::Client::builder());
    let session_cookie = |resp: &reqwest::Response| -> String {
        assert_eq!(resp.status().as_u16(), 303);
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("otter_session="))
            .expect("a session cookie")
    };
    let form = [("token", server.token.as_str())];

    let over_tls = https
        .post(format!("{}/login", server.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    let cookie = session_cookie(&over_tls);
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");

    let plain_url = format!("http://{}/login", server.app.http);
    let over_plain = plain.post(&plain_url).form(&form).send().await.unwrap();
    assert!(!session_cookie(&over_plain).contains("Secure"));

    let proxied = plain
        .post(&plain_url)
        .header("x-forwarded-proto", "https")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(session_cookie(&proxied).contains("; Secure"));
}
