//! AMQP 0-9-1 frames on the wire: methods and content headers are read and written with
//! amq-protocol's parser and serializer; body frames and heartbeats, the bulk of the bytes, are
//! split off the read buffer without a copy (amq-protocol collects a body byte by byte).

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::AMQPClass;
use bytes::{Buf, Bytes, BytesMut};

/// What opens every connection: `AMQP` 0 0 9 1.
pub(super) const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

const FRAME_END: u8 = 0xCE;
/// Frame type, channel and size before the payload, and the end octet after it.
const OVERHEAD: usize = 8;

/// One frame read from the server.
#[derive(Debug)]
pub(super) enum Frame {
    Method(u16, AMQPClass),
    Header(AMQPContentHeader),
    Body(Bytes),
    Heartbeat,
}

/// Takes one whole frame off the front of `buf`; `None` until one is there.
pub(super) fn take(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let (kind, channel) = (buf[0], u16::from_be_bytes([buf[1], buf[2]]));
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if buf.len() < size + OVERHEAD {
        return Ok(None);
    }
    if buf[7 + size] != FRAME_END {
        return Err(format!("frame of type {kind} on channel {channel} lacks its end octet"));
    }
    match kind {
        3 => {
            let mut f = buf.split_to(size + OVERHEAD);
            f.advance(7);
            f.truncate(size);
            Ok(Some(Frame::Body(f.freeze())))
        }
        8 => {
            buf.advance(size + OVERHEAD);
            Ok(Some(Frame::Heartbeat))
        }
        1 | 2 => {
            let f = buf.split_to(size + OVERHEAD);
            match parse_frame(&f[..]) {
                Ok((_, AMQPFrame::Method(c, m))) => Ok(Some(Frame::Method(c, m))),
                Ok((_, AMQPFrame::Header(_, h))) => Ok(Some(Frame::Header(h))),
                Ok((_, other)) => Err(format!("unexpected frame {other}")),
                Err(e) => Err(format!("unreadable frame of type {kind} on channel {channel}: {e:?}")),
            }
        }
        other => Err(format!("unknown frame type {other} on channel {channel}")),
    }
}

fn put(out: &mut Vec<u8>, frame: &AMQPFrame) {
    let buf = std::mem::take(out);
    *out = cookie_factory::gen_simple(gen_frame(frame), buf).expect("a frame serializes into a growable buffer");
}

/// Appends a method frame.
pub(super) fn put_method(out: &mut Vec<u8>, channel: u16, method: AMQPClass) {
    put(out, &AMQPFrame::Method(channel, method));
}

/// Appends the content header and body frames of a message (after its `basic.publish`).
pub(super) fn put_content(out: &mut Vec<u8>, channel: u16, properties: AMQPProperties, body: &[u8], frame_max: usize) {
    let header = AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties };
    put(out, &AMQPFrame::Header(channel, header));
    for chunk in body.chunks(frame_max.max(4096) - OVERHEAD) {
        out.reserve(chunk.len() + OVERHEAD);
        out.push(3);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
        out.push(FRAME_END);
    }
}

/// Appends a heartbeat frame.
pub(super) fn put_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::basic;

    #[test]
    fn frames_written_are_read_back() {
        let mut out = Vec::new();
        put_method(
            &mut out,
            1,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 7, multiple: true })),
        );
        let body = vec![b'x'; 10_000];
        put_content(&mut out, 1, AMQPProperties::default().with_priority(3), &body, 4096);
        put_heartbeat(&mut out);
        let mut buf = BytesMut::from(&out[..]);
        assert!(matches!(take(&mut buf), Ok(Some(Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Ack(a)))))
            if a.delivery_tag == 7 && a.multiple));
        let Ok(Some(Frame::Header(h))) = take(&mut buf) else { panic!("header") };
        assert_eq!((h.body_size, *h.properties.priority()), (10_000, Some(3)));
        let mut got = Vec::new();
        while let Ok(Some(Frame::Body(b))) = take(&mut buf) {
            got.extend_from_slice(&b);
            if got.len() == body.len() {
                break;
            }
        }
        assert_eq!(got, body);
        assert!(matches!(take(&mut buf), Ok(Some(Frame::Heartbeat))));
        assert!(matches!(take(&mut buf), Ok(None)));
    }
}
