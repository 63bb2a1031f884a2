//! Just enough MQTT 3.1.1 on raw sockets for a load generator that costs less than the servers
//! it measures: hand-built CONNECT/SUBSCRIBE/PUBLISH/PUBACK and a frame reader.

use anyhow::{Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const SUBACK: u8 = 9;

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

fn frame(first: u8, body: BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    out.put_slice(&body);
    out.freeze()
}

pub fn connect(client_id: &str, username: Option<&str>, password: Option<&[u8]>) -> Bytes {
    let mut body = BytesMut::new();
    put_str(&mut body, b"MQTT");
    body.put_u8(4);
    let flags = 0x02
        | if username.is_some() { 0x80 } else { 0 }
        | if password.is_some() { 0x40 } else { 0 };
    body.put_u8(flags);
    body.put_u16(600); // keep-alive: long, the harness holds idle connections
    put_str(&mut body, client_id.as_bytes());
    if let Some(u) = username {
        put_str(&mut body, u.as_bytes());
    }
    if let Some(p) = password {
        put_str(&mut body, p);
    }
    frame(0x10, body)
}

pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    put_str(&mut body, filter.as_bytes());
    body.put_u8(qos);
    frame(0x82, body)
}

pub fn publish(topic: &str, payload: &[u8], qos: u8, packet_id: u16) -> Bytes {
    let mut body = BytesMut::new();
    put_str(&mut body, topic.as_bytes());
    if qos > 0 {
        body.put_u16(packet_id);
    }
    body.put_slice(payload);
    frame(0x30 | (qos << 1), body)
}

pub fn puback(packet_id: u16) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    frame(0x40, body)
}

/// One incoming control packet.
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub body: Bytes,
}

impl Frame {
    /// For a PUBLISH: (topic, packet id if QoS > 0, payload).
    pub fn publish(&self) -> Option<(&[u8], Option<u16>, &[u8])> {
        let b = &self.body[..];
        let len = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
        let topic = b.get(2..2 + len)?;
        let mut rest = b.get(2 + len..)?;
        let id = if self.flags & 0x06 != 0 {
            let id = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]);
            rest = &rest[2..];
            Some(id)
        } else {
            None
        };
        Some((topic, id, rest))
    }
}

/// Buffered frame reader over any byte stream.
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

    pub async fn next(&mut self) -> Result<Frame> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>> {
        let mut len = 0usize;
        let mut shift = 0;
        let mut i = 1;
        loop {
            let Some(byte) = self.buf.get(i) else {
                return Ok(None);
            };
            len |= ((byte & 0x7f) as usize) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                bail!("bad remaining length");
            }
        }
        if self.buf.len() < i + len {
            return Ok(None);
        }
        let first = self.buf[0];
        self.buf.advance(i);
        let body = self.buf.split_to(len).freeze();
        Ok(Some(Frame {
            kind: first >> 4,
            flags: first & 0x0f,
            body,
        }))
    }
}
