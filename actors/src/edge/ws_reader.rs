//! `LimitedMessages`: the inbound side of an AppWebsocket connection, with every bound holding
//! before the data is read.
//!
//! actix-ws 0.4's `MessageStream` reads everything the connection has ready into one buffer
//! before it decodes a single frame, so a frame header announcing 1 GiB made the service buffer
//! whatever the peer sent until the frame was complete; its continuation aggregation keeps one
//! `Bytes` per fragment, so a message of 1-byte frames cost about 50 bytes per byte; and
//! actix-http's frame parser compares a frame's length with its limit only once the whole frame
//! is in (docs/upstream/actix-ws-buffering.md, with reproductions). This reader checks the
//! length a header announces before anything else, decodes after every
//! chunk the HTTP layer hands it (actix-http stops reading the socket while its payload buffer
//! is full), so a frame whose header announces more than the limit ends the connection at
//! once with 1009; fragments are appended to one buffer, their count and total size bounded;
//! and before login the limits are far lower: one message of at most [`PRE_LOGIN_MESSAGE`]
//! bytes at a time and [`PRE_LOGIN_BUDGET`] bytes in all.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::ws::{Codec, Frame, Item};
use actix_ws::{AggregatedMessage, ProtocolError};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

/// Largest message before login: an AppLogin with a generous `info` fits many times over.
pub const PRE_LOGIN_MESSAGE: usize = 16 * 1024;
/// All bytes a connection may send before it has logged in.
pub const PRE_LOGIN_BUDGET: usize = 64 * 1024;
/// Most fragments one message may arrive in.
pub const MAX_FRAGMENTS: usize = 4096;

/// Whether the connection has logged in, shared by the session (which sets it) and the reader
/// (which then lifts the pre-login limits).
#[derive(Debug, Clone, Default)]
pub struct LoggedIn(Arc<AtomicBool>);

impl LoggedIn {
    /// Marks the connection logged in.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A message being reassembled from fragments.
struct Partial {
    /// Text (else binary).
    text: bool,
    /// The payload so far.
    data: BytesMut,
    /// Fragments so far.
    fragments: usize,
}

/// Whole messages from one connection's payload, within the limits.
pub struct LimitedMessages {
    /// The connection's bytes as the HTTP layer reads them.
    payload: actix_http::Payload,
    /// Bytes read but not yet decoded: at most one frame's header and partial payload.
    buf: BytesMut,
    /// Frame parser (server side: clients must mask).
    codec: Codec,
    /// The message limit after login (`websocket.max_message_bytes`).
    max_message: usize,
    /// Set by the session at login.
    logged_in: LoggedIn,
    /// Bytes received so far before login.
    pre_login_bytes: usize,
    /// A fragmented message in progress.
    partial: Option<Partial>,
    /// Ended (error or end of input): nothing more is read.
    done: bool,
}

impl LimitedMessages {
    /// Reads `payload`, allowing messages of `max_message` bytes once `logged_in` is set.
    pub fn new(payload: actix_http::Payload, max_message: usize, logged_in: LoggedIn) -> LimitedMessages {
        LimitedMessages {
            payload,
            buf: BytesMut::new(),
            codec: Codec::new(),
            max_message,
            logged_in,
            pre_login_bytes: 0,
            partial: None,
            done: false,
        }
    }

    fn limit(&self) -> usize {
        if self.logged_in.get() {
            self.max_message
        } else {
            PRE_LOGIN_MESSAGE.min(self.max_message)
        }
    }

    /// The next whole message in `buf`, if one is complete.
    fn decode(&mut self) -> Result<Option<AggregatedMessage>, ProtocolError> {
        loop {
            let limit = self.limit();
            // Every frame is checked against what the message may still take, so a fragment
            // header announcing too much fails before its payload is read.
            let room = limit.saturating_sub(self.partial.as_ref().map_or(0, |p| p.data.len()));
            // actix-http checks the size only once the whole frame is buffered: look at the
            // announced length first.
            if announced_length(&self.buf).is_some_and(|len| len > room as u64) {
                return Err(ProtocolError::Overflow);
            }
            self.codec = self.codec.clone().max_size(room);
            let Some(frame) = self.codec.decode(&mut self.buf)? else {
                return Ok(None);
            };
            let message = match frame {
                Frame::Text(bytes) => Some(text(bytes)?),
                Frame::Binary(bytes) => Some(AggregatedMessage::Binary(bytes)),
                Frame::Ping(bytes) => Some(AggregatedMessage::Ping(bytes)),
                Frame::Pong(bytes) => Some(AggregatedMessage::Pong(bytes)),
                Frame::Close(reason) => Some(AggregatedMessage::Close(reason)),
                Frame::Continuation(item) => self.continuation(item, limit)?,
            };
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    fn continuation(&mut self, item: Item, limit: usize) -> Result<Option<AggregatedMessage>, ProtocolError> {
        let (first, data, last) = match item {
            Item::FirstText(data) => (Some(true), data, false),
            Item::FirstBinary(data) => (Some(false), data, false),
            Item::Continue(data) => (None, data, false),
            Item::Last(data) => (None, data, true),
        };
        let partial = match (first, self.partial.as_mut()) {
            (Some(text), None) => self.partial.insert(Partial {
                text,
                data: BytesMut::new(),
                fragments: 0,
            }),
            (None, Some(partial)) => partial,
            (Some(_), Some(_)) => return Err(ProtocolError::ContinuationStarted),
            (None, None) => return Err(ProtocolError::ContinuationNotStarted),
        };
        partial.fragments += 1;
        if partial.fragments > MAX_FRAGMENTS || partial.data.len() + data.len() > limit {
            return Err(ProtocolError::Overflow);
        }
        partial.data.extend_from_slice(&data);
        if !last {
            return Ok(None);
        }
        let Some(done) = self.partial.take() else {
            return Ok(None);
        };
        let data = done.data.freeze();
        Ok(Some(if done.text {
            text(data)?
        } else {
            AggregatedMessage::Binary(data)
        }))
    }
}

/// The payload length a frame header at the start of `buf` announces (RFC 6455 §5.2), once
/// enough of the header is in.
fn announced_length(buf: &[u8]) -> Option<u64> {
    let len7 = buf.get(1)? & 0x7f;
    match len7 {
        126 => Some(u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]))),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }
        n => Some(u64::from(n)),
    }
}

fn text(bytes: Bytes) -> Result<AggregatedMessage, ProtocolError> {
    ByteString::try_from(bytes)
        .map(AggregatedMessage::Text)
        .map_err(|e| ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

impl Stream for LimitedMessages {
    type Item = Result<AggregatedMessage, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.decode() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            // One chunk at a time, decoded before the next is taken: what is buffered never
            // exceeds one frame's header and allowed payload plus one chunk.
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if !this.logged_in.get() {
                        this.pre_login_bytes += bytes.len();
                        if this.pre_login_bytes > PRE_LOGIN_BUDGET {
                            this.done = true;
                            return Poll::Ready(Some(Err(ProtocolError::Overflow)));
                        }
                    }
                    this.buf.extend_from_slice(&bytes);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(e)))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A masked client frame (RFC 6455 §5.2), built by hand.
    fn frame(fin: bool, opcode: u8, payload: &[u8], announced: Option<u64>) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = announced.unwrap_or(payload.len() as u64);
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn reader(
        chunks: Vec<Vec<u8>>,
        max: usize,
        logged_in: bool,
    ) -> (LimitedMessages, Arc<std::sync::atomic::AtomicUsize>) {
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&taken);
        let stream = futures_util::stream::iter(chunks).map(move |c| {
            counter.fetch_add(1, Ordering::Relaxed);
            Ok::<_, actix_http::error::PayloadError>(Bytes::from(c))
        });
        let flag = LoggedIn::default();
        if logged_in {
            flag.set();
        }
        let boxed: actix_http::BoxedPayloadStream = Box::pin(stream);
        let payload = actix_http::Payload::from(boxed);
        (LimitedMessages::new(payload, max, flag), taken)
    }

    #[tokio::test]
    async fn a_huge_frame_header_fails_before_its_payload_is_read() {
        let mut chunks = vec![frame(true, 1, b"", Some(1 << 30))];
        chunks.extend((0..1000).map(|_| vec![0u8; 64 * 1024]));
        let (mut messages, taken) = reader(chunks, 1 << 20, true);
        assert!(matches!(
            messages.next().await,
            Some(Err(ProtocolError::Overflow))
        ));
        assert_eq!(taken.load(Ordering::Relaxed), 1, "only the header chunk was read");
        assert!(messages.next().await.is_none(), "and nothing after");
    }

    #[tokio::test]
    async fn fragments_are_joined_and_bounded_in_size_and_count() {
        let chunks = vec![
            frame(false, 1, b"hel", None),
            frame(false, 0, b"lo ", None),
            frame(true, 9, b"p", None),
            frame(true, 0, b"world", None),
        ];
        let (mut messages, _) = reader(chunks, 1024, true);
        assert!(matches!(
            messages.next().await,
            Some(Ok(AggregatedMessage::Ping(_)))
        ));
        match messages.next().await {
            Some(Ok(AggregatedMessage::Text(text))) => assert_eq!(&*text, "hello world"),
            other => panic!("{other:?}"),
        }
        // Too many fragments.
        let mut chunks = vec![frame(false, 1, b"a", None)];
        chunks.extend((0..MAX_FRAGMENTS).map(|_| frame(false, 0, b"a", None)));
        let (mut messages, _) = reader(chunks, 1 << 20, true);
        assert!(matches!(
            messages.next().await,
            Some(Err(ProtocolError::Overflow))
        ));
        // Fragments adding up to more than the limit: refused at the header of the one too many.
        let chunks = vec![
            frame(false, 1, &[b'a'; 600], None),
            frame(true, 0, b"", Some(600)),
        ];
        let (mut messages, taken) = reader(chunks, 1024, true);
        assert!(matches!(
            messages.next().await,
            Some(Err(ProtocolError::Overflow))
        ));
        assert_eq!(taken.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn before_login_messages_and_bytes_are_limited() {
        let (mut messages, _) = reader(
            vec![frame(true, 1, &[b'a'; PRE_LOGIN_MESSAGE + 1], None)],
            1 << 20,
            false,
        );
        assert!(matches!(
            messages.next().await,
            Some(Err(ProtocolError::Overflow))
        ));
        let (mut messages, _) = reader(
            vec![frame(true, 1, &[b'a'; PRE_LOGIN_MESSAGE + 1], None)],
            1 << 20,
            true,
        );
        assert!(
            matches!(messages.next().await, Some(Ok(AggregatedMessage::Text(_)))),
            "fine after login"
        );
        let chunks: Vec<Vec<u8>> = (0..PRE_LOGIN_BUDGET / 100 + 2)
            .map(|_| frame(true, 1, &[b'{'; 100], None))
            .collect();
        let (mut messages, _) = reader(chunks, 1 << 20, false);
        let mut last = None;
        while let Some(item) = messages.next().await {
            last = Some(item);
        }
        assert!(
            matches!(last, Some(Err(ProtocolError::Overflow))),
            "the pre-login budget"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

        /// Arbitrary bytes in arbitrary chunks, before and after login: never a panic, never
        /// a message above the limit.
        #[test]
        fn arbitrary_input_never_panics_or_exceeds_the_limit(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..40),
            logged_in in proptest::prelude::any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async {
                let (mut messages, _) = reader(chunks, 256, logged_in);
                while let Some(item) = messages.next().await {
                    if let Ok(AggregatedMessage::Text(t)) = &item {
                        assert!(t.len() <= 256);
                    }
                    if let Ok(AggregatedMessage::Binary(b)) = &item {
                        assert!(b.len() <= 256);
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn invalid_utf8_and_stray_continuations_are_errors() {
        let (mut messages, _) = reader(vec![frame(true, 1, &[0xff, 0xfe], None)], 1024, true);
        assert!(matches!(messages.next().await, Some(Err(ProtocolError::Io(_)))));
        let (mut messages, _) = reader(vec![frame(true, 0, b"x", None)], 1024, true);
        assert!(matches!(messages.next().await, Some(Err(_))));
    }
}
