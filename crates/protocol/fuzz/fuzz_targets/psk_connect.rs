//! Fuzzes the TLS-PSK terminator's CONNECT reader, the first thing a Tencent PSK device's bytes
//! reach after the handshake: any bytes, delivered in any chunking, never a panic; a CONNECT it
//! accepts re-encodes (as the terminator does after rewriting its login) and reads back the
//! same; the bytes it keeps for forwarding are never more than were sent.
//! Input: one byte picking the read size (1..=16 bytes per read), then the stream.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use otter_psk::mqtt::{encode_connect, read_connect};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` `step` bytes at a time, as a TCP stream may.
struct Chunked<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (head, tail) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = tail;
        Poll::Ready(Ok(()))
    }
}

/// The terminator's packet limit is configurable; a small one exercises the refusal too.
const MAX_PACKET: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((step, wire)) = data.split_first() else {
        return;
    };
    let mut stream = Chunked {
        data: wire,
        step: usize::from(step % 16) + 1,
    };
    let Ok((connect, rest)) = block_on(read_connect(&mut stream, MAX_PACKET)) else {
        return;
    };
    assert!(rest.len() <= wire.len(), "kept more than was sent");
    if let Ok(bytes) = encode_connect(&connect) {
        let mut again: &[u8] = &bytes;
        let (back, tail) = block_on(read_connect(&mut again, usize::MAX))
            .expect("a re-encoded CONNECT reads back");
        assert_eq!(back, connect);
        assert!(tail.is_empty());
    }
});
