//! MOUNT v3 over TCP (record marking): MNT, EXPORT, UMNT, NULL, errors.

mod common;

use nfs3_types::mount::{self as m3, dirpath, exports, mountres3};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use rdmaxprt_core::oncrpc::{decode_reply, encode_call, AcceptStat, CallSpec, ReplyStat};
use rdmaxprt_nfs_server::setup::Services;
use rdmaxprt_nfs_server::tcp::{self, read_record, write_record, TcpServer};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn call(s: &mut TcpStream, xid: u32, proc: u32, args: &[u8]) -> (ReplyStat, Vec<u8>) {
    let spec = CallSpec {
        xid,
        prog: m3::PROGRAM,
        vers: m3::VERSION,
        proc,
        cred: None,
    };
    let mut m = vec![0; spec.encoded_len()];
    let n = encode_call(&mut m, &spec).unwrap();
    m.truncate(n);
    write_record(s, &[&m, args]).unwrap();
    let rec = read_record(s, tcp::MAX_RECORD).unwrap().expect("a reply");
    let r = decode_reply(&rec).unwrap();
    assert_eq!(r.xid, xid);
    (r.stat, rec[r.body_offset..].to_vec())
}

#[test]
fn mnt_export_umnt_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Services::new(&common::export_cfg(dir.path(), common::no_squash())).unwrap();
    let root = svc.export.root_handle();
    let srv = TcpServer::spawn(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Arc::new(svc.mount),
    )
    .unwrap();
    let port = srv.local_addr().port();
    assert_eq!(tcp::mnt("127.0.0.1", port, b"/export").unwrap(), root);
    assert_eq!(tcp::mnt("127.0.0.1", port, b"/export/").unwrap(), root);
    let err = tcp::mnt("127.0.0.1", port, b"/elsewhere").unwrap_err();
    assert!(err.to_string().contains("MNT3ERR_NOENT"), "{err}");

    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ok = ReplyStat::Accepted(AcceptStat::Success);
    assert_eq!(call(&mut s, 1, 0, &[]), (ok, Vec::new()));
    let (st, body) = call(&mut s, 2, 5, &[]);
    assert_eq!(st, ok);
    let (ex, _) = exports::unpack(&mut &body[..]).unwrap();
    assert_eq!(ex.0.len(), 1);
    assert_eq!(ex.0[0].ex_dir.0.as_ref(), b"/export");
    let mut p = Vec::new();
    dirpath(Opaque::borrowed(b"/export")).pack(&mut p).unwrap();
    assert_eq!(call(&mut s, 3, 3, &p), (ok, Vec::new()), "UMNT");
    let (st, body) = call(&mut s, 4, 1, &p);
    assert_eq!(st, ok);
    assert!(matches!(
        mountres3::unpack(&mut &body[..]),
        Ok((mountres3::Ok(_), _))
    ));
    // Malformed path, unknown procedure: RPC errors, connection kept.
    assert_eq!(
        call(&mut s, 5, 1, &[0, 0, 1]).0,
        ReplyStat::Accepted(AcceptStat::GarbageArgs)
    );
    assert_eq!(
        call(&mut s, 6, 9, &[]).0,
        ReplyStat::Accepted(AcceptStat::ProcUnavail)
    );
    assert_eq!(call(&mut s, 7, 0, &[]).0, ok);
    drop(s);
    srv.stop();
}
