//! MQTT 3.1.1 for a load generator that costs less than the servers it measures: rumqttc's
//! codec (`mqttbytes::v4`, as otter-psk uses it) over raw sockets, with no client event loop,
//! no session state and no keep-alive pings; each device is a socket and a read buffer.

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{Connect, Login, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use rumqttc::mqttbytes::v4::Packet;

/// The largest packet the harness accepts (a push is well under 1 KiB).
const MAX_PACKET: usize = 1 << 20;

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn encode(
    size: usize,
    write: impl FnOnce(&mut BytesMut) -> Result<usize, mqttbytes::Error>,
) -> Bytes {
    let mut out = BytesMut::with_capacity(size);
    // Only a QoS > 0 PUBLISH with packet id 0 fails to encode, and the harness never numbers one 0.
    write(&mut out).expect("encoding an MQTT packet");
    out.freeze()
}

/// CONNECT with a clean session and a long keep-alive (the harness holds idle connections).
pub fn connect(client_id: &str, login: Option<(&str, &str)>) -> Bytes {
    let mut connect = Connect::new(client_id);
    connect.keep_alive = 600;
    connect.login = login.map(|(username, password)| Login::new(username, password));
    encode(connect.size(), |out| connect.write(out))
}

pub fn subscribe(packet_id: u16, filter: &str, level: u8) -> Bytes {
    let mut subscribe = Subscribe::new(filter, qos(level));
    subscribe.pkid = packet_id;
    encode(subscribe.size(), |out| subscribe.write(out))
}

pub fn publish(topic: &str, payload: &[u8], level: u8, packet_id: u16) -> Bytes {
    let mut publish = Publish::new(topic, qos(level), payload);
    if level > 0 {
        publish.pkid = packet_id;
    }
    encode(publish.size(), |out| publish.write(out))
}

pub fn puback(packet_id: u16) -> Bytes {
    let ack = PubAck::new(packet_id);
    encode(ack.size(), |out| ack.write(out))
}

/// Buffered packet reader over any byte stream.
pub struct Reader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            buf: BytesMut::with_capacity(512),
        }
    }

    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => bail!("bad MQTT packet: {e}"),
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::ConnectReturnCode;

    /// What the harness sends reads back as the same packet, split at any byte.
    #[tokio::test]
    async fn packets_read_back_across_any_split() {
        let wire = [
            connect("dev1", Some(("user", "pass"))),
            subscribe(1, "$ota/update/P/d", 1),
            publish("$ota/report/P/d", br#"{"type":"x"}"#, 1, 7),
            publish("t", b"q0", 0, 9),
            puback(7),
            Bytes::from_static(&[0x20, 0x02, 0x00, 0x05]), // CONNACK 5
        ]
        .concat();
        for split in 1..wire.len() {
            let (a, b) = wire.split_at(split);
            let mut reader = Reader::new(tokio::io::AsyncReadExt::chain(a, b));
            let Packet::Connect(c) = reader.next().await.unwrap() else {
                panic!("not CONNECT")
            };
            assert_eq!((c.client_id.as_str(), c.keep_alive), ("dev1", 600));
            assert_eq!(c.login, Some(Login::new("user", "pass")));
            let Packet::Subscribe(s) = reader.next().await.unwrap() else {
                panic!("not SUBSCRIBE")
            };
            assert_eq!((s.pkid, s.filters[0].qos), (1, QoS::AtLeastOnce));
            let Packet::Publish(p) = reader.next().await.unwrap() else {
                panic!("not PUBLISH")
            };
            assert_eq!((p.topic.as_str(), p.pkid), ("$ota/report/P/d", 7));
            assert_eq!(&p.payload[..], br#"{"type":"x"}"#);
            let Packet::Publish(p) = reader.next().await.unwrap() else {
                panic!("not PUBLISH")
            };
            assert_eq!(
                (p.qos, p.pkid, &p.payload[..]),
                (QoS::AtMostOnce, 0, &b"q0"[..])
            );
            assert_eq!(reader.next().await.unwrap(), Packet::PubAck(PubAck::new(7)));
            let Packet::ConnAck(ack) = reader.next().await.unwrap() else {
                panic!("not CONNACK")
            };
            assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
            assert!(reader.next().await.is_err(), "closed");
        }
    }

    #[test]
    fn anonymous_connect_has_no_login() {
        // The Mosquitto-side helpers connect without credentials: flags 0x02 (clean session).
        assert_eq!(connect("x", None)[9], 0x02);
    }
}
