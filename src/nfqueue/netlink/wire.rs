//! The netlink wire format: messages built whole into a buffer, and messages and attributes read
//! bounds-checked (see the promises of `super`). No system call and no `unsafe` here.

use super::{NFGENMSG_LEN, NFNETLINK_V0, NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK, NLMSG_HDRLEN};

// ---- building messages ----------------------------------------------------------------------

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends the headers of an nfnetlink message (nlmsghdr, nfgenmsg) to `b`: `ty` is
/// `(subsystem << 8) | message`, `res_id` the resource (a queue number) in network order. Returns where
/// the message starts, for [`end_msg`].
pub fn begin_msg(b: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by end_msg
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills in ours
    b.push(family);
    b.push(NFNETLINK_V0);
    b.extend_from_slice(&res_id.to_be_bytes());
    start
}

/// Writes the length of the message begun at `start` and pads it to 4 bytes.
pub fn end_msg(b: &mut Vec<u8>, start: usize) {
    let len = b.len() - start;
    b[start..start + 4].copy_from_slice(&(len as u32).to_ne_bytes());
    b.resize(start + align4(len), 0);
}

pub fn put_attr(b: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = (NLA_HDRLEN + data.len()) as u16;
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(data);
    b.resize(align4(b.len()), 0);
}

pub fn put_u8(b: &mut Vec<u8>, ty: u16, v: u8) {
    put_attr(b, ty, &[v]);
}

pub fn put_be16(b: &mut Vec<u8>, ty: u16, v: u16) {
    put_attr(b, ty, &v.to_be_bytes());
}

pub fn put_be32(b: &mut Vec<u8>, ty: u16, v: u32) {
    put_attr(b, ty, &v.to_be_bytes());
}

/// Opens a nested attribute; the attributes appended until [`end_nest`] are its payload.
pub fn begin_nest(b: &mut Vec<u8>, ty: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&0u16.to_ne_bytes()); // nla_len, set by end_nest
    b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

pub fn end_nest(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

// ---- reading messages (bounds-checked, never panics) ----------------------------------------

/// A length field that does not fit the bytes around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// One netlink message: its header fields and its payload (what follows the 16-byte header).
#[derive(Clone, Copy, Debug)]
pub struct NlMsg<'a> {
    pub ty: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// The errno of an NLMSG_ERROR (0 for an ACK) or NLMSG_DONE (0 when the dump went well), as a
    /// positive number. `None` when the payload is too short to say.
    pub fn errno(&self) -> Option<i32> {
        let error = i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?);
        error.checked_neg()
    }

    /// The nfgenmsg of an nfnetlink message: (address family, resource id, attributes).
    pub fn nfgen(&self) -> Option<(u8, u16, Attrs<'a>)> {
        let hdr = self.payload.get(..NFGENMSG_LEN)?;
        let attrs = Attrs::new(self.payload.get(NFGENMSG_LEN..)?);
        Some((hdr[0], u16::from_be_bytes([hdr[2], hdr[3]]), attrs))
    }
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The messages of one datagram. After a header whose length does not fit, yields [`Malformed`] once
/// and stops.
#[derive(Clone, Debug)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<NlMsg<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = std::mem::take(&mut self.rest);
        let len = ne_u32(buf, 0).map_or(0, |l| l as usize);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Some(Err(Malformed));
        }
        let msg = (|| {
            Some(NlMsg {
                ty: ne_u16(buf, 4)?,
                seq: ne_u32(buf, 8)?,
                payload: buf.get(NLMSG_HDRLEN..len)?,
            })
        })();
        // The last message's padding may be missing.
        self.rest = buf.get(align4(len).min(buf.len())..).unwrap_or_default();
        Some(msg.ok_or(Malformed))
    }
}

/// The attributes of a message or of a nested attribute: (type without flag bits, payload). After a
/// length that does not fit, yields [`Malformed`] once and stops.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let buf = std::mem::take(&mut self.rest);
        let len = ne_u16(buf, 0).map_or(0, usize::from);
        let (Some(ty), Some(data)) = (ne_u16(buf, 2), buf.get(NLA_HDRLEN..len)) else {
            return Some(Err(Malformed));
        };
        self.rest = buf.get(align4(len).min(buf.len())..).unwrap_or_default();
        Some(Ok((ty & NLA_TYPE_MASK, data)))
    }
}

/// A one-byte attribute.
pub fn u8_attr(d: &[u8]) -> Option<u8> {
    match d {
        [v] => Some(*v),
        _ => None,
    }
}

/// A two-byte attribute in network order.
pub fn be16(d: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(d.try_into().ok()?))
}

/// A four-byte attribute in network order.
pub fn be32(d: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(d.try_into().ok()?))
}
