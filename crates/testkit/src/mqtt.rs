//! MQTT clients of the brokers under test (rumqttc), connected up to their CONNACK.

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet};
use std::time::Duration;

/// Connects and returns the CONNACK's outcome without retrying: the client and its event loop
/// (to be polled by the caller) once CONNACK 0 came, else the refusal or connection error.
/// Panics when neither comes within `wait`.
pub async fn connect(
    opts: MqttOptions,
    wait: Duration,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        match tokio::time::timeout(wait, eventloop.poll())
            .await
            .expect("no CONNACK")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, eventloop)),
            Ok(_) => continue,
            Err(e) => return Err(e),
        }
    }
}
