//! MQTT bytes for the fake broker: reading the client's packets defensively
//! (every length is checked, nothing panics) and encoding the broker's
//! packets by hand, so a script can send exactly what it means to, valid or
//! not.

use super::PacketKind;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest remaining length MQTT can express (four length bytes).
pub const MAX_REMAINING: usize = 268_435_455;

/// Client packets larger than this are read only this far and the rest
/// discarded: the test kit never buffers a hostile-sized packet.
pub(super) const BODY_CAP: usize = 16 * 1024 * 1024;

/// One packet from the client: its first byte, its true remaining length,
/// and its body (at most [`BODY_CAP`] bytes of it).
pub(super) struct RawPacket {
    pub header: u8,
    pub len: usize,
    pub body: Vec<u8>,
}

impl RawPacket {
    pub fn kind(&self) -> PacketKind {
        PacketKind::from_type(self.header >> 4)
    }
}

/// Why reading from the client stopped.
pub(super) enum ReadError {
    /// The client closed the socket (or it failed).
    Closed,
    /// Bytes that are not MQTT framing.
    Malformed,
}

/// Appends MQTT's variable-length encoding of `len` (at most [`MAX_REMAINING`]).
pub fn encode_remaining(mut len: usize, out: &mut Vec<u8>) {
    assert!(
        len <= MAX_REMAINING,
        "remaining length {len} exceeds MQTT's maximum"
    );
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return;
        }
    }
}

/// Reads a remaining length: at most four bytes, as the specification says.
pub(super) async fn read_remaining<R: AsyncRead + Unpin>(r: &mut R) -> Result<usize, ReadError> {
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = r.read_u8().await.map_err(|_| ReadError::Closed)?;
        len |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(len);
        }
    }
    Err(ReadError::Malformed)
}

/// Reads one whole packet; bytes past [`BODY_CAP`] are read and dropped.
pub(super) async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<RawPacket, ReadError> {
    let header = r.read_u8().await.map_err(|_| ReadError::Closed)?;
    if header >> 4 == 0 {
        return Err(ReadError::Malformed);
    }
    let len = read_remaining(r).await?;
    let kept = len.min(BODY_CAP);
    let mut body = vec![0; kept];
    r.read_exact(&mut body)
        .await
        .map_err(|_| ReadError::Closed)?;
    if len > kept {
        let skip = (len - kept) as u64;
        let skipped = tokio::io::copy(&mut r.take(skip), &mut tokio::io::sink())
            .await
            .map_err(|_| ReadError::Closed)?;
        if skipped < skip {
            return Err(ReadError::Closed);
        }
    }
    Ok(RawPacket { header, len, body })
}

/// A bounds-checked cursor over a packet body: every read is an `Option`.
pub(super) struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor(bytes)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// Two length bytes, then that many bytes.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A length-prefixed string, lossily decoded (hostile input is recorded,
    /// not rejected).
    pub fn string(&mut self) -> Option<String> {
        Some(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    /// An MQTT 5 property block: its variable-length size, then skipped.
    pub fn skip_properties(&mut self) -> Option<()> {
        let mut len = 0usize;
        for shift in [0, 7, 14, 21] {
            let byte = self.u8()?;
            len |= usize::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return self.take(len).map(|_| ());
            }
        }
        None
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a CONNECT said.
pub(super) struct Connect {
    pub level: u8,
    pub client_id: String,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<(String, Vec<u8>)>,
}

pub(super) fn parse_connect(body: &[u8]) -> Option<Connect> {
    let mut c = Cursor::new(body);
    c.bytes()?; // protocol name: "MQTT", or "MQIsdp" for 3.1
    let level = c.u8()?;
    let flags = c.u8()?;
    let keep_alive = c.u16()?;
    if level == 5 {
        c.skip_properties()?;
    }
    let client_id = c.string()?;
    let will = if flags & 0x04 != 0 {
        if level == 5 {
            c.skip_properties()?;
        }
        Some((c.string()?, c.bytes()?.to_vec()))
    } else {
        None
    };
    let username = if flags & 0x80 != 0 {
        Some(c.string()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(c.bytes()?.to_vec())
    } else {
        None
    };
    Some(Connect {
        level,
        client_id,
        keep_alive,
        username,
        password,
        will,
    })
}

/// A client PUBLISH: topic, packet id (QoS > 0), payload.
pub(super) struct Publish {
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub packet_id: Option<u16>,
    pub payload: Vec<u8>,
}

pub(super) fn parse_publish(header: u8, body: &[u8], v5: bool) -> Option<Publish> {
    let qos = (header >> 1) & 0x03;
    if qos == 3 {
        return None;
    }
    let mut c = Cursor::new(body);
    let topic = c.string()?;
    let packet_id = if qos > 0 { Some(c.u16()?) } else { None };
    if v5 {
        c.skip_properties()?;
    }
    Some(Publish {
        qos,
        retain: header & 0x01 != 0,
        topic,
        packet_id,
        payload: c.rest().to_vec(),
    })
}

/// A client SUBSCRIBE: packet id and filters (options bytes dropped).
pub(super) fn parse_subscribe(body: &[u8], v5: bool) -> Option<(u16, Vec<String>)> {
    let mut c = Cursor::new(body);
    let id = c.u16()?;
    if v5 {
        c.skip_properties()?;
    }
    let mut filters = Vec::new();
    while !c.is_empty() {
        filters.push(c.string()?);
        c.u8()?;
    }
    (!filters.is_empty()).then_some((id, filters))
}

/// An UNSUBSCRIBE: packet id and how many filters.
pub(super) fn parse_unsubscribe(body: &[u8], v5: bool) -> Option<(u16, usize)> {
    let mut c = Cursor::new(body);
    let id = c.u16()?;
    if v5 {
        c.skip_properties()?;
    }
    let mut n = 0;
    while !c.is_empty() {
        c.bytes()?;
        n += 1;
    }
    Some((id, n))
}

/// A whole packet: first byte, remaining length, body.
pub(super) fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    encode_remaining(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

pub(super) fn connack(v5: bool, code: u8) -> Vec<u8> {
    // Session-present 0; MQTT 5 adds an empty property block.
    if v5 {
        packet(0x20, &[0, code, 0])
    } else {
        packet(0x20, &[0, code])
    }
}

/// MQTT 5: reason code, then a Reason String property (0x1F, two length
/// bytes, the raw bytes) if given. MQTT 3.1.1 has no server DISCONNECT
/// body: the bare packet.
pub(super) fn disconnect(v5: bool, reason: u8, reason_string: Option<&[u8]>) -> Vec<u8> {
    if !v5 {
        return packet(0xE0, &[]);
    }
    let mut props = Vec::new();
    if let Some(s) = reason_string {
        let len = u16::try_from(s.len()).expect("a reason string is at most 65535 bytes");
        props.push(0x1F);
        props.extend_from_slice(&len.to_be_bytes());
        props.extend_from_slice(s);
    }
    let mut body = vec![reason];
    encode_remaining(props.len(), &mut body);
    body.extend_from_slice(&props);
    packet(0xE0, &body)
}

/// The remaining length of a PUBLISH the broker sends.
pub(super) fn publish_remaining(topic: usize, payload: usize, qos: u8, v5: bool) -> usize {
    2 + topic + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload
}

/// Everything of a PUBLISH before its payload.
pub(super) fn publish_head(
    topic: &[u8],
    payload_len: usize,
    qos: u8,
    retain: bool,
    packet_id: u16,
    v5: bool,
) -> Vec<u8> {
    let mut out = vec![0x30 | (qos << 1) | u8::from(retain)];
    encode_remaining(
        publish_remaining(topic.len(), payload_len, qos, v5),
        &mut out,
    );
    let topic_len = u16::try_from(topic.len()).expect("a topic is at most 65535 bytes");
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        out.push(0);
    }
    out
}

/// An acknowledgement carrying only a packet id (PUBACK, PUBREC, PUBREL,
/// PUBCOMP; MQTT 5 allows omitting the success reason code).
pub(super) fn ack(header: u8, packet_id: u16) -> Vec<u8> {
    packet(header, &packet_id.to_be_bytes())
}

pub(super) fn suback(v5: bool, packet_id: u16, filters: usize) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    body.extend(std::iter::repeat_n(1u8, filters));
    packet(0x90, &body)
}

pub(super) fn unsuback(v5: bool, packet_id: u16, filters: usize) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
        body.extend(std::iter::repeat_n(0u8, filters));
    }
    packet(0xB0, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_broker_remaining_length_round_trips_the_full_range() {
        for len in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING,
        ] {
            let mut out = Vec::new();
            encode_remaining(len, &mut out);
            let expected = match len {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            };
            assert_eq!(out.len(), expected, "{len}");
            let mut r = out.as_slice();
            assert!(matches!(read_remaining(&mut r).await, Ok(n) if n == len));
        }
        let mut five = [0xFFu8, 0xFF, 0xFF, 0xFF, 0x01].as_slice();
        assert!(matches!(
            read_remaining(&mut five).await,
            Err(ReadError::Malformed)
        ));
    }

    #[test]
    fn fake_broker_parsers_reject_truncated_input_without_panicking() {
        let connect = [
            0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 30, 0, 0, 2, b'i', b'd',
        ];
        let c = parse_connect(&connect).unwrap();
        assert_eq!((c.level, c.client_id.as_str(), c.keep_alive), (5, "id", 30));
        for cut in 0..connect.len() {
            assert!(parse_connect(&connect[..cut]).is_none(), "cut at {cut}");
        }
        assert!(parse_subscribe(&[0, 1, 0, 9, b'a'], false).is_none());
        assert!(parse_publish(0x32, &[0, 1, b'a'], false).is_none());
        assert!(
            Cursor::new(&[0x80, 0x80, 0x80, 0x80, 0])
                .skip_properties()
                .is_none()
        );
    }

    #[test]
    fn fake_broker_disconnect_encodes_the_reason_string_property() {
        let bytes = disconnect(true, 0x8B, Some(b"a\0b"));
        assert_eq!(bytes, [0xE0, 8, 0x8B, 6, 0x1F, 0, 3, b'a', 0, b'b']);
        assert_eq!(disconnect(true, 0, None), [0xE0, 2, 0, 0]);
    }
}
