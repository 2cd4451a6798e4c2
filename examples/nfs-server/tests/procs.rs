//! The NFSv3 server over the mock NIC, continued: SETATTR, ACCESS,
//! FSSTAT, PATHCONF, the CREATE modes, bad names, concurrent clients.

mod common;

use common::*;
use nfs3_types::nfs3::{self as n3, nfsstat3, stable_how, Nfs3Option, Nfs3Result};
use rdmaxprt::client::CallOptions;

#[test]
fn setattr_access_fsstat_pathconf_and_exclusive_create() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let root = c.root.clone();
    let f = c.create(&root, b"f").unwrap();
    c.write(&f, 0, &data(10000, 9), stable_how::FILE_SYNC)
        .unwrap();
    // SETATTR: size and mode; a stale guard is NOT_SYNC and changes nothing.
    let before = c.getattr(&f).unwrap();
    let set = |size, mode, guard| n3::SETATTR3args {
        object: fh(&f),
        new_attributes: n3::sattr3 {
            size,
            mode,
            ..Default::default()
        },
        guard,
    };
    let stale_guard = Nfs3Option::Some(n3::nfstime3 {
        seconds: before.ctime.seconds.wrapping_sub(100),
        nseconds: 0,
    });
    let r = c
        .call(
            2,
            &pack(&set(Nfs3Option::Some(5), Nfs3Option::None, stale_guard)),
            &CallOptions::default(),
        )
        .unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3ERR_NOT_SYNC);
    assert_eq!(c.getattr(&f).unwrap().size, 10000);
    let r: n3::SETATTR3res = c.rpc(
        2,
        &set(
            Nfs3Option::Some(5),
            Nfs3Option::Some(0o600),
            Nfs3Option::Some(before.ctime),
        ),
    );
    assert!(matches!(r, Nfs3Result::Ok(_)));
    let after = c.getattr(&f).unwrap();
    assert_eq!((after.size, after.mode & 0o7777), (5, 0o600));
    assert_eq!(std::fs::metadata(dir.path().join("f")).unwrap().len(), 5);
    // ACCESS as the owner of a directory.
    let acc: n3::ACCESS3res = c.rpc(
        4,
        &n3::ACCESS3args {
            object: fh(&root),
            access: 0x3f,
        },
    );
    let Nfs3Result::Ok(acc) = acc else {
        panic!("ACCESS failed")
    };
    let want = n3::ACCESS3_READ
        | n3::ACCESS3_LOOKUP
        | n3::ACCESS3_MODIFY
        | n3::ACCESS3_EXTEND
        | n3::ACCESS3_DELETE;
    assert_eq!(acc.access, want);
    // FSSTAT and PATHCONF.
    let r: n3::FSSTAT3res = c.rpc(18, &n3::FSSTAT3args { fsroot: fh(&root) });
    let Nfs3Result::Ok(st) = r else {
        panic!("FSSTAT failed")
    };
    assert!(st.tbytes >= st.fbytes && st.fbytes >= st.abytes && st.tbytes > 0);
    let r: n3::PATHCONF3res = c.rpc(20, &n3::PATHCONF3args { object: fh(&root) });
    let Nfs3Result::Ok(pc) = r else {
        panic!("PATHCONF failed")
    };
    assert_eq!(pc.name_max, 255);
    // CREATE EXCLUSIVE: a retransmission (same verifier) succeeds with the
    // same file, another verifier is EXIST.
    let excl = |v: u8| n3::CREATE3args {
        where_: dirop(&root, b"x"),
        how: n3::createhow3::EXCLUSIVE(n3::createverf3([v; 8])),
    };
    let h = |r: n3::CREATE3res| match r {
        Nfs3Result::Ok(n3::CREATE3resok {
            obj: Nfs3Option::Some(h),
            ..
        }) => Ok(h.data.to_vec()),
        Nfs3Result::Ok(_) => panic!("no handle"),
        Nfs3Result::Err((s, _)) => Err(s),
    };
    let first = h(c.rpc(8, &excl(3))).unwrap();
    assert_eq!(h(c.rpc(8, &excl(3))).unwrap(), first);
    assert_eq!(h(c.rpc(8, &excl(4))).unwrap_err(), nfsstat3::NFS3ERR_EXIST);
    // GUARDED on an existing name: EXIST; UNCHECKED: the same file.
    assert_eq!(c.create(&root, b"f").unwrap_err(), nfsstat3::NFS3ERR_EXIST);
    let unchecked = n3::CREATE3args {
        where_: dirop(&root, b"f"),
        how: n3::createhow3::UNCHECKED(n3::sattr3::default()),
    };
    assert_eq!(h(c.rpc(8, &unchecked)).unwrap(), f);
    // Names: too long, with a slash, dot-dot.
    assert_eq!(
        c.create(&root, &[b'a'; 256]).unwrap_err(),
        nfsstat3::NFS3ERR_NAMETOOLONG
    );
    assert_eq!(
        c.create(&root, b"a/b").unwrap_err(),
        nfsstat3::NFS3ERR_ACCES
    );
    assert_eq!(c.mkdir(&root, b"..").unwrap_err(), nfsstat3::NFS3ERR_INVAL);
    c.stop();
}

#[test]
fn concurrent_clients_write_and_read_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let mut k = c.another(me());
            std::thread::spawn(move || {
                let root = k.root.clone();
                let d = k.mkdir(&root, format!("t{t}").as_bytes()).unwrap();
                for i in 0..20u64 {
                    let h = k.create(&d, format!("f{i}").as_bytes()).unwrap();
                    let want = data(1000 + 997 * i as usize, t * 100 + i);
                    k.write(&h, 0, &want, stable_how::FILE_SYNC).unwrap();
                    let (got, eof) = k.read(&h, 0, 1 << 20).unwrap();
                    assert!(eof && got == want, "client {t} file {i}");
                }
                k.close();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    for t in 0..4 {
        assert_eq!(
            std::fs::read_dir(dir.path().join(format!("t{t}")))
                .unwrap()
                .count(),
            20
        );
    }
    let report = c.stop();
    assert_eq!(report.freed, 5, "every transport freed");
}
