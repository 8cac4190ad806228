"""read_all(..., packed=True): each tuple as its msgpack bytes, decoded by the caller one at a time (the referee
loads a million records so at each start: decoded at once they took gigabytes)."""

from __future__ import annotations

from onitu.space.protocol import unpack_tuple


def test_packed_read_all_gives_each_tuple_as_its_bytes(ts):
    records = [("rec", f"docs/d{i // 100:03d}/f{i:05d}.txt", {"size": i, "holders": ["a", "b"], "pad": "p" * 400})
               for i in range(3000)]  # over a megabyte: the answer comes in parts
    ts.batch([("write", rec, None) for rec in records])
    ts.write(("other", "x", {}))
    packed = ts.read_all(("rec", None, None), packed=True)
    assert all(type(body) is bytes for body in packed)
    assert [unpack_tuple(body) for body in packed] == records == ts.read_all(("rec", None, None))
    assert [unpack_tuple(b) for b in ts.read_all(("rec", None, None), limit=2, packed=True)] == records[:2]
    assert ts.read_all(("none", None), packed=True) == []
