//! What `nfs3_types` would cost on the data path: decoding WRITE
//! arguments with its `WRITE3args::unpack` (copies the data into a new
//! `Vec`) against this server's borrowed decoder (`args::decode`), and
//! encoding a READ reply with the data packed into the results
//! (`READ3resok` with an `Opaque`) against the results-plus-bulk split the
//! server uses.
//!
//! `cargo bench -p rdmaxprt-nfs-server --bench write_args`

// `criterion_group!` generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nfs3_types::nfs3::{self as n3, Nfs3Option};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use rdmaxprt_nfs_server::args::{self, NfsArgs};

fn write_args(len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let a = n3::WRITE3args {
        file: n3::nfs_fh3 {
            data: Opaque::owned(vec![7; 36]),
        },
        offset: 0,
        count: len as u32,
        stable: n3::stable_how::UNSTABLE,
        data: Opaque::owned(data),
    };
    let mut b = Vec::new();
    a.pack(&mut b).unwrap();
    b
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("write_args_decode");
    for len in [4096usize, 65536, 1 << 20] {
        let msg = write_args(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("nfs3_types_copy", len), &msg, |b, m| {
            b.iter(|| {
                let (a, _) = n3::WRITE3args::unpack(&mut &m[..]).unwrap();
                black_box(a.data.len())
            })
        });
        g.bench_with_input(BenchmarkId::new("borrowed", len), &msg, |b, m| {
            b.iter(|| match args::decode(7, black_box(m)) {
                Some(Ok(NfsArgs::Write { data, .. })) => black_box(data.len()),
                _ => unreachable!(),
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("read_reply_encode");
    for len in [4096usize, 65536, 1 << 20] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("nfs3_types_inline", len), &data, |b, d| {
            b.iter(|| {
                let r: n3::READ3res<'_> = n3::Nfs3Result::Ok(n3::READ3resok {
                    file_attributes: Nfs3Option::None,
                    count: d.len() as u32,
                    eof: true,
                    data: Opaque::borrowed(d),
                });
                let mut out = Vec::new();
                r.pack(&mut out).unwrap();
                black_box(out.len())
            })
        });
        g.bench_with_input(BenchmarkId::new("results_plus_bulk", len), &data, |b, d| {
            b.iter(|| {
                let mut out = Vec::new();
                n3::nfsstat3::NFS3_OK.pack(&mut out).unwrap();
                Nfs3Option::<n3::fattr3>::None.pack(&mut out).unwrap();
                (d.len() as u32).pack(&mut out).unwrap();
                true.pack(&mut out).unwrap();
                (d.len() as u32).pack(&mut out).unwrap();
                black_box((out.len(), d.len()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
