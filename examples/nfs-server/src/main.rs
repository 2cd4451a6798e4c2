//! `nfs_server`: exports a local directory over NFSv3 (program 100003 v3)
//! on the rdmaxprt server runtime, with MOUNT v3 over TCP.
//!
//! ```text
//! nfs_server /srv/export --mount-port 20048 --mock-selftest
//! ```
//!
//! The transport hookup is [`serve`]: the mock NIC (in-process clients,
//! `--mock-selftest`) in this build; the verbs listener (`--rdma ADDR`) is
//! wired there once `Server::listen_rdma` is on main.

use clap::Parser;
use nfs3_types::nfs3::{self as n3};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use rdmaxprt::client::{Auth, AuthSysParams, CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::MockDevice;
use rdmaxprt::runtime::{Server, ServerConfig};
use rdmaxprt_nfs_server::attr::Squash;
use rdmaxprt_nfs_server::nfs::NfsConfig;
use rdmaxprt_nfs_server::setup::{load_or_create_key, ExportConfig, Services};
use rdmaxprt_nfs_server::{hookup, tcp};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(about = "NFSv3 server on the rdmaxprt RPC-over-RDMA runtime")]
struct Args {
    /// The directory to export.
    dir: PathBuf,
    /// The path clients mount (MNT argument).
    #[arg(long, default_value = "/export")]
    mount_path: String,
    /// TCP port of the MOUNT v3 service (0: any).
    #[arg(long, default_value_t = 20048)]
    mount_port: u16,
    /// The handle key file (16 bytes; created if missing). Keep it to keep
    /// handles valid across restarts.
    #[arg(long, default_value = "/var/tmp/rdmaxprt-nfs-handle.key")]
    key_file: PathBuf,
    /// Export id sealed in handles and reported as fsid.
    #[arg(long, default_value_t = 1)]
    export_id: u32,
    /// Refuse every change (NFS3ERR_ROFS).
    #[arg(long)]
    read_only: bool,
    /// Act as the caller's AUTH_SYS uid/gids instead of the anonymous ids.
    #[arg(long)]
    no_squash: bool,
    /// Anonymous uid.
    #[arg(long, default_value_t = 65534)]
    anon_uid: u32,
    /// Anonymous gid.
    #[arg(long, default_value_t = 65534)]
    anon_gid: u32,
    /// Server worker threads.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Send-context release policy: deferred, inline or workqueue.
    #[arg(long, default_value = "deferred", value_parser = parse_policy)]
    policy: Policy,
    /// Serve in-process clients on the mock NIC, run a short session
    /// (MNT over TCP, then NFS over the mock), print it, and exit.
    #[arg(long)]
    mock_selftest: bool,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    match s {
        "deferred" => Ok(Policy::Deferred),
        "inline" => Ok(Policy::Inline),
        "workqueue" => Ok(Policy::Workqueue),
        _ => Err(format!(
            "unknown policy {s:?} (deferred, inline, workqueue)"
        )),
    }
}

/// The transport hookup: connects `server` to its clients and runs until
/// they are done.
fn serve(server: &Arc<Server>, args: &Args, root: &[u8], mount_port: u16) -> Result<(), String> {
    if !args.mock_selftest {
        return Err("this build has no RDMA listener yet: use --mock-selftest".into());
    }
    let hook = hookup::mock(server);
    let result = selftest(&hook, root, mount_port);
    drop(hook.connector);
    hook.accept.join().map_err(|_| "accept thread panicked")?;
    result
}

fn pack(v: &impl Pack) -> Vec<u8> {
    let mut b = Vec::new();
    let _ = v.pack(&mut b);
    b
}

/// MNT over TCP for the root handle, then NULL, FSINFO, CREATE, WRITE
/// (Read chunk), READ (Write chunk), REMOVE over the mock NIC.
fn selftest(hook: &hookup::MockHookup, root: &[u8], mount_port: u16) -> Result<(), String> {
    let fh = tcp::mnt("127.0.0.1", mount_port, b"/export").map_err(|e| format!("MNT: {e}"))?;
    if fh != root {
        return Err("MNT returned another handle than the export root's".into());
    }
    println!(
        "MNT over TCP port {mount_port}: root handle of {} bytes",
        fh.len()
    );
    let dev = MockDevice::new();
    let qp = hook.connector.connect(&dev).map_err(|e| e.to_string())?;
    let auth = Auth::Sys(AuthSysParams {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        machinename: b"selftest".to_vec(),
        ..AuthSysParams::default()
    });
    let mut c = RpcClient::new(
        qp,
        dev.clone(),
        ClientConfig {
            auth,
            ..ClientConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut call = |proc, args: &[u8], opts: &CallOptions<'_>| {
        c.call(n3::PROGRAM, n3::VERSION, proc, args, opts)
            .map_err(|e| format!("NFS proc {proc}: {e}"))
    };
    let nfs_fh = n3::nfs_fh3 {
        data: Opaque::owned(fh.clone()),
    };
    call(0, &[], &CallOptions::default())?;
    let r = call(
        19,
        &pack(&n3::FSINFO3args {
            fsroot: nfs_fh.clone(),
        }),
        &CallOptions::default(),
    )?;
    let info = match n3::FSINFO3res::unpack(&mut &r.results[..]) {
        Ok((n3::Nfs3Result::Ok(ok), _)) => ok,
        _ => return Err("FSINFO failed".into()),
    };
    println!("FSINFO: rtmax {} wtmax {}", info.rtmax, info.wtmax);
    let name = b".rdmaxprt-selftest";
    let dirop = n3::diropargs3 {
        dir: nfs_fh.clone(),
        name: n3::filename3(Opaque::borrowed(name)),
    };
    let r = call(
        8,
        &pack(&n3::CREATE3args {
            where_: dirop,
            how: n3::createhow3::UNCHECKED(n3::sattr3::default()),
        }),
        &CallOptions::default(),
    )?;
    let file = match n3::CREATE3res::unpack(&mut &r.results[..]) {
        Ok((
            n3::Nfs3Result::Ok(n3::CREATE3resok {
                obj: n3::Nfs3Option::Some(h),
                ..
            }),
            _,
        )) => h,
        Ok((n3::Nfs3Result::Err((s, _)), _)) => {
            return Err(format!(
                "CREATE: {s} (squashed callers need an export directory the anonymous user may write; or --no-squash)"
            ))
        }
        _ => return Err("CREATE: malformed result".into()),
    };
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut w = pack(&file);
    w.extend(pack(&0u64));
    w.extend(pack(&(data.len() as u32)));
    w.extend(pack(&n3::stable_how::FILE_SYNC));
    w.extend(pack(&(data.len() as u32)));
    call(
        7,
        &w,
        &CallOptions {
            read_payload: Some(&data),
            ..CallOptions::default()
        },
    )?;
    let r = call(
        6,
        &pack(&n3::READ3args {
            file: file.clone(),
            offset: 0,
            count: 65536,
        }),
        &CallOptions {
            write_chunk: Some(65536),
            ..CallOptions::default()
        },
    )?;
    if r.bulk.as_deref() != Some(&data[..]) {
        return Err("READ returned other bytes than WRITE wrote".into());
    }
    println!("WRITE 64 KiB by Read chunk, READ it back by Write chunk: equal");
    let dirop = n3::diropargs3 {
        dir: nfs_fh,
        name: n3::filename3(Opaque::borrowed(name)),
    };
    call(
        12,
        &pack(&n3::REMOVE3args { object: dirop }),
        &CallOptions::default(),
    )?;
    c.close();
    dev.assert_clean();
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let key = load_or_create_key(&args.key_file)
        .map_err(|e| format!("handle key {}: {e}", args.key_file.display()))?;
    let cfg = ExportConfig {
        dir: args.dir.clone(),
        mount_path: args.mount_path.clone(),
        key,
        export_id: args.export_id,
        nfs: NfsConfig {
            read_only: args.read_only,
            squash: Squash {
                all: !args.no_squash,
                anon_uid: args.anon_uid,
                anon_gid: args.anon_gid,
            },
            ..NfsConfig::default()
        },
    };
    let svc = Services::new(&cfg).map_err(|e| format!("export {}: {e}", args.dir.display()))?;
    let root = svc.export.root_handle();
    let mount_listener = TcpListener::bind(("0.0.0.0", args.mount_port))
        .map_err(|e| format!("MOUNT port {}: {e}", args.mount_port))?;
    let mountd =
        tcp::TcpServer::spawn(mount_listener, Arc::new(svc.mount)).map_err(|e| e.to_string())?;
    let mount_port = mountd.local_addr().port();
    println!(
        "MOUNT v3 on tcp port {mount_port}, exporting {} as {}",
        args.dir.display(),
        args.mount_path
    );
    let server = Arc::new(Server::start(
        ServerConfig {
            workers: args.workers,
            policy: args.policy,
            ..ServerConfig::default()
        },
        svc.nfs,
    ));
    let served = serve(&server, args, &root, mount_port);
    mountd.stop();
    let server = Arc::try_unwrap(server).map_err(|_| "server still shared")?;
    let report = server.shutdown();
    println!(
        "server: {} transports freed, completions {}, drains {}",
        report.freed, report.stats.completions, report.stats.drains
    );
    served
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("nfs_server: {e}");
        std::process::exit(1);
    }
}
