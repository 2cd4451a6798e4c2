//! ONC RPC over TCP (RFC 5531 section 11, record marking), for MOUNT: a
//! record is fragments each led by a 4-byte word (last-fragment bit, 31-bit
//! length); every record is one call, answered with one single-fragment
//! record through the project's [`Dispatcher`].

use rdmaxprt::service::Dispatcher;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Largest call record accepted (MOUNT calls are a few hundred bytes).
pub const MAX_RECORD: usize = 64 * 1024;

const LAST: u32 = 0x8000_0000;

/// Reads one record; `Ok(None)` at a clean end of stream.
pub fn read_record(r: &mut impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut rec = Vec::new();
    loop {
        let mut h = [0u8; 4];
        match r.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && rec.is_empty() => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let h = u32::from_be_bytes(h);
        let len = (h & !LAST) as usize;
        if rec.len() + len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record over {max} bytes"),
            ));
        }
        let at = rec.len();
        rec.resize(at + len, 0);
        r.read_exact(&mut rec[at..])?;
        if h & LAST != 0 {
            return Ok(Some(rec));
        }
    }
}

/// Writes `parts` as one single-fragment record.
pub fn write_record(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .ok()
        .filter(|l| l & LAST == 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "reply too long"))?;
    let mut buf = Vec::with_capacity(4 + len as usize);
    buf.extend_from_slice(&(len | LAST).to_be_bytes());
    parts.iter().for_each(|p| buf.extend_from_slice(p));
    w.write_all(&buf)
}

fn serve_conn(mut s: TcpStream, d: &Dispatcher) -> io::Result<()> {
    while let Some(call) = read_record(&mut s, MAX_RECORD)? {
        let Some(r) = d.dispatch(&call) else { continue };
        let bulk = r.bulk(&call).unwrap_or(&[]);
        write_record(&mut s, &[&r.header, &r.body.results, bulk])?;
    }
    Ok(())
}

/// A TCP RPC server running in threads (one per connection).
#[derive(Debug)]
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Serves `d` on `listener`.
    pub fn spawn(listener: TcpListener, d: Arc<Dispatcher>) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let accept = std::thread::Builder::new()
            .name("mountd-accept".into())
            .spawn(move || {
                for s in listener.incoming() {
                    if st.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let d = d.clone();
                    let _ = std::thread::Builder::new()
                        .name("mountd-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve_conn(s, &d) {
                                eprintln!("mount connection: {e}");
                            }
                        });
                }
            })?;
        Ok(Self {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (connections in progress finish on their own).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Calls MOUNT v3 MNT for `path` on `host:port` over TCP (AUTH_NONE);
/// returns the handle. For self-tests and tests.
pub fn mnt(host: &str, port: u16, path: &[u8]) -> io::Result<Vec<u8>> {
    use nfs3_types::mount::{dirpath, mountres3};
    use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
    use rdmaxprt_core::oncrpc::{decode_reply, encode_call, AcceptStat, CallSpec, ReplyStat};
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let spec = CallSpec {
        xid: 1,
        prog: nfs3_types::mount::PROGRAM,
        vers: nfs3_types::mount::VERSION,
        proc: 1,
        cred: None,
    };
    let mut call = vec![0; spec.encoded_len()];
    let n = encode_call(&mut call, &spec).map_err(|_| bad("encoding the call"))?;
    call.truncate(n);
    dirpath(Opaque::borrowed(path))
        .pack(&mut call)
        .map_err(|_| bad("encoding the path"))?;
    let mut s = TcpStream::connect((host, port))?;
    write_record(&mut s, &[&call])?;
    let rec = read_record(&mut s, MAX_RECORD)?.ok_or_else(|| bad("no reply"))?;
    let reply = decode_reply(&rec).map_err(|_| bad("malformed reply"))?;
    if reply.stat != ReplyStat::Accepted(AcceptStat::Success) {
        return Err(bad("MNT not accepted"));
    }
    let mut body = rec.get(reply.body_offset..).unwrap_or(&[]);
    match mountres3::unpack(&mut body) {
        Ok((mountres3::Ok(ok), _)) => Ok(ok.fhandle.0.to_vec()),
        Ok((mountres3::Err(e), _)) => Err(bad(&format!("MNT: {e}"))),
        Err(_) => Err(bad("malformed MNT result")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_join_fragments_and_refuse_oversize() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(2 | LAST).to_be_bytes());
        wire.extend_from_slice(b"de");
        let mut r = &wire[..];
        assert_eq!(read_record(&mut r, 16).unwrap().unwrap(), b"abcde");
        assert!(read_record(&mut r, 16).unwrap().is_none());
        let big = (100 | LAST).to_be_bytes();
        assert!(read_record(&mut &big[..], 16).is_err());
        let mut out = Vec::new();
        write_record(&mut out, &[b"ab", b"c"]).unwrap();
        assert_eq!(out, [0x80, 0, 0, 3, b'a', b'b', b'c']);
    }
}
