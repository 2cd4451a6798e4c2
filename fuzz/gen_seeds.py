#!/usr/bin/env python3
"""Writes the hand-made seed corpus: small valid and near-valid inputs for
every fuzz target, into corpus/<target>/seed-<name>. Built from RFC 8166 and
RFC 5531 by hand (not with the codec under test). Re-run from fuzz/:
    python3 gen_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def w(*words):
    return b"".join(struct.pack(">I", x & 0xFFFFFFFF) for x in words)


def seg(handle, length, offset):
    return w(handle, length) + struct.pack(">Q", offset)


def fixed(proc, xid=0x11223344, vers=1, credits=32):
    return w(xid, vers, credits, proc)


def read_entry(pos, s):
    return w(1, pos) + s


def chunk(*segs):
    return w(len(segs)) + b"".join(segs)


def write_list(*chunks):
    return b"".join(w(1) + c for c in chunks) + w(0)


def reply_chunk(c=None):
    return w(0) if c is None else w(1) + c


def rpc_call_none(xid=0x11223344, prog=100003, vers=3, proc=1):
    return w(xid, 0, 2, prog, vers, proc, 0, 0, 0, 0)


def auth_sys(name=b"host", gids=(10, 20), pad=b"\0\0\0\0"):
    body = w(0x5EED, len(name)) + name + pad[: (-len(name)) % 4]
    body += w(1000, 1000, len(gids), *gids)
    return body


def rpc_call_sys(xid=0x11223344, body=None):
    body = auth_sys() if body is None else body
    return w(xid, 0, 2, 100003, 4, 1, 1, len(body)) + body + w(0, 0)


S1 = seg(0x1000, 4096, 0x7F0000001000)
S2 = seg(0x1001, 512, 0x7F0000002000)
BODY = rpc_call_none()

calls = {
    "msg-min": fixed(0) + w(0, 0, 0) + BODY,
    "msg-sys": fixed(0) + w(0, 0, 0) + rpc_call_sys(),
    "nomsg-pz": fixed(1) + read_entry(0, S1) + w(0) + write_list() + reply_chunk(),
    "nomsg-pz-2seg-reply": fixed(1) + read_entry(0, S1) + read_entry(0, S2) + w(0)
    + write_list() + reply_chunk(chunk(S1, S2)),
    "msg-read-write-reply": fixed(0) + read_entry(8, S1) + read_entry(8, S2) + w(0)
    + write_list(chunk(S1), chunk(S2, S1)) + reply_chunk(chunk(S2)) + BODY,
    "msg-reads-interleaved": fixed(0) + read_entry(8, S1) + read_entry(16, S2)
    + read_entry(8, S2) + w(0) + write_list() + reply_chunk() + BODY,
    "done": fixed(3),
    "error-vers": fixed(4) + w(1, 1, 1),
    "error-chunk": fixed(4) + w(2),
    "bad-vers": fixed(0, vers=2) + w(0, 0, 0) + BODY,
    "msgp": fixed(2) + w(0, 0, 0) + BODY,
    "proc-7": fixed(7),
    "short-15": fixed(0)[:15],
    "bad-discriminator": fixed(0) + w(2, 0, 0) + BODY,
    "truncated-segment": fixed(1) + read_entry(0, S1)[:20],
    "zero-length": fixed(0) + w(0) + write_list(chunk(seg(1, 0, 0))) + reply_chunk() + BODY,
    "overflow": fixed(0) + w(0) + write_list(chunk(seg(1, 2, 2**64 - 1))) + reply_chunk() + BODY,
    "exact-fit": fixed(0) + w(0) + write_list(chunk(seg(1, 2, 2**64 - 3))) + reply_chunk() + BODY,
    "misaligned": fixed(0) + read_entry(6, S1) + w(0) + write_list() + reply_chunk() + BODY,
    "nine-writes": fixed(0) + w(0) + write_list(*[chunk(S2)] * 9) + reply_chunk() + BODY,
    "empty-chunk": fixed(0) + w(0) + write_list() + reply_chunk(chunk()) + BODY,
    "nomsg-no-pz": fixed(1) + read_entry(4, S1) + w(0) + write_list() + reply_chunk(),
    "msg-pz": fixed(0) + read_entry(0, S1) + w(0) + write_list() + reply_chunk() + BODY,
    "msg-no-body": fixed(0) + w(0, 0, 0),
    "huge-count": fixed(0) + w(0, 1, 0xFFFFFFFF) + S1,
    "too-long": fixed(0) + w(0) + write_list(chunk(*[seg(1, 0xFFFFFFFF, 0)])) + reply_chunk() + BODY,
}

replies = {
    "msg": fixed(0) + w(0, 0, 0) + w(0x11223344, 1, 0, 0, 0, 0),
    "nomsg-reply-chunk": fixed(1) + w(0) + write_list() + reply_chunk(chunk(seg(7, 300, 0x1000))),
    "write-written": fixed(0) + w(0) + write_list(chunk(seg(7, 4096, 0x1000), seg(8, 0, 0x2000)))
    + reply_chunk() + w(0x11223344, 1, 0, 0, 0, 0),
    "write-unused": fixed(0) + w(0) + write_list(chunk()) + reply_chunk(chunk(seg(1, 0, 0))) + w(1),
    "error-vers": fixed(4) + w(1, 1, 1),
    "error-vers-trunc": fixed(4) + w(1, 1),
    "error-chunk": fixed(4) + w(2),
    "error-unknown": fixed(4) + w(3),
    "error-empty": fixed(4),
    "read-in-reply": fixed(0) + read_entry(0, S1) + w(0, 0, 0) + w(1),
    "nomsg-no-chunk": fixed(1) + w(0, 0, 0),
    "done": fixed(3),
    "bad-vers": fixed(4, vers=0) + w(1, 1, 1),
    "overflow": fixed(1) + w(0, 0) + reply_chunk(chunk(seg(1, 1, 2**64 - 1))),
}

oncrpc = {
    "call-none": BODY,
    "call-none-args": BODY + w(1, 2, 3),
    "call-sys": rpc_call_sys(),
    "call-sys-nopad": rpc_call_sys(body=auth_sys(name=b"abcd", gids=())),
    "call-sys-dirty-pad": rpc_call_sys(body=auth_sys(name=b"h", pad=b"\xff\xff\xff")),
    "call-sys-16gids": rpc_call_sys(body=auth_sys(gids=range(16))),
    "call-sys-17gids": rpc_call_sys(body=auth_sys(gids=range(17))),
    "call-sys-trailing": rpc_call_sys(body=auth_sys() + w(0)),
    "call-gss": w(1, 0, 2, 100003, 4, 1, 6, 4, 0, 0, 0),
    "call-bad-verf": w(1, 0, 2, 100003, 4, 1, 0, 0, 1, 0),
    "call-rpcvers-3": w(1, 0, 3, 100003, 4, 1, 0, 0, 0, 0),
    "call-truncated-auth": w(1, 0, 2, 100003, 4, 1, 1, 400),
    "call-long-cred": w(1, 0, 2, 100003, 4, 1, 1, 404),
    "reply-success": w(1, 1, 0, 0, 0, 0) + w(42),
    "reply-prog-mismatch": w(1, 1, 0, 0, 0, 2, 2, 3),
    "reply-garbage": w(1, 1, 0, 0, 0, 4),
    "reply-bad-accept": w(1, 1, 0, 0, 0, 9),
    "reply-verifier": w(1, 1, 0, 6, 5) + b"abcde\0\0\0" + w(0),
    "reply-long-verifier": w(1, 1, 0, 6, 401),
    "reply-rpc-mismatch": w(1, 1, 1, 0, 2, 2),
    "reply-auth-badcred": w(1, 1, 1, 1, 1),
    "reply-auth-gss": w(1, 1, 1, 1, 14),
    "reply-auth-unknown": w(1, 1, 1, 1, 9),
    "reply-bad-stat": w(1, 1, 2),
    "reply-truncated": w(1, 1, 0, 0),
}


# chunk_validation: the ChunkCase::from_bytes format (see checks/chunk.rs).
def cseg(kind, handle=1, length=4096, offset=0x10000):
    return bytes([kind]) + w(handle, length) + struct.pack(">Q", offset)


def case(flags=0, lim=(0xFF, 0xFF, 0xFF), cb=5, body=4, reads=(), writes=(), reply=()):
    out = w(0xCAFE, 16) + bytes([flags, *lim, cb, body, len(reads)])
    for kind, pos, s in reads:
        out += bytes([kind]) + w(pos) + s
    out += bytes([len(writes)])
    for c in writes:
        out += bytes([len(c)]) + b"".join(c)
    if flags & 2:
        out += bytes([len(reply)]) + b"".join(reply)
    return out


L = cseg(1)  # length % 4097
P = cseg(2)  # one page
chunks = {
    "empty": b"",
    "msg-plain": case(),
    "msg-writes": case(writes=[[P, L], [P]]),
    "nomsg-pz": case(flags=1, reads=[(0, 0, P)]),
    "nomsg-pz-reply": case(flags=3, reads=[(0, 0, P), (1, 3, L)], reply=[P, P]),
    "msg-pz": case(reads=[(0, 0, P)]),
    "msg-no-body": case(body=0, writes=[[P]]),
    "zero-len": case(writes=[[cseg(0)]]),
    "overflow": case(writes=[[cseg(2 | 4, offset=5)]]),
    "exact-fit": case(writes=[[cseg(2 | 12)]]),
    "misaligned": case(reads=[(3, 6, P)]),
    "tiny-limits": case(lim=(1, 1, 1), cb=2, reads=[(1, 2, P), (1, 2, P)], writes=[[P], [P]]),
    "segs-over": case(lim=(0xFF, 0xFF, 2), writes=[[P, P, P]]),
    "bytes-over": case(cb=2, writes=[[P, P]]),
    "read-bytes-over": case(cb=3, reads=[(1, 1, P), (1, 2, P), (1, 1, P), (1, 1, P)]),
    "zero-limits": case(lim=(0, 0, 0), cb=0, reads=[(1, 1, P)], writes=[[P]], flags=2, reply=[P]),
    "empty-reply-chunk": case(flags=2, reply=[]),
    "nomsg-reply-only": case(flags=3, reply=[cseg(0)]),
    "raw-everything": case(cb=7, reads=[(3, 0x7FFFFFFC, cseg(3, length=0xFFFFFFFF))]),
}

for target, seeds in [
    ("rpcrdma_decode", calls),
    ("rpcrdma_reply_decode", replies),
    ("oncrpc_decode", oncrpc),
    ("chunk_validation", chunks),
]:
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds")
