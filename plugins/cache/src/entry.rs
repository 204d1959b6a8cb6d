//! A cached response as bytes in the kv store: status, headers, body and
//! when it was stored, in a length-prefixed binary layout (no JSON escaping
//! or base64 for bodies).

/// Marks the layout, so an entry from another format is a miss, not garbage.
const MAGIC: &[u8; 4] = b"WGC1";

/// One stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it was stored, in ms since the Unix epoch (for `Age`).
    pub stored_at_ms: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Entry {
    /// `WGC1`, stored time, status, header count, each name and value, body;
    /// numbers big-endian, strings and body prefixed by their u32 length.
    pub fn encode(&self) -> Vec<u8> {
        let size = self
            .headers
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(22 + size + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.stored_at_ms.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        put_len(&mut out, self.headers.len());
        for (name, value) in &self.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_bytes(&mut out, &self.body);
        out
    }

    /// Reads [`Entry::encode`]'s bytes; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut reader = Reader(bytes);
        if reader.take(4)? != MAGIC {
            return None;
        }
        let stored_at_ms = u64::from_be_bytes(reader.take(8)?.try_into().ok()?);
        let status = u16::from_be_bytes(reader.take(2)?.try_into().ok()?);
        let count = reader.len()?;
        let mut headers = Vec::with_capacity(count.min(256));
        for _ in 0..count {
            headers.push((reader.string()?, reader.string()?));
        }
        let body = reader.bytes()?.to_vec();
        reader.0.is_empty().then_some(Entry {
            stored_at_ms,
            status,
            headers,
            body,
        })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A cursor over stored bytes; every read checks the length first.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        let bytes = self.take(4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}
