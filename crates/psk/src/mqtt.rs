//! The one MQTT packet the terminator must understand: the client's first CONNECT, read from
//! the decrypted stream and re-encoded with new credentials (rumqttc's MQTT 3.1.1 codec).

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet};
use rumqttc::mqttbytes::{Error as CodecError, Protocol};
use tokio::io::{AsyncRead, AsyncReadExt};

/// CONNACK with return code 5, "not authorized".
pub const CONNACK_NOT_AUTHORIZED: [u8; 4] = [0x20, 0x02, 0x00, 0x05];

/// Why the first packet was not a usable CONNECT.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection closed before CONNECT")]
    Closed,
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("only MQTT 3.1.1 is supported here")]
    Version,
    #[error("malformed CONNECT: {0:?}")]
    Malformed(CodecError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the first packet, which must be an MQTT 3.1.1 CONNECT; also returns any bytes the
/// client sent after it (to forward unchanged).
pub async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_packet_size: usize,
) -> Result<(Connect, BytesMut), ConnectError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match Packet::read(&mut buf, max_packet_size) {
            Ok(Packet::Connect(c)) if c.protocol == Protocol::V4 => return Ok((c, buf)),
            Ok(Packet::Connect(_)) => return Err(ConnectError::Version),
            Ok(_) => return Err(ConnectError::NotConnect),
            Err(CodecError::InsufficientBytes(_)) => {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(ConnectError::Closed);
                }
            }
            Err(e) => return Err(ConnectError::Malformed(e)),
        }
    }
}

/// The wire bytes of `connect`.
pub fn encode_connect(connect: &Connect) -> Result<BytesMut, ConnectError> {
    let mut out = BytesMut::with_capacity(connect.size());
    connect.write(&mut out).map_err(ConnectError::Malformed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Login;

    #[tokio::test]
    async fn reads_connect_and_keeps_what_follows() {
        let mut connect = Connect::new("PRODdev1");
        connect.login = Some(Login::new(
            "PRODdev1;21010406;abcde;9223372036854775807",
            "",
        ));
        let mut wire = encode_connect(&connect).unwrap().to_vec();
        wire.extend_from_slice(&[0xC0, 0x00]); // PINGREQ
        let (read, rest) = read_connect(&mut wire.as_slice(), 1024).await.unwrap();
        assert_eq!(read, connect);
        assert_eq!(&rest[..], &[0xC0, 0x00]);
    }

    #[tokio::test]
    async fn refuses_other_first_packets_and_truncation() {
        let ping: &[u8] = &[0xC0, 0x00];
        assert!(matches!(
            read_connect(&mut &ping[..], 1024).await,
            Err(ConnectError::NotConnect)
        ));
        let wire = encode_connect(&Connect::new("x")).unwrap();
        let cut = &wire[..wire.len() - 1];
        assert!(matches!(
            read_connect(&mut &cut[..], 1024).await,
            Err(ConnectError::Closed)
        ));
        let garbage: &[u8] = &[0x10, 0x03, 0xFF, 0xFF, 0xFF];
        assert!(read_connect(&mut &garbage[..], 1024).await.is_err());
    }
}
