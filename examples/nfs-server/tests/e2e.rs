//! The NFSv3 server end to end over the mock NIC: files of every size
//! through Read, Write and Reply chunks, a 2,000-entry directory paged by
//! READDIRPLUS, the namespace procedures, handle escapes, stale handles,
//! read-only exports, MKNOD.

mod common;

use common::*;
use nfs3_types::nfs3::{self as n3, nfsstat3, stable_how, Nfs3Option, Nfs3Result};
use rdmaxprt::client::{Auth, CallOptions, ClientError};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::runtime::{ServerConfig, ServerMode, ServerReport};
use rdmaxprt_core::oncrpc::AcceptStat;
use rdmaxprt_nfs_server::nfs::NfsConfig;
use std::collections::BTreeSet;

fn fsinfo(c: &mut Nfs) -> n3::FSINFO3resok {
    let root = c.root.clone();
    match c.rpc::<n3::FSINFO3res>(19, &n3::FSINFO3args { fsroot: fh(&root) }) {
        Nfs3Result::Ok(ok) => ok,
        Nfs3Result::Err((s, _)) => panic!("FSINFO: {s}"),
    }
}

#[test]
fn file_matrix_round_trips_through_read_and_write_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    file_matrix(c, dir.path());
}

/// The file matrix on a poll-group server whose NFS calls run on the
/// groups (`--io-in-groups`): no call is handed to a worker.
#[test]
fn file_matrix_in_poll_groups_runs_every_call_on_its_group() {
    let report = file_matrix_in(ServerMode::PollGroup, false);
    assert_eq!(report.handoffs, 0, "calls handed to workers");
    assert_eq!(report.worker_wakeups, 0, "workers woken");
}

/// The file matrix on a poll-group server whose NFS calls may block (the
/// default): each is handed to a worker thread.
#[test]
fn file_matrix_in_poll_groups_hands_blocking_calls_to_workers() {
    let report = file_matrix_in(ServerMode::PollGroup, true);
    assert_eq!(
        report.handoffs, report.counters.calls,
        "every NFS call handed off"
    );
}

fn file_matrix_in(mode: ServerMode, blocking: bool) -> ServerReport {
    let dir = tempfile::tempdir().unwrap();
    let nfs = NfsConfig {
        blocking,
        ..no_squash()
    };
    let server = ServerConfig {
        mode,
        groups: 2,
        workers: 2,
        policy: Policy::Deferred,
        ..ServerConfig::default()
    };
    let c = Nfs::start_in(&export_cfg(dir.path(), nfs), me(), server);
    let report = file_matrix(c, dir.path());
    assert!(report.counters.calls > 20, "{:?}", report.counters);
    assert_eq!(report.counters.replies, report.counters.calls);
    report
}

/// Writes and reads back files of every size through Read and Write
/// chunks; stops the server and returns its report.
fn file_matrix(mut c: Nfs, dir: &std::path::Path) -> ServerReport {
    let info = fsinfo(&mut c);
    assert_eq!(
        info.rtmax,
        1 << 20,
        "rtmax from the transport's chunk limits"
    );
    assert_eq!(info.wtmax, 1 << 20);
    let root = c.root.clone();
    let sizes = [0usize, 1, 4095, 4096, 4097, 65536, (1 << 20) + 1];
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("f{size}");
        let h = c.create(&root, name.as_bytes()).unwrap();
        let want = data(size, i as u64 + 1);
        let stable = if i % 2 == 0 {
            stable_how::UNSTABLE
        } else {
            stable_how::FILE_SYNC
        };
        let mut verf = None;
        for (k, piece) in want.chunks(info.wtmax as usize).enumerate() {
            let off = (k * info.wtmax as usize) as u64;
            let ok = c.write(&h, off, piece, stable).unwrap();
            assert_eq!(ok.count as usize, piece.len());
            assert_eq!(ok.committed, stable);
            verf = Some(ok.verf);
        }
        if stable == stable_how::UNSTABLE {
            let r: n3::COMMIT3res = c.rpc(
                21,
                &n3::COMMIT3args {
                    file: fh(&h),
                    offset: 0,
                    count: 0,
                },
            );
            match r {
                Nfs3Result::Ok(ok) => {
                    if let Some(v) = verf {
                        assert_eq!(ok.verf, v, "same verifier: no restart");
                    }
                }
                Nfs3Result::Err((s, _)) => panic!("COMMIT: {s}"),
            }
        }
        assert_eq!(c.getattr(&h).unwrap().size, size as u64);
        // Read back in rtmax pieces, through Write chunks.
        let mut got = Vec::new();
        loop {
            let (d, eof) = c.read(&h, got.len() as u64, info.rtmax).unwrap();
            got.extend_from_slice(&d);
            if eof {
                break;
            }
            assert!(!d.is_empty(), "no progress before eof");
        }
        assert_eq!(got.len(), size);
        assert!(got == want, "{size}-byte file read back differs");
        let on_disk = std::fs::read(dir.join(&name)).unwrap();
        assert!(on_disk == want, "{size}-byte file on the server differs");
        // A read past the end: nothing, eof.
        assert_eq!(
            c.read(&h, size as u64 + 10, 100).unwrap(),
            (Vec::new(), true)
        );
    }
    let cs = c.client.as_ref().unwrap().stats();
    assert!(
        cs.read_chunk_calls >= sizes.len() as u64 - 1,
        "WRITE data went by Read chunk"
    );
    let report = c.stop();
    assert_eq!(report.freed, 1, "the one transport was freed");
    report
}

#[test]
fn readdirplus_pages_through_2000_entries_by_reply_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let root = c.root.clone();
    let d = c.mkdir(&root, b"big").unwrap();
    let mut want = BTreeSet::new();
    for i in 0..2000 {
        let name = format!("entry-{i:05}");
        c.create(&d, name.as_bytes()).unwrap();
        want.insert(name);
    }
    // READDIRPLUS pages.
    let (mut cookie, mut pages, mut seen) = (0u64, 0, BTreeSet::new());
    loop {
        let args = pack(&n3::READDIRPLUS3args {
            dir: fh(&d),
            cookie,
            cookieverf: n3::cookieverf3::default(),
            dircount: 8192,
            maxcount: 32768,
        });
        let opts = CallOptions {
            reply_chunk: Some(32768 + 512),
            ..CallOptions::default()
        };
        let r = c.call(17, &args, &opts).unwrap();
        let res: n3::READDIRPLUS3res<'static> = unpack(&r.results);
        let Nfs3Result::Ok(ok) = res else {
            panic!("READDIRPLUS failed")
        };
        pages += 1;
        for e in ok.reply.entries.0 {
            let name = String::from_utf8(e.name.0.to_vec()).unwrap();
            let (Nfs3Option::Some(a), Nfs3Option::Some(h)) = (e.name_attributes, e.name_handle)
            else {
                panic!("{name}: no attributes or handle");
            };
            assert_eq!(a.fileid, e.fileid);
            assert_eq!(
                c.getattr(&h.data).unwrap().fileid,
                e.fileid,
                "entry handle works"
            );
            assert!(seen.insert(name), "an entry came twice");
            cookie = e.cookie;
        }
        if ok.reply.eof {
            break;
        }
        assert!(pages < 2000, "paging does not end");
    }
    assert_eq!(seen, want);
    assert!(pages > 1, "2000 entries must not fit one 32 KiB reply");
    // READDIR, plain, also by Reply chunk.
    let (mut cookie, mut n) = (0u64, 0usize);
    loop {
        let args = pack(&n3::READDIR3args {
            dir: fh(&d),
            cookie,
            cookieverf: n3::cookieverf3::default(),
            count: 16384,
        });
        let opts = CallOptions {
            reply_chunk: Some(16384 + 512),
            ..CallOptions::default()
        };
        let r = c.call(16, &args, &opts).unwrap();
        let res: n3::READDIR3res<'static> = unpack(&r.results);
        let Nfs3Result::Ok(ok) = res else {
            panic!("READDIR failed")
        };
        for e in &ok.reply.entries.0 {
            cookie = e.cookie;
            n += 1;
        }
        if ok.reply.eof {
            break;
        }
    }
    assert_eq!(n, 2000);
    let cs = c.client.as_ref().unwrap().stats();
    assert!(
        cs.reply_chunk_replies > 2,
        "directory replies came by Reply chunk"
    );
    c.stop();
}

#[test]
fn rename_remove_rmdir_link_symlink_readlink() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let root = c.root.clone();
    let a = c.mkdir(&root, b"a").unwrap();
    let b = c.mkdir(&root, b"b").unwrap();
    let f = c.create(&a, b"f").unwrap();
    c.write(&f, 0, b"hello", stable_how::FILE_SYNC).unwrap();
    let ino = c.getattr(&f).unwrap().fileid;
    let r: n3::RENAME3res = c.rpc(
        14,
        &n3::RENAME3args {
            from: dirop(&a, b"f"),
            to: dirop(&b, b"g"),
        },
    );
    assert!(matches!(r, Nfs3Result::Ok(_)));
    assert_eq!(c.lookup(&a, b"f").unwrap_err(), nfsstat3::NFS3ERR_NOENT);
    assert_eq!(c.lookup(&b, b"g").unwrap().1.fileid, ino);
    assert_eq!(
        c.read(&f, 0, 100).unwrap().0,
        b"hello",
        "handle survives rename"
    );
    // LINK, then REMOVE one name: the other stays.
    let r: n3::LINK3res = c.rpc(
        15,
        &n3::LINK3args {
            file: fh(&f),
            link: dirop(&a, b"h"),
        },
    );
    assert!(matches!(r, Nfs3Result::Ok(_)));
    assert_eq!(c.getattr(&f).unwrap().nlink, 2);
    // SYMLINK + READLINK.
    let r: n3::SYMLINK3res = c.rpc(
        10,
        &n3::SYMLINK3args {
            where_: dirop(&a, b"s"),
            symlink: n3::symlinkdata3 {
                symlink_attributes: n3::sattr3::default(),
                symlink_data: n3::nfspath3(b"../b/g"[..].into()),
            },
        },
    );
    let Nfs3Result::Ok(ok) = r else {
        panic!("SYMLINK failed")
    };
    let Nfs3Option::Some(s) = ok.obj else {
        panic!("no handle")
    };
    let r: n3::READLINK3res<'static> = c.rpc(5, &n3::READLINK3args { symlink: s });
    let Nfs3Result::Ok(ok) = r else {
        panic!("READLINK failed")
    };
    assert_eq!(ok.data.0.as_ref(), b"../b/g");
    // RMDIR of a non-empty directory fails; REMOVE then RMDIR works.
    let rm = |c: &mut Nfs, proc, d: &[u8], n: &[u8]| -> nfsstat3 {
        let r = c
            .call(
                proc,
                &pack(&n3::REMOVE3args {
                    object: dirop(d, n),
                }),
                &CallOptions::default(),
            )
            .unwrap();
        stat_of(&r.results)
    };
    assert_eq!(rm(&mut c, 13, &root, b"a"), nfsstat3::NFS3ERR_NOTEMPTY);
    assert_eq!(rm(&mut c, 12, &root, b"a"), nfsstat3::NFS3ERR_ISDIR);
    assert_eq!(rm(&mut c, 13, &a, b"h"), nfsstat3::NFS3ERR_NOTDIR);
    assert_eq!(rm(&mut c, 12, &a, b"h"), nfsstat3::NFS3_OK);
    assert_eq!(rm(&mut c, 12, &a, b"s"), nfsstat3::NFS3_OK);
    assert_eq!(c.getattr(&f).unwrap().nlink, 1);
    assert_eq!(rm(&mut c, 13, &root, b"a"), nfsstat3::NFS3_OK);
    assert_eq!(c.lookup(&root, b"a").unwrap_err(), nfsstat3::NFS3ERR_NOENT);
    assert!(!dir.path().join("a").exists());
    c.stop();
}

#[test]
fn handles_never_resolve_outside_the_export() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/f"), b"inside").unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", dir.path().join("up")).unwrap();
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let root = c.root.clone();
    // `..` of the root is the root.
    let (up, _) = c.lookup(&root, b"..").unwrap();
    assert_eq!(up, root);
    let (d, _) = c.lookup(&root, b"d").unwrap();
    assert_eq!(c.lookup(&d, b"..").unwrap().0, root);
    // Names with a slash are no path.
    assert_eq!(
        c.lookup(&root, b"d/f").unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    assert_eq!(
        c.lookup(&d, b"../../etc").unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    // A symbolic link is an object, never a directory to go through.
    for link in [&b"out"[..], b"up"] {
        let (l, a) = c.lookup(&root, link).unwrap();
        assert_eq!(a.type_, n3::ftype3::NF3LNK);
        assert_eq!(
            c.lookup(&l, b"secret").unwrap_err(),
            nfsstat3::NFS3ERR_NOTDIR
        );
        assert_eq!(c.read(&l, 0, 100).unwrap_err(), nfsstat3::NFS3ERR_INVAL);
        assert_eq!(c.create(&l, b"x").unwrap_err(), nfsstat3::NFS3ERR_NOTDIR);
    }
    // Handles of files moved out of the export go stale, even with a link
    // to their new place where their directory was.
    let (f, _) = c.lookup(&d, b"f").unwrap();
    std::fs::rename(dir.path().join("d"), outside.path().join("d")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("d"), dir.path().join("d")).unwrap();
    assert_eq!(c.getattr(&f).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    assert_eq!(c.read(&f, 0, 10).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    assert_eq!(c.getattr(&d).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    // A forged handle (any bit changed) is refused.
    let mut forged = root.clone();
    forged[10] ^= 0x40;
    assert_eq!(c.getattr(&forged).unwrap_err(), nfsstat3::NFS3ERR_BADHANDLE);
    assert_eq!(
        c.getattr(&root[..20]).unwrap_err(),
        nfsstat3::NFS3ERR_BADHANDLE
    );
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"secret"
    );
    c.stop();
}

#[test]
fn removed_files_go_stale_and_handles_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = export_cfg(dir.path(), no_squash());
    let mut c = Nfs::start(&cfg, me());
    let root = c.root.clone();
    let d1 = c.mkdir(&root, b"d1").unwrap();
    let d2 = c.mkdir(&d1, b"d2").unwrap();
    let keep = c.create(&d2, b"keep").unwrap();
    c.write(&keep, 0, b"kept", stable_how::FILE_SYNC).unwrap();
    let gone = c.create(&d2, b"gone").unwrap();
    let r = c
        .call(
            12,
            &pack(&n3::REMOVE3args {
                object: dirop(&d2, b"gone"),
            }),
            &CallOptions::default(),
        )
        .unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3_OK);
    assert_eq!(c.getattr(&gone).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    // A new file (likely reusing the inode) does not revive the old handle.
    let again = c.create(&d2, b"gone").unwrap();
    assert_eq!(c.getattr(&gone).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    assert!(c.getattr(&again).is_ok());
    // The same inode number with another birth time (what a reused inode
    // looks like) is not the file.
    let ino = c.getattr(&again).unwrap().fileid;
    let codec = rdmaxprt_nfs_server::fh::HandleCodec::new(KEY, 7);
    let reborn = codec.encode(rdmaxprt_nfs_server::fh::FileId {
        ino,
        btime_sec: 1,
        btime_nsec: 2,
    });
    assert_eq!(c.getattr(&reborn).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    c.stop();
    // A new server (empty caches) with the same key: same root handle, old
    // handles still work, stale ones stay stale.
    let mut c = Nfs::start(&cfg, me());
    assert_eq!(c.root, root);
    assert_eq!(c.read(&keep, 0, 10).unwrap().0, b"kept");
    assert_eq!(c.getattr(&gone).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    c.stop();
    // Another key: the old handles are refused.
    let mut other = cfg.clone();
    other.key[0] ^= 1;
    let mut c = Nfs::start(&other, me());
    assert_eq!(c.getattr(&keep).unwrap_err(), nfsstat3::NFS3ERR_BADHANDLE);
    c.stop();
}

#[test]
fn read_only_export_refuses_changes_and_mknod_is_not_supported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut ro = no_squash();
    ro.read_only = true;
    let mut c = Nfs::start(&export_cfg(dir.path(), ro), me());
    let root = c.root.clone();
    let (f, _) = c.lookup(&root, b"f").unwrap();
    assert_eq!(c.read(&f, 0, 10).unwrap().0, b"data", "reads work");
    assert_eq!(c.create(&root, b"new").unwrap_err(), nfsstat3::NFS3ERR_ROFS);
    assert_eq!(c.mkdir(&root, b"new").unwrap_err(), nfsstat3::NFS3ERR_ROFS);
    assert_eq!(
        c.write(&f, 0, b"x", stable_how::FILE_SYNC).unwrap_err(),
        nfsstat3::NFS3ERR_ROFS
    );
    let r = c
        .call(
            12,
            &pack(&n3::REMOVE3args {
                object: dirop(&root, b"f"),
            }),
            &CallOptions::default(),
        )
        .unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3ERR_ROFS);
    let r = c
        .call(
            13,
            &pack(&n3::RMDIR3args {
                object: dirop(&root, b"sub"),
            }),
            &CallOptions::default(),
        )
        .unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3ERR_ROFS);
    let set = n3::SETATTR3args {
        object: fh(&f),
        new_attributes: n3::sattr3 {
            size: Nfs3Option::Some(0),
            ..Default::default()
        },
        guard: Nfs3Option::None,
    };
    let r = c.call(2, &pack(&set), &CallOptions::default()).unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3ERR_ROFS);
    let acc: n3::ACCESS3res = c.rpc(
        4,
        &n3::ACCESS3args {
            object: fh(&f),
            access: 0x3f,
        },
    );
    let Nfs3Result::Ok(acc) = acc else {
        panic!("ACCESS failed")
    };
    assert_eq!(acc.access & (n3::ACCESS3_MODIFY | n3::ACCESS3_EXTEND), 0);
    assert_ne!(acc.access & n3::ACCESS3_READ, 0);
    // MKNOD: NOTSUPP.
    let mut mknod = pack(&dirop(&root, b"fifo"));
    mknod.extend(pack(&n3::ftype3::NF3FIFO));
    mknod.extend(pack(&n3::sattr3::default()));
    let r = c.call(11, &mknod, &CallOptions::default()).unwrap();
    assert_eq!(stat_of(&r.results), nfsstat3::NFS3ERR_NOTSUPP);
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"data");
    c.stop();
}

#[test]
fn squashed_callers_act_as_the_anonymous_user() {
    if rustix::process::geteuid().as_raw() == 65534 {
        return; // the test user is the anonymous user: nothing to tell apart
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let mut c = Nfs::start(
        &export_cfg(dir.path(), rdmaxprt_nfs_server::nfs::NfsConfig::default()),
        me(),
    );
    let root = c.root.clone();
    let (f, a) = c.lookup(&root, b"f").unwrap();
    assert_eq!(a.mode & 0o777, 0o644);
    let acc: n3::ACCESS3res = c.rpc(
        4,
        &n3::ACCESS3args {
            object: fh(&f),
            access: 0x3f,
        },
    );
    let Nfs3Result::Ok(acc) = acc else {
        panic!("ACCESS failed")
    };
    assert_eq!(
        acc.access,
        n3::ACCESS3_READ,
        "anon may only read a 0644 file it does not own"
    );
    assert_eq!(
        c.write(&f, 0, b"x", stable_how::FILE_SYNC).unwrap_err(),
        nfsstat3::NFS3ERR_ACCES
    );
    c.stop();
    // Not squashed, the same caller owns the file.
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    assert!(c.write(&f, 0, b"x", stable_how::FILE_SYNC).is_ok());
    c.stop();
    let _ = Auth::None;
}

#[test]
fn malformed_arguments_get_garbage_args() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Nfs::start(&export_cfg(dir.path(), no_squash()), me());
    let root = c.root.clone();
    let getattr = pack(&n3::GETATTR3args { object: fh(&root) });
    for bad in [
        &getattr[..getattr.len() - 4],  // truncated handle
        &[0xff, 0xff, 0xff, 0xff][..],  // 4 GiB handle
        &[0, 0, 0, 65, 0, 0, 0, 0][..], // 65-byte handle
    ] {
        match c.call(1, bad, &CallOptions::default()) {
            Err(ClientError::NotSuccess(AcceptStat::GarbageArgs)) => {}
            other => panic!("expected GARBAGE_ARGS, got {other:?}"),
        }
    }
    let mut trailing = getattr.clone();
    trailing.extend_from_slice(&[0; 4]);
    assert!(matches!(
        c.call(1, &trailing, &CallOptions::default()),
        Err(ClientError::NotSuccess(AcceptStat::GarbageArgs))
    ));
    assert!(matches!(
        c.call(22, &[], &CallOptions::default()),
        Err(ClientError::NotSuccess(AcceptStat::ProcUnavail))
    ));
    // The connection still works.
    assert!(c.getattr(&root).is_ok());
    c.stop();
}
