//! An NFSv3 client for the tests: the rdmaxprt RPC-over-RDMA client on the
//! mock NIC calling the server runtime serving the NFS program, arguments
//! encoded and results decoded with `nfs3_types`, chunks used as the Linux
//! client uses them (WRITE data through a Read chunk, READ data through a
//! Write chunk, READDIR/READDIRPLUS through a Reply chunk).
#![allow(dead_code)]

use nfs3_types::nfs3::{self as n3, nfsstat3, Nfs3Result};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use rdmaxprt::client::{
    Auth, AuthSysParams, CallOptions, ClientConfig, ClientError, ReplyBytes, RpcClient,
};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::{MockDevice, MockQp};
use rdmaxprt::runtime::{MockConnector, Server, ServerConfig, ServerReport};
use rdmaxprt_nfs_server::nfs::NfsConfig;
use rdmaxprt_nfs_server::setup::{ExportConfig, Services};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The test key.
pub const KEY: [u8; 16] = *b"rdmaxprt-nfs-key";

/// Export config over `dir`, not squashing (the tests call as their own
/// uid, which owns the files).
pub fn export_cfg(dir: &Path, nfs: NfsConfig) -> ExportConfig {
    ExportConfig {
        dir: dir.to_path_buf(),
        mount_path: "/export".into(),
        key: KEY,
        export_id: 7,
        nfs,
    }
}

/// NFS options that do not squash.
pub fn no_squash() -> NfsConfig {
    let mut c = NfsConfig::default();
    c.squash.all = false;
    c
}

/// A server on the mock network and one client connection.
pub struct Nfs {
    pub server: Option<Arc<Server>>,
    pub accept: Option<JoinHandle<()>>,
    pub connector: Option<MockConnector>,
    pub client: Option<RpcClient<MockQp, MockDevice>>,
    pub dev: MockDevice,
    pub server_dev: MockDevice,
    pub root: Vec<u8>,
}

/// The AUTH_SYS credential of this process.
pub fn me() -> Auth {
    Auth::Sys(AuthSysParams {
        stamp: 1,
        machinename: b"test".to_vec(),
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        gids: Vec::new(),
    })
}

impl Nfs {
    /// Serves `cfg` (the mock-NIC hookup: `Server::serve` on a
    /// `MockListener`) and connects a client calling with `auth`.
    pub fn start(cfg: &ExportConfig, auth: Auth) -> Self {
        Self::start_in(
            cfg,
            auth,
            ServerConfig {
                workers: 2,
                policy: Policy::Deferred,
                ..ServerConfig::default()
            },
        )
    }

    /// As [`start`](Self::start), the server run as `server` says (mode,
    /// threads, policy).
    pub fn start_in(cfg: &ExportConfig, auth: Auth, server: ServerConfig) -> Self {
        let svc = Services::new(cfg).expect("export");
        let root = svc.export.root_handle();
        let server = Arc::new(Server::start(server, svc.nfs));
        let hook = rdmaxprt_nfs_server::hookup::mock(&server);
        let dev = MockDevice::new();
        let qp = hook.connector.connect(&dev).expect("connect");
        let client = RpcClient::new(
            qp,
            dev.clone(),
            ClientConfig {
                auth,
                ..ClientConfig::default()
            },
        )
        .expect("client");
        Self {
            server: Some(server),
            accept: Some(hook.accept),
            connector: Some(hook.connector),
            client: Some(client),
            dev,
            server_dev: hook.server_dev,
            root,
        }
    }

    /// Another client connection to the same server (`rpc`/`read`/`write`
    /// work on it; `stop` only on the first).
    pub fn another(&self, auth: Auth) -> Self {
        let dev = MockDevice::new();
        let qp = self
            .connector
            .as_ref()
            .expect("connector")
            .connect(&dev)
            .expect("connect");
        let client = RpcClient::new(
            qp,
            dev.clone(),
            ClientConfig {
                auth,
                ..ClientConfig::default()
            },
        )
        .expect("client");
        Self {
            server: None,
            accept: None,
            connector: None,
            client: Some(client),
            dev,
            server_dev: self.server_dev.clone(),
            root: self.root.clone(),
        }
    }

    /// Closes a client made by [`another`](Self::another).
    pub fn close(mut self) {
        self.client.take().expect("client").close();
        self.dev.assert_clean();
    }

    /// Calls NFSv3 procedure `proc`.
    pub fn call(
        &mut self,
        proc: u32,
        args: &[u8],
        opts: &CallOptions<'_>,
    ) -> Result<ReplyBytes, ClientError> {
        self.client
            .as_mut()
            .expect("client")
            .call(n3::PROGRAM, n3::VERSION, proc, args, opts)
    }

    /// Calls and decodes the whole results as `T`.
    pub fn rpc<T: Unpack>(&mut self, proc: u32, args: &impl Pack) -> T {
        let r = self
            .call(proc, &pack(args), &CallOptions::default())
            .expect("call");
        unpack(&r.results)
    }

    /// Closes the client, stops the server, checks nothing leaked.
    pub fn stop(mut self) -> ServerReport {
        let c = self.client.take().expect("client");
        c.close();
        self.dev.assert_clean();
        drop(self.connector.take());
        self.accept
            .take()
            .expect("accept")
            .join()
            .expect("listener");
        let server = Arc::try_unwrap(self.server.take().expect("server")).expect("server shared");
        let report = server.shutdown();
        self.server_dev.assert_clean();
        report
    }
}

/// XDR-encodes `v`.
pub fn pack(v: &impl Pack) -> Vec<u8> {
    let mut b = Vec::new();
    v.pack(&mut b).expect("pack");
    b
}

/// Decodes all of `b` as `T`.
pub fn unpack<T: Unpack>(b: &[u8]) -> T {
    let mut r = b;
    let (v, n) = T::unpack(&mut r).expect("unpack");
    assert_eq!(n, b.len(), "results longer than their type");
    v
}

/// `nfs_fh3` of raw handle bytes.
pub fn fh(h: &[u8]) -> n3::nfs_fh3 {
    n3::nfs_fh3 {
        data: Opaque::owned(h.to_vec()),
    }
}

/// `diropargs3`.
pub fn dirop<'a>(dir: &[u8], name: &'a [u8]) -> n3::diropargs3<'a> {
    n3::diropargs3 {
        dir: fh(dir),
        name: n3::filename3(Opaque::borrowed(name)),
    }
}

/// The status of a result (its first word).
pub fn stat_of(results: &[u8]) -> nfsstat3 {
    let mut r = results;
    nfsstat3::unpack(&mut r).expect("status").0
}

impl Nfs {
    /// LOOKUP: the handle, or the status.
    pub fn lookup(&mut self, dir: &[u8], name: &[u8]) -> Result<(Vec<u8>, n3::fattr3), nfsstat3> {
        let r: n3::LOOKUP3res = self.rpc(
            3,
            &n3::LOOKUP3args {
                what: dirop(dir, name),
            },
        );
        match r {
            Nfs3Result::Ok(ok) => Ok((
                ok.object.data.to_vec(),
                match ok.obj_attributes {
                    n3::Nfs3Option::Some(a) => a,
                    n3::Nfs3Option::None => panic!("LOOKUP without attributes"),
                },
            )),
            Nfs3Result::Err((s, _)) => Err(s),
        }
    }

    /// GETATTR.
    pub fn getattr(&mut self, h: &[u8]) -> Result<n3::fattr3, nfsstat3> {
        let r: n3::GETATTR3res = self.rpc(1, &n3::GETATTR3args { object: fh(h) });
        match r {
            Nfs3Result::Ok(ok) => Ok(ok.obj_attributes),
            Nfs3Result::Err((s, _)) => Err(s),
        }
    }

    /// CREATE (GUARDED, mode 0644): the new file's handle.
    pub fn create(&mut self, dir: &[u8], name: &[u8]) -> Result<Vec<u8>, nfsstat3> {
        let a = n3::CREATE3args {
            where_: dirop(dir, name),
            how: n3::createhow3::GUARDED(n3::sattr3 {
                mode: n3::Nfs3Option::Some(0o644),
                ..Default::default()
            }),
        };
        let r: n3::CREATE3res = self.rpc(8, &a);
        match r {
            Nfs3Result::Ok(ok) => match ok.obj {
                n3::Nfs3Option::Some(h) => Ok(h.data.to_vec()),
                n3::Nfs3Option::None => panic!("CREATE without a handle"),
            },
            Nfs3Result::Err((s, _)) => Err(s),
        }
    }

    /// MKDIR (mode 0755).
    pub fn mkdir(&mut self, dir: &[u8], name: &[u8]) -> Result<Vec<u8>, nfsstat3> {
        let a = n3::MKDIR3args {
            where_: dirop(dir, name),
            attributes: n3::sattr3 {
                mode: n3::Nfs3Option::Some(0o755),
                ..Default::default()
            },
        };
        let r: n3::MKDIR3res = self.rpc(9, &a);
        match r {
            Nfs3Result::Ok(ok) => match ok.obj {
                n3::Nfs3Option::Some(h) => Ok(h.data.to_vec()),
                n3::Nfs3Option::None => panic!("MKDIR without a handle"),
            },
            Nfs3Result::Err((s, _)) => Err(s),
        }
    }

    /// WRITE with the data in a Read chunk (as xprtrdma sends it).
    pub fn write(
        &mut self,
        h: &[u8],
        offset: u64,
        data: &[u8],
        stable: n3::stable_how,
    ) -> Result<n3::WRITE3resok, nfsstat3> {
        let mut args = pack(&fh(h));
        args.extend(pack(&offset));
        args.extend(pack(&(data.len() as u32)));
        args.extend(pack(&stable));
        args.extend(pack(&(data.len() as u32)));
        let r = self
            .call(
                7,
                &args,
                &CallOptions {
                    read_payload: Some(data),
                    ..CallOptions::default()
                },
            )
            .expect("WRITE");
        match unpack::<n3::WRITE3res>(&r.results) {
            Nfs3Result::Ok(ok) => Ok(ok),
            Nfs3Result::Err((s, _)) => Err(s),
        }
    }

    /// READ with a Write chunk of `count` bytes: (data, eof).
    pub fn read(&mut self, h: &[u8], offset: u64, count: u32) -> Result<(Vec<u8>, bool), nfsstat3> {
        let args = pack(&n3::READ3args {
            file: fh(h),
            offset,
            count,
        });
        let r = self
            .call(
                6,
                &args,
                &CallOptions {
                    write_chunk: Some(count.max(1)),
                    ..CallOptions::default()
                },
            )
            .expect("READ");
        let mut b = &r.results[..];
        let (s, _) = nfsstat3::unpack(&mut b).expect("status");
        if s != nfsstat3::NFS3_OK {
            return Err(s);
        }
        let (_attr, _) = n3::post_op_attr::unpack(&mut b).expect("attributes");
        let (got, _) = u32::unpack(&mut b).expect("count");
        let (eof, _) = bool::unpack(&mut b).expect("eof");
        let (len, _) = u32::unpack(&mut b).expect("data length");
        assert!(
            b.is_empty(),
            "READ data must not be inline with a Write chunk"
        );
        assert_eq!(got, len);
        let data = r.bulk.unwrap_or_default();
        assert_eq!(data.len(), len as usize, "Write chunk bytes = data length");
        Ok((data, eof))
    }
}

/// Deterministic test data.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
