//! `nfs_server`: placeholder until the transport hookup lands (next commit).
fn main() {}
