//! Project automation for rdmaxprt.
//!
//! `cargo run -p xtask -- vm-test` runs the device tests on real verbs:
//! Soft-RoCE (rdma_rxe) in a stock Debian kernel booted under QEMU, because
//! the host kernel has no RDMA. See `vm` for the steps and `--help` for the
//! options. `cargo run -p xtask -- vm-bench` sets our verbs path beside
//! perftest in the same VM; `cargo run -p xtask -- vm-nfs-bench` sets
//! examples/nfs-server beside the kernel's nfsd under the kernel NFS client.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod vm;

#[derive(Parser)]
#[command(name = "xtask", about = "rdmaxprt project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the device tests, boot a QEMU VM with rdma_rxe and run them,
    /// then the interop pairs (our rping against the stock one, both ways).
    #[command(name = "vm-test")]
    Test(VmTestArgs),
    /// Our verbs path (examples/echo_bench) against perftest's
    /// ib_send_lat/ib_send_bw in one VM boot; prints a table with the ratios
    /// and writes target/vm-bench/report.md. Not a test: no assertion.
    #[command(name = "vm-bench")]
    Bench(VmBenchArgs),
    /// The kernel NFS client over RDMA against examples/nfs-server (each
    /// release policy) and then the kernel's nfsd, in one VM boot; prints a
    /// table with the ratios and writes target/vm-nfs-bench/report.md. Not
    /// a test: no assertion.
    #[command(name = "vm-nfs-bench")]
    NfsBench(VmNfsBenchArgs),
}

/// The VM's machine options, shared by `vm-test` and `vm-bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct VmOpts {
    /// Accelerator: auto (KVM only if kvm_intel/kvm_amd is loaded), kvm, tcg.
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Guest memory.
    #[arg(long, default_value = "1G")]
    pub mem: String,
    /// Guest CPUs (a benchmark's server and client each busy-poll one).
    #[arg(long, default_value_t = 2)]
    pub smp: u32,
}

/// Options of `vm-bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct VmBenchArgs {
    /// Bound on the whole QEMU run, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Bound on each benchmark inside the VM, in seconds.
    #[arg(long, default_value_t = 90)]
    pub pair_timeout: u64,
    /// The machine.
    #[command(flatten)]
    pub vm: VmOpts,
    /// Fewer iterations (a smoke run of the bench itself).
    #[arg(long)]
    pub quick: bool,
    /// How both sides wait for completions: busy (poll the CQ, perftest's
    /// default), event (CQ events: perftest `-e`, echo_bench `--event`), or
    /// both, one after the other in the same boot.
    #[arg(long, default_value = "both")]
    pub mode: String,
    /// Rounds: every tool runs once per round, perftest and ours
    /// alternating; the table shows each number's median over the rounds
    /// (the host's load moves single runs by tens of percent).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Echo the whole serial console.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Options of `vm-nfs-bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct VmNfsBenchArgs {
    /// Bound on the whole QEMU run, in seconds.
    #[arg(long, default_value_t = 1500)]
    pub timeout: u64,
    /// Bound on each server's run inside the VM, in seconds.
    #[arg(long, default_value_t = 300)]
    pub pair_timeout: u64,
    /// The machine.
    #[command(flatten)]
    pub vm: VmOpts,
    /// Smaller workloads (16 MiB, 500 + 50 reads, 250 files): a smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Echo the whole serial console.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Options of `vm-test`.
#[derive(clap::Args, Debug, Clone)]
pub struct VmTestArgs {
    /// Workspace package whose test targets run in the VM (repeatable).
    /// Default: the `package` lines of xtask/vm-tests.txt.
    #[arg(long = "package", short = 'p')]
    pub packages: Vec<String>,
    /// Extra host-built binary to run in the VM (repeatable); exit 0 = PASS.
    #[arg(long = "bin")]
    pub bins: Vec<PathBuf>,
    /// Build the test binaries in release mode.
    #[arg(long)]
    pub release: bool,
    /// Bound on the whole QEMU run, in seconds.
    #[arg(long, default_value_t = 420)]
    pub timeout: u64,
    /// Bound on each test binary inside the VM, in seconds.
    #[arg(long, default_value_t = 150)]
    pub test_timeout: u64,
    /// Bound on each side of an interop pair inside the VM, in seconds.
    #[arg(long, default_value_t = 60)]
    pub pair_timeout: u64,
    /// Run only the examples and pairs of the manifest (no packages, no
    /// bins).
    #[arg(long)]
    pub interop_only: bool,
    /// The manifest to run instead of xtask/vm-tests.txt (relative to the
    /// workspace root), e.g. xtask/vm-scale.txt.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The machine.
    #[command(flatten)]
    pub vm: VmOpts,
    /// Do not fail when a device test reports SKIPPED inside the VM.
    #[arg(long)]
    pub allow_skips: bool,
    /// Echo the whole serial console, not only test and result lines.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Test(args) => vm::vm_test(&args),
        Cmd::Bench(args) => vm::vm_bench(&args),
        Cmd::NfsBench(args) => vm::vm_nfs_bench(&args),
    };
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}
