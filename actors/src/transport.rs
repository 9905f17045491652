//! The WebSocket transport under every connection actor: the actor owns
//! its socket once the HTTP upgrade is done.
//!
//! Why not actix-web-actors: its actor lives inside the HTTP dispatcher's
//! response body, and the dispatcher keeps an 8 KiB read buffer and an
//! 8 KiB write buffer per connection for the socket's whole life (measured:
//! 11.4 KiB RSS per idle connection, 72.8 KiB after one large frame). Here
//! an idle connection holds no buffer at all: reads go through a buffer on
//! the stack and only an incomplete frame is kept; writes hand the shared
//! bytes of each frame (one encoding per broadcast) to the kernel with one
//! `writev` per wake-up, keeping only what the kernel refused.
//!
//! [`Transport`] is the socket and its two queues; [`WebSocketActor`] is
//! what an actor that owns one implements; [`Transport::start`] spawns the
//! future that reads, hands whole frames to the actor and writes.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{self, Poll, Waker};

use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{CloseReason, Codec, Frame, Message, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A byte stream a WebSocket runs over: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> Io for T {}

/// The socket of an upgraded connection.
pub type Socket = Box<dyn Io>;

/// What the HTTP side hands over once it has answered an upgrade with 101:
/// the socket and whatever the client sent after its request (its first
/// frames may already be there).
pub struct Upgraded {
    /// The connection's socket.
    pub socket: Socket,
    /// Bytes read past the end of the upgrade request.
    pub early: BytesMut,
}

/// Starts the actor that will own an upgraded socket. An upgrade handler
/// puts one in its 101 response's extensions; the server's upgrade hook
/// takes it out, writes the response and calls it with the socket.
pub struct StartConnection(Box<dyn FnOnce(Upgraded)>);

impl StartConnection {
    /// Wraps the function that starts the socket's actor.
    pub fn new(start: impl FnOnce(Upgraded) + 'static) -> Self {
        StartConnection(Box::new(start))
    }

    /// Starts the actor on the current arbiter.
    pub fn start(self, upgraded: Upgraded) {
        (self.0)(upgraded)
    }
}

/// Why reading a connection's messages stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A frame broke the WebSocket framing rules (the stream cannot be
    /// read further), or was larger than the size limit.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// A text frame that is not UTF-8.
    #[error("text frame is not valid UTF-8")]
    NotUtf8,
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// What a socket-owning actor implements for [`Transport::start`]'s future.
pub trait WebSocketActor: Actor<Context = Context<Self>> {
    /// The actor's transport.
    fn transport(&mut self) -> &mut Transport;

    /// One decoded frame, or why reading stopped.
    fn received(&mut self, item: Result<Message, ReadError>, ctx: &mut Context<Self>);

    /// The socket caught up (half the high-water mark written) after
    /// [`Transport::is_behind`] said it was behind: queue what was held back.
    fn writable(&mut self, _ctx: &mut Context<Self>) {}
}

/// One encoded frame waiting for the socket: its header and its shared
/// payload, and how much of the two has been written.
struct Outgoing {
    header: [u8; 10],
    header_len: u8,
    payload: Bytes,
    written: usize,
}

impl Outgoing {
    /// An unmasked server frame with this opcode (always final).
    fn new(opcode: u8, payload: Bytes) -> Self {
        let mut header = [0u8; 10];
        header[0] = 0x80 | opcode;
        let len = payload.len();
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if let Ok(len) = u16::try_from(len) {
            header[1] = 126;
            header[2..4].copy_from_slice(&len.to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Outgoing {
            header,
            header_len,
            payload,
            written: 0,
        }
    }

    fn len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len()
    }

    /// The unwritten parts, as at most two slices.
    fn slices(&self) -> [&[u8]; 2] {
        let header = usize::from(self.header_len);
        if self.written < header {
            [&self.header[self.written..header], &self.payload[..]]
        } else {
            [&[], &self.payload[self.written - header..]]
        }
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Frames written per `writev` at most (two slices each).
const FRAMES_PER_WRITE: usize = 64;

/// Bytes read from the socket per `read` (into a buffer on the stack).
const READ_CHUNK: usize = 8 * 1024;

/// Frames handed to the actor per wake-up before the others get a turn.
const FRAMES_PER_WAKE: usize = 64;

/// A WebSocket connection's socket, its inbound bytes not yet a whole
/// frame, and its outbound frames not yet written.
pub struct Transport {
    socket: Socket,
    codec: Codec,
    /// Bytes of an incomplete frame; empty and unallocated between frames.
    inbound: BytesMut,
    outbound: VecDeque<Outgoing>,
    outbound_bytes: usize,
    /// Queued bytes above which the connection holds new frames back.
    high_water: usize,
    /// A connection held frames back because the socket was behind.
    held_back: bool,
    /// No more reading: end of stream, a broken frame, or closing.
    reading_done: bool,
    /// Once everything queued is written, shut the socket down and stop.
    ending: bool,
    /// The task driving this transport, woken when a frame is queued
    /// from outside its own poll.
    waker: Option<Waker>,
    polling: bool,
    wake_pending: bool,
}

impl Transport {
    /// A transport over `upgraded`, refusing messages larger than
    /// `max_frame_bytes`, and [behind](Transport::is_behind) once more than
    /// `high_water` bytes wait for the socket.
    pub fn new(upgraded: Upgraded, max_frame_bytes: usize, high_water: usize) -> Self {
        let Upgraded { socket, early } = upgraded;
        Transport {
            socket,
            codec: Codec::new().max_size(max_frame_bytes),
            // A right-sized copy: the request's own buffer must not live on.
            inbound: if early.is_empty() {
                BytesMut::new()
            } else {
                BytesMut::from(&early[..])
            },
            outbound: VecDeque::new(),
            outbound_bytes: 0,
            high_water,
            held_back: false,
            reading_done: false,
            ending: false,
            waker: None,
            polling: false,
            wake_pending: false,
        }
    }

    /// Spawns the future that drives the transport of the actor `ctx`
    /// belongs to; it ends when the actor stops.
    pub fn start<A: WebSocketActor>(ctx: &mut Context<A>) {
        ctx.spawn(Drive);
    }

    /// Queues a text frame.
    pub fn text(&mut self, text: ByteString) {
        self.queue(OP_TEXT, text.into_bytes());
    }

    /// Queues a ping.
    pub fn ping(&mut self, payload: &[u8]) {
        self.queue(OP_PING, Bytes::copy_from_slice(payload));
    }

    /// Queues a pong.
    pub fn pong(&mut self, payload: Bytes) {
        self.queue(OP_PONG, payload);
    }

    /// Queues a close frame (with a code and reason, or empty): the last
    /// frame, after everything queued before it.
    pub fn close(&mut self, reason: Option<CloseReason>) {
        let mut payload = BytesMut::new();
        if let Some(reason) = reason {
            payload.extend_from_slice(&u16::from(reason.code).to_be_bytes());
            if let Some(description) = reason.description {
                // A control frame's payload is at most 125 bytes.
                let mut end = description.len().min(123);
                while !description.is_char_boundary(end) {
                    end -= 1;
                }
                payload.extend_from_slice(&description.as_bytes()[..end]);
            }
        }
        self.queue(OP_CLOSE, payload.freeze());
    }

    /// Ends the connection once everything queued is written: the socket
    /// is shut down and the actor stopped. Nothing more is read.
    pub fn end(&mut self) {
        self.ending = true;
        self.reading_done = true;
        self.wake();
    }

    /// Whether the inbound stream broke (a frame could not be decoded), so
    /// no answer to a close frame can be read.
    pub fn is_broken(&self) -> bool {
        self.reading_done && !self.ending
    }

    /// Whether more than the high-water mark waits for the socket. A
    /// connection then leaves new frames in its bounded outbox, where a
    /// client that stopped reading runs into the slow-consumer policy,
    /// until [`WebSocketActor::writable`] (half the mark written): so this
    /// queue holds at most the mark and one batch of the outbox.
    pub fn is_behind(&mut self) -> bool {
        if self.outbound_bytes > self.high_water {
            self.held_back = true;
        }
        self.held_back
    }

    fn queue(&mut self, opcode: u8, payload: Bytes) {
        let frame = Outgoing::new(opcode, payload);
        self.outbound_bytes += frame.len();
        self.outbound.push_back(frame);
        self.wake();
    }

    /// Makes sure the driving future runs soon (it writes when it runs).
    fn wake(&mut self) {
        if self.polling || self.wake_pending {
            return;
        }
        if let Some(waker) = &self.waker {
            self.wake_pending = true;
            waker.wake_by_ref();
        }
    }

    /// The next inbound frame, `None` at the end of the stream.
    fn poll_frame(
        &mut self,
        cx: &mut task::Context<'_>,
    ) -> Poll<Option<Result<Message, ReadError>>> {
        loop {
            if !self.inbound.is_empty() {
                match Decoder::decode(&mut self.codec, &mut self.inbound) {
                    Ok(Some(frame)) => {
                        if self.inbound.is_empty() {
                            // Free what the frame does not share.
                            self.inbound = BytesMut::new();
                        }
                        return Poll::Ready(Some(message(frame)));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.reading_done = true;
                        self.inbound = BytesMut::new();
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.socket).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    self.reading_done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    self.reading_done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(())) => self.inbound.extend_from_slice(buf.filled()),
            }
        }
    }

    /// Writes what is queued until the queue is empty or the socket is
    /// full; says whether it went under half the high-water mark while
    /// frames were held back.
    fn poll_write(&mut self, cx: &mut task::Context<'_>) -> Poll<io::Result<bool>> {
        while !self.outbound.is_empty() {
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut count = 0;
            for frame in self.outbound.iter().take(FRAMES_PER_WRITE) {
                for part in frame.slices() {
                    if !part.is_empty() {
                        slices[count] = IoSlice::new(part);
                        count += 1;
                    }
                }
            }
            let written = match Pin::new(&mut self.socket).poll_write_vectored(cx, &slices[..count])
            {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
            };
            self.advance(written);
        }
        // TLS keeps records in its own buffer until flushed.
        if let Poll::Ready(Err(e)) = Pin::new(&mut self.socket).poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        let drained = self.held_back && self.outbound_bytes <= self.high_water / 2;
        if drained {
            self.held_back = false;
        }
        Poll::Ready(Ok(drained))
    }

    fn advance(&mut self, mut written: usize) {
        self.outbound_bytes -= written;
        while written > 0 {
            let Some(frame) = self.outbound.front_mut() else {
                return;
            };
            let left = frame.len() - frame.written;
            if written < left {
                frame.written += written;
                return;
            }
            written -= left;
            self.outbound.pop_front();
        }
        if self.outbound.is_empty() && self.outbound.capacity() > FRAMES_PER_WRITE {
            self.outbound = VecDeque::new();
        }
    }
}

/// Decodes one frame: a text frame must be UTF-8.
fn message(frame: Frame) -> Result<Message, ReadError> {
    Ok(match frame {
        Frame::Text(bytes) => {
            Message::Text(ByteString::try_from(bytes).map_err(|_| ReadError::NotUtf8)?)
        }
        Frame::Binary(bytes) => Message::Binary(bytes),
        Frame::Continuation(item) => Message::Continuation(item),
        Frame::Ping(bytes) => Message::Ping(bytes),
        Frame::Pong(bytes) => Message::Pong(bytes),
        Frame::Close(reason) => Message::Close(reason),
    })
}

/// The future that reads, hands frames to the actor and writes, for the
/// life of the actor.
struct Drive;

impl<A: WebSocketActor> ActorFuture<A> for Drive {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        cx: &mut task::Context<'_>,
    ) -> Poll<()> {
        let transport = act.transport();
        transport.polling = true;
        transport.wake_pending = false;
        if !transport
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            transport.waker = Some(cx.waker().clone());
        }

        let mut handed = 0;
        // A frame whose handling waits (`ctx.wait`) holds back the next
        // ones, as it holds back the actor's mailbox.
        while !act.transport().reading_done && ctx.state() == ActorState::Running && !ctx.waiting()
        {
            match act.transport().poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    // The client hung up without a close handshake.
                    ctx.stop();
                    return Poll::Ready(());
                }
                Poll::Ready(Some(item)) => act.received(item, ctx),
            }
            handed += 1;
            if handed == FRAMES_PER_WAKE {
                cx.waker().wake_by_ref();
                break;
            }
        }

        let result = loop {
            match act.transport().poll_write(cx) {
                Poll::Ready(Ok(true)) => {
                    act.writable(ctx);
                    if act.transport().outbound.is_empty() {
                        break Ok(());
                    }
                }
                Poll::Ready(Ok(false)) | Poll::Pending => break Ok(()),
                Poll::Ready(Err(e)) => break Err(e),
            }
        };
        let transport = act.transport();
        transport.polling = false;
        if let Err(e) = result {
            log::debug!("WebSocket write failed: {e}");
            ctx.stop();
            return Poll::Ready(());
        }
        if transport.ending
            && transport.outbound.is_empty()
            && Pin::new(&mut transport.socket).poll_shutdown(cx).is_ready()
        {
            ctx.stop();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &Outgoing) -> Vec<u8> {
        let [head, body] = frame.slices();
        [head, body].concat()
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        let short = Outgoing::new(OP_TEXT, Bytes::from_static(b"hi"));
        assert_eq!(encoded(&short), b"\x81\x02hi");
        let medium = Outgoing::new(OP_TEXT, Bytes::from(vec![b'm'; 300]));
        assert_eq!(&encoded(&medium)[..4], &[0x81, 126, 0x01, 0x2c]);
        let long = Outgoing::new(OP_TEXT, Bytes::from(vec![b'a'; 70_000]));
        assert_eq!(
            &encoded(&long)[..10],
            &[0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
    }

    #[test]
    fn a_partly_written_frame_resumes_where_the_kernel_stopped() {
        let mut frame = Outgoing::new(OP_TEXT, Bytes::from_static(b"hello"));
        frame.written = 1;
        assert_eq!(frame.slices(), [&b"\x05"[..], &b"hello"[..]]);
        frame.written = 4;
        assert_eq!(frame.slices(), [&b""[..], &b"llo"[..]]);
    }
}
