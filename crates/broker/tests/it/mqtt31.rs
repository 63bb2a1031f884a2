//! MQTT 3.1 (`MQIsdp`, level 3) over a hand-built TCP session, as Tencent's
//! Python SDK speaks it.

use crate::common::{WAIT, long_id, start};
use bytes::Bytes;
use otter_broker::BrokerEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT with protocol name `MQIsdp`, level 3, clean session, user+password.
fn connect_31(client_id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQIsdp", &mut body);
    body.push(3); // protocol level
    body.push(0b1100_0010); // user name, password, clean session
    body.extend_from_slice(&60u16.to_be_bytes()); // keep alive
    string(client_id.as_bytes(), &mut body);
    string(username.as_bytes(), &mut body);
    string(password.as_bytes(), &mut body);
    packet(0x10, &body)
}

async fn read_exact<const N: usize>(stream: &mut TcpStream) -> [u8; N] {
    let mut buf = [0u8; N];
    tokio::time::timeout(WAIT, stream.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .expect("read");
    buf
}

#[tokio::test]
async fn mqisdp_connect_is_accepted_and_works_both_ways() {
    let mut t = start().await;
    let id = long_id();
    let mut stream = TcpStream::connect(t.broker.local_addr()).await.unwrap();
    stream
        .write_all(&connect_31(&id, "user", "sl"))
        .await
        .unwrap();
    assert_eq!(
        read_exact::<4>(&mut stream).await,
        [0x20, 0x02, 0x00, 0x00],
        "CONNACK accepted"
    );
    assert_eq!(t.next_event().await, BrokerEvent::Connected("L".into()));

    // QoS 1 PUBLISH up, expecting PUBACK and a Message event.
    let mut body = Vec::new();
    string(b"up/l", &mut body);
    body.extend_from_slice(&7u16.to_be_bytes());
    body.extend_from_slice(b"{\"v\":1}");
    stream.write_all(&packet(0x32, &body)).await.unwrap();
    assert_eq!(
        read_exact::<4>(&mut stream).await,
        [0x40, 0x02, 0x00, 0x07],
        "PUBACK"
    );
    let expected = BrokerEvent::Message {
        from: "L".into(),
        topic: "up/l".into(),
        payload: Bytes::from_static(b"{\"v\":1}"),
    };
    assert_eq!(t.next_event().await, expected);

    // QoS 0 PUBLISH down without any SUBSCRIBE (implicit subscription).
    t.broker
        .publish("down/l", Bytes::from_static(b"hello"), 0)
        .await
        .unwrap();
    let mut expected = Vec::new();
    string(b"down/l", &mut expected);
    expected.extend_from_slice(b"hello");
    let expected = packet(0x30, &expected);
    let got = read_exact::<15>(&mut stream).await;
    assert_eq!(got.as_slice(), expected.as_slice());
    t.broker.shutdown().await;
}

#[tokio::test]
async fn mqisdp_wrong_password_gets_connack_4_and_unknown_gets_5() {
    let t = start().await;
    for (client_id, password, code) in [(long_id(), "bad", 4u8), ("nobody".to_owned(), "x", 5u8)] {
        let mut stream = TcpStream::connect(t.broker.local_addr()).await.unwrap();
        stream
            .write_all(&connect_31(&client_id, "user", password))
            .await
            .unwrap();
        assert_eq!(read_exact::<4>(&mut stream).await, [0x20, 0x02, 0x00, code]);
    }
    t.broker.shutdown().await;
}
