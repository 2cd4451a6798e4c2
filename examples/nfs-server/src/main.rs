//! `nfs_server`: exports a local directory over NFSv3 (program 100003 v3)
//! on the rdmaxprt server runtime, with MOUNT v3 over TCP.
//!
//! ```text
//! nfs_server /srv/export --rdma 192.168.1.1 --mount-port 20048   # feature verbs
//! nfs_server /srv/export --mount-port 0 --mock-selftest
//! ```
//!
//! The transport hookup is [`serve`]: the rdma_cm listener (`--rdma ADDR`,
//! port 20049 unless given; needs the `verbs` feature), or the mock NIC with
//! in-process clients (`--mock-selftest`). With `--rdma` it prints
//! `LISTENING`, `ACCEPTED n`, `LIVE n` lines, and runs until standard input
//! closes, or `--idle-exit` seconds pass with no live connection after the
//! first; then a `REPORT` line with the transport counters.

use clap::Parser;
use nfs3_types::nfs3::{self as n3};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use rdmaxprt::client::{Auth, AuthSysParams, CallOptions, ClientConfig, RpcClient};
use rdmaxprt::lifecycle::Policy;
use rdmaxprt::mock::MockDevice;
use rdmaxprt::runtime::{Server, ServerConfig, ServerMode};
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
    /// Server worker threads (in poll-group mode they run only calls that
    /// may block: see --io-in-groups).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// How calls run: thread-pool (completion pollers hand each call to a
    /// worker, as the kernel's nfsd) or poll-group (each connection's calls
    /// run to completion on its poll-group thread).
    #[arg(long, default_value = "thread-pool")]
    mode: ServerMode,
    /// Poll-group threads (--mode poll-group; 0: one per CPU).
    #[arg(long, default_value_t = 0)]
    groups: usize,
    /// With --mode poll-group: run NFS calls, file-system I/O included, on
    /// the poll-group threads instead of handing them to the workers. For
    /// exports whose I/O does not block for long (tmpfs, page cache): a
    /// call that waits on a disk stalls every connection of its group.
    #[arg(long)]
    io_in_groups: bool,
    /// Send-context release policy: deferred, inline or workqueue.
    #[arg(long, default_value = "deferred", value_parser = parse_policy)]
    policy: Policy,
    /// Listen for RPC-over-RDMA clients on this address (rdma_cm; port
    /// 20049 if none is given). Needs the `verbs` feature.
    #[arg(long, value_parser = parse_rdma_addr)]
    rdma: Option<std::net::SocketAddr>,
    /// Inline threshold offered to RDMA clients (both directions).
    #[arg(long, default_value_t = 4096)]
    inline: u32,
    /// With --rdma: exit after this many seconds without a live
    /// connection, once one has been accepted (0: run until stdin closes).
    #[arg(long, default_value_t = 0)]
    idle_exit: u64,
    /// With --rdma: registered 2 MiB chunks for bulk data (Read chunk
    /// sinks, staged READ replies), shared by every connection. When all
    /// are in use, a call with a Read chunk (or a reply to stage) waits
    /// for one its own connection holds to come back; a connection that
    /// holds none is closed (the client reconnects and retransmits).
    #[arg(long, default_value_t = hookup::DEFAULT_LARGE_CHUNKS)]
    large_chunks: usize,
    /// Most verbose log level printed to standard error (error, warn,
    /// info, debug, trace): e.g. `debug` says why a connection was closed.
    #[arg(long, default_value = "warn")]
    log: tracing::Level,
    /// Serve in-process clients on the mock NIC, run a short session
    /// (MNT over TCP, then NFS over the mock), print it, and exit.
    #[arg(long)]
    mock_selftest: bool,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    s.parse()
        .map_err(|_| format!("unknown policy {s:?} (deferred, inline, workqueue)"))
}

fn parse_rdma_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, hookup::NFS_RDMA_PORT))
        .map_err(|e| format!("{s:?}: {e} (IP or IP:PORT)"))
}

/// The transport hookup: connects `server` to its clients and runs until
/// they are done.
fn serve(server: &Arc<Server>, args: &Args, root: &[u8], mount_port: u16) -> Result<(), String> {
    if let Some(addr) = args.rdma {
        return serve_rdma(server, args, addr);
    }
    if !args.mock_selftest {
        return Err("nothing to serve: give --rdma ADDR or --mock-selftest".into());
    }
    let hook = hookup::mock(server);
    let result = selftest(&hook, root, mount_port);
    drop(hook.connector);
    hook.accept.join().map_err(|_| "accept thread panicked")?;
    result
}

#[cfg(not(feature = "verbs"))]
fn serve_rdma(_: &Arc<Server>, _: &Args, _: std::net::SocketAddr) -> Result<(), String> {
    Err("--rdma needs a build with the verbs feature (cargo build -p rdmaxprt-nfs-server --features verbs)".into())
}

/// Listens on `addr` and runs until stdin closes or the idle timeout.
#[cfg(feature = "verbs")]
fn serve_rdma(server: &Arc<Server>, args: &Args, addr: std::net::SocketAddr) -> Result<(), String> {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let listener = hookup::rdma(server, addr, args.inline, args.large_chunks)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("LISTENING {}", listener.local_addr());
    let _ = std::io::stdout().flush();
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if args.idle_exit == 0 {
        let flag = stdin_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            flag.store(true, Ordering::Release);
        });
    }
    let c = listener.counters();
    let (mut last, mut idle_since) = ((u64::MAX, usize::MAX), None::<Instant>);
    loop {
        let now = (c.accepted.load(Ordering::Relaxed), server.live_transports());
        if now.0 != last.0 {
            println!("ACCEPTED {}", now.0);
        }
        if now.1 != last.1 {
            println!("LIVE {}", now.1);
        }
        if now != last {
            let _ = std::io::stdout().flush();
            last = now;
        }
        idle_since = match (now.0 > 0 && now.1 == 0, idle_since) {
            (true, None) => Some(Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
        let idle = args.idle_exit > 0
            && idle_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(args.idle_exit));
        if idle || stdin_closed.load(Ordering::Acquire) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
            blocking: !args.io_in_groups,
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
            mode: args.mode,
            groups: args.groups,
            workers: args.workers,
            policy: args.policy,
            ..ServerConfig::default()
        },
        svc.nfs,
    ));
    let served = serve(&server, args, &root, mount_port);
    mountd.stop();
    let report = server.shutdown();
    let k = report.counters;
    println!(
        "REPORT freed {} live {} calls {} replies {} read_calls {} read_chunks {} write_chunks {} reply_chunks {} error_replies {} err_vers {} err_chunk {} dropped {} completions {} drains {} mode {} handoffs {} worker_wakeups {}",
        report.freed, report.live, k.calls, k.replies, k.read_calls, k.read_chunks,
        k.write_chunks, k.reply_chunks, k.error_replies, k.err_vers, k.err_chunk, k.dropped,
        report.stats.completions, report.stats.drains, args.mode, report.handoffs,
        report.worker_wakeups
    );
    served
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(&args) {
        eprintln!("nfs_server: {e}");
        std::process::exit(1);
    }
}
