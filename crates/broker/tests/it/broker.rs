//! End-to-end tests of the broker rules with real MQTT clients over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{QUIET, WAIT, connect, long_id, qos, start, start_with};
use bytes::Bytes;
use otter_broker::{BrokerConfig, BrokerError, BrokerEvent};
use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, QoS, SubscribeReasonCode};

#[tokio::test]
async fn good_login_gets_connack_0_and_connected_event() {
    let mut t = start().await;
    let client = connect(t.broker.local_addr(), "dev-a", "sa", None).await;
    assert!(client.is_ok(), "CONNACK 0 expected");
    assert_eq!(t.next_event().await, BrokerEvent::Connected("A".into()));
    t.broker.shutdown().await;
}

#[tokio::test]
async fn long_client_id_is_accepted() {
    let mut t = start().await;
    let _c = t.online(&long_id(), "sl").await;
    t.broker.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_gets_connack_4() {
    let mut t = start().await;
    let err = connect(t.broker.local_addr(), "dev-a", "nope", None)
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(ConnectionError::ConnectionRefused(
                ConnectReturnCode::BadUserNamePassword
            ))
        ),
        "got {err:?}"
    );
    t.assert_no_event().await;
}

#[tokio::test]
async fn unknown_client_gets_connack_5() {
    let t = start().await;
    let err = connect(t.broker.local_addr(), "stranger", "x", None)
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(ConnectionError::ConnectionRefused(
                ConnectReturnCode::NotAuthorized
            ))
        ),
        "got {err:?}"
    );
}

#[tokio::test]
async fn publish_to_own_topic_becomes_message_event() {
    let mut t = start().await;
    let a = t.online("dev-a", "sa").await;
    let payload = Bytes::from_static(b"{\"id\":\"1\",\"params\":{\"step\":\"20\"}}\x00\xff");
    for level in [0, 1] {
        a.client
            .publish_bytes("up/a", qos(level), false, payload.clone())
            .await
            .unwrap();
        let expected = BrokerEvent::Message {
            from: "A".into(),
            topic: "up/a".into(),
            payload: payload.clone(),
        };
        assert_eq!(t.next_event().await, expected);
    }
    t.broker.shutdown().await;
}

#[tokio::test]
async fn publish_to_other_topics_is_dropped() {
    let mut t = start().await;
    let a = t.online("dev-a", "sa").await;
    let mut b = t.online("dev-b", "sb").await;
    b.subscribe("#", QoS::AtLeastOnce).await;
    b.subscribe("up/+", QoS::AtLeastOnce).await;

    for topic in ["up/b", "down/a", "down/b", "elsewhere"] {
        for level in [0, 1] {
            a.client
                .publish(topic, qos(level), false, "forged")
                .await
                .unwrap();
        }
    }
    // The connection survives refused publishes; a later allowed one is the
    // first and only event, and nobody else receives anything.
    a.client
        .publish("up/a", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    match t.next_event().await {
        BrokerEvent::Message { topic, payload, .. } => {
            assert_eq!(topic, "up/a");
            assert_eq!(payload, Bytes::from_static(b"ok"));
        }
        other => panic!("unexpected event {other:?}"),
    }
    t.assert_no_event().await;
    assert!(
        b.next_publish(QUIET).await.is_none(),
        "device traffic leaked to another client"
    );
    t.broker.shutdown().await;
}

#[tokio::test]
async fn suback_grants_requested_qos_including_wildcards() {
    let mut t = start().await;
    let mut a = t.online("dev-a", "sa").await;
    let granted = |level| vec![SubscribeReasonCode::Success(qos(level))];
    assert_eq!(
        a.subscribe("/ota/device/upgrade/+/+", QoS::AtLeastOnce)
            .await,
        granted(1)
    );
    assert_eq!(
        a.subscribe("/sys/pk/dn/rrpc/request/+", QoS::AtMostOnce)
            .await,
        granted(0)
    );
    assert_eq!(a.subscribe("down/a", QoS::AtLeastOnce).await, granted(1));
    assert_eq!(a.subscribe("#", QoS::AtLeastOnce).await, granted(1));
    // QoS 2 is capped at 1 rather than refused.
    assert_eq!(a.subscribe("other", QoS::ExactlyOnce).await, granted(1));
    t.broker.shutdown().await;
}

#[tokio::test]
async fn wildcard_subscriber_only_gets_its_own_topics() {
    let mut t = start().await;
    let mut a = t.online("dev-a", "sa").await;
    let mut b = t.online("dev-b", "sb").await;
    a.subscribe("down/+", QoS::AtLeastOnce).await;
    a.subscribe("#", QoS::AtLeastOnce).await;

    t.broker
        .publish("down/b", Bytes::from_static(b"for b"), 1)
        .await
        .unwrap();
    let got = b.expect_once().await;
    assert_eq!(got.payload, Bytes::from_static(b"for b"));
    assert!(
        a.next_publish(QUIET).await.is_none(),
        "a received b's message"
    );

    // Two matching wildcards plus the implicit subscription: still once.
    t.broker
        .publish("down/a", Bytes::from_static(b"for a"), 1)
        .await
        .unwrap();
    let got = a.expect_once().await;
    assert_eq!(
        (got.topic.as_str(), got.payload.as_ref()),
        ("down/a", b"for a".as_ref())
    );
    assert!(
        b.next_publish(QUIET).await.is_none(),
        "b received a's message"
    );
    t.broker.shutdown().await;
}

#[tokio::test]
async fn implicit_subscription_delivers_exactly_once() {
    let mut t = start().await;
    let mut a = t.online("dev-a", "sa").await;
    for level in [0, 1] {
        let body = format!("implicit qos{level}");
        t.broker
            .publish("down/a", Bytes::from(body.clone()), level)
            .await
            .unwrap();
        let got = a.expect_once().await;
        assert_eq!((got.topic.as_str(), got.qos), ("down/a", qos(level)));
        assert_eq!(got.payload, Bytes::from(body));
    }
    // Subscribing the same topic explicitly must not double-deliver.
    for sub_level in [0, 1] {
        a.subscribe("down/a", qos(sub_level)).await;
        for level in [0, 1] {
            let body = format!("explicit sub{sub_level} qos{level}");
            t.broker
                .publish("down/a", Bytes::from(body.clone()), level)
                .await
                .unwrap();
            assert_eq!(a.expect_once().await.payload, Bytes::from(body));
        }
    }
    t.broker.shutdown().await;
}

#[tokio::test]
async fn publish_with_no_recipient_is_fine_and_bad_arguments_are_refused() {
    let t = start().await;
    t.broker.publish("down/a", Bytes::new(), 1).await.unwrap();
    assert!(matches!(
        t.broker.publish("down/a", Bytes::new(), 2).await,
        Err(BrokerError::InvalidQos(2))
    ));
    for topic in ["", "down/+", "down/#"] {
        let res = t.broker.publish(topic, Bytes::new(), 0).await;
        assert!(
            matches!(res, Err(BrokerError::InvalidTopic(_))),
            "{topic:?}: {res:?}"
        );
    }
    t.broker.shutdown().await;
}

#[tokio::test]
async fn second_connection_with_same_id_takes_over() {
    let mut t = start().await;
    let first = t.online("dev-a", "sa").await;
    let mut second = connect(t.broker.local_addr(), "dev-a", "sa", None)
        .await
        .expect("takeover connects");
    assert_eq!(t.next_event().await, BrokerEvent::Disconnected("A".into()));
    assert_eq!(t.next_event().await, BrokerEvent::Connected("A".into()));
    let ended = tokio::time::timeout(WAIT, first.driver).await;
    assert!(ended.is_ok(), "first connection is closed");

    t.broker
        .publish("down/a", Bytes::from_static(b"hi"), 1)
        .await
        .unwrap();
    assert_eq!(
        second.expect_once().await.payload,
        Bytes::from_static(b"hi")
    );
    t.assert_no_event().await;

    // The engine keeps the socket open after DISCONNECT until the client
    // closes it (as real SDKs do); rumqttc does not, so close it here.
    second.client.disconnect().await.unwrap();
    tokio::time::sleep(QUIET).await;
    second.driver.abort();
    assert_eq!(t.next_event().await, BrokerEvent::Disconnected("A".into()));
}

#[tokio::test]
async fn oversized_publish_disconnects_only_the_sender() {
    let mut t = start().await;
    let a = t.online("dev-a", "sa").await;
    let mut b = t.online("dev-b", "sb").await;

    let big = Bytes::from(vec![
        7u8;
        BrokerConfig::DEFAULT_MAX_PACKET_SIZE + 100 * 1024
    ]);
    a.client
        .publish_bytes("up/a", QoS::AtLeastOnce, false, big)
        .await
        .unwrap();
    assert_eq!(t.next_event().await, BrokerEvent::Disconnected("A".into()));
    let ended = tokio::time::timeout(WAIT, a.driver).await;
    assert!(ended.is_ok(), "sender is disconnected");

    // The broker keeps serving: b still receives, and new logins work.
    t.broker
        .publish("down/b", Bytes::from_static(b"still here"), 1)
        .await
        .unwrap();
    assert_eq!(
        b.expect_once().await.payload,
        Bytes::from_static(b"still here")
    );
    let _again = t.online("dev-a", "sa").await;
    t.broker.shutdown().await;
}

#[tokio::test]
async fn last_will_never_reaches_other_clients_or_otter() {
    let mut t = start().await;
    let mut b = t.online("dev-b", "sb").await;
    b.subscribe("#", QoS::AtLeastOnce).await;
    let will = LastWill::new("down/b", "forged will", QoS::AtLeastOnce, false);
    let a = connect(t.broker.local_addr(), "dev-a", "sa", Some(will))
        .await
        .unwrap();
    assert_eq!(t.next_event().await, BrokerEvent::Connected("A".into()));
    a.driver.abort(); // drops the TCP connection without DISCONNECT
    assert_eq!(t.next_event().await, BrokerEvent::Disconnected("A".into()));
    assert!(b.next_publish(QUIET).await.is_none(), "will was delivered");
    t.assert_no_event().await;
}

#[tokio::test]
async fn several_brokers_run_side_by_side_and_shut_down() {
    let mut one = start().await;
    let mut two = start().await;
    assert_ne!(one.broker.local_addr(), two.broker.local_addr());
    let _a1 = one.online("dev-a", "sa").await;
    let mut a2 = two.online("dev-a", "sa").await;

    let addr: SocketAddr = one.broker.local_addr();
    one.broker.clone().shutdown().await;
    assert_eq!(
        one.next_event().await,
        BrokerEvent::Disconnected("A".into())
    );
    assert!(
        connect(addr, "dev-a", "sa", None).await.is_err(),
        "stopped broker still accepts"
    );

    two.broker
        .publish("down/a", Bytes::from_static(b"two"), 0)
        .await
        .unwrap();
    assert_eq!(a2.expect_once().await.payload, Bytes::from_static(b"two"));
    two.broker.shutdown().await;
}

/// Waits (bounded by a generous timeout, never asserting a duration) until the server closes
/// `socket`: a read that ends or fails.
async fn closed_by_server(mut socket: tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{what}: the server never closed the socket"
    );
}

/// Issue 19, finding 3: a socket that never sends CONNECT is closed on every listener, and
/// does not keep others from connecting.
#[tokio::test]
async fn a_socket_that_never_sends_connect_is_closed() {
    use tokio::io::AsyncWriteExt;
    let mut cfg = BrokerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.proxied = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.connect_timeout = Duration::from_millis(300);
    let mut b = start_with(cfg).await;
    let plain = b.broker.local_addr();
    let proxied = b.broker.proxied_local_addr().unwrap();

    let silent = tokio::net::TcpStream::connect(plain).await.unwrap();
    // Half a fixed header: the version probe needs more.
    let mut partial = tokio::net::TcpStream::connect(plain).await.unwrap();
    partial.write_all(&[0x10]).await.unwrap();
    // A PROXY header, then nothing.
    let mut proxied_silent = tokio::net::TcpStream::connect(proxied).await.unwrap();
    proxied_silent
        .write_all(b"PROXY TCP4 10.0.0.7 10.0.0.1 40000 8883\r\n")
        .await
        .unwrap();
    let proxied_nothing = tokio::net::TcpStream::connect(proxied).await.unwrap();

    closed_by_server(silent, "plain, nothing sent").await;
    closed_by_server(partial, "plain, one byte sent").await;
    closed_by_server(proxied_silent, "proxied, header only").await;
    closed_by_server(proxied_nothing, "proxied, nothing sent").await;

    // A device that does send its CONNECT is served as always.
    let _a = b.online("dev-a", "sa").await;
}

/// A malformed PROXY v2 header (it declares more bytes than it carries) once panicked the
/// PROXY listener's accept loop, after which no TLS-PSK device could connect (found by the
/// `proxy_header` fuzz target). It is refused, and the listener keeps serving.
#[tokio::test]
async fn a_malformed_proxy_header_does_not_stop_the_proxied_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = BrokerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.proxied = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let b = start_with(cfg).await;
    let proxied = b.broker.proxied_local_addr().unwrap();

    let mut bad = tokio::net::TcpStream::connect(proxied).await.unwrap();
    let mut header = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x12, 0xFF,
        0xFF,
    ];
    header.extend_from_slice(&[0xFF, 0xFC, 0x00, 0x0C]);
    header.extend_from_slice(&[0u8; 16]);
    bad.write_all(&header).await.unwrap();
    closed_by_server(bad, "malformed PROXY v2 header").await;

    // A terminator's well-formed connection is still served.
    let mut good = tokio::net::TcpStream::connect(proxied).await.unwrap();
    let mut wire = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 8883\r\n".to_vec();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new("dev-a");
    connect.set_login("dev-a", "sa");
    let mut bytes = bytes::BytesMut::new();
    connect.write(&mut bytes).unwrap();
    wire.extend_from_slice(&bytes);
    good.write_all(&wire).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, good.read_exact(&mut connack))
        .await
        .expect("no CONNACK: the proxied listener stopped")
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
}
