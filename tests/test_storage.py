"""One behavioural suite run against both storage backends.

S3 is moto's standalone server, started as a real process on 127.0.0.1 and reached over HTTP
by an unmodified boto3 client that finds it through AWS_ENDPOINT_URL, as a real S3-compatible
store would be found.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from conftest import BUCKET, free_port
from excamera.mu.storage import (
    KeyNotFound,
    LocalStorage,
    S3Storage,
    Storage,
    StorageError,
    open_storage,
)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Storage:
    if request.param == "local":
        return open_storage(str(tmp_path / "store"))
    request.getfixturevalue("s3_env")
    # A fresh prefix per test keeps tests independent inside the one bucket.
    return open_storage(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}")


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- behaviour of both backends


def test_bytes_round_trip_and_overwrite(store):
    run(store.put_bytes(b"hello", "a/b/c.bin"))
    assert run(store.get_bytes("a/b/c.bin")) == b"hello"
    run(store.put_bytes(b"", "a/b/c.bin"))
    assert run(store.get_bytes("a/b/c.bin")) == b""
    run(store.put_bytes(bytes(range(256)) * 3, "a/b/c.bin"))
    assert run(store.get_bytes("a/b/c.bin")) == bytes(range(256)) * 3


def test_large_file_round_trip(store, tmp_path):
    """A 12 MiB file: above the 8 MiB threshold, so S3 takes it as a multipart upload."""
    src = tmp_path / "big.bin"
    data = os.urandom(12 * 1024 * 1024 + 123)
    src.write_bytes(data)
    run(store.put(src, "big/one.bin"))
    dest = tmp_path / "out" / "sub" / "big.bin"
    run(store.get("big/one.bin", dest))
    assert dest.read_bytes() == data
    assert run(store.get_bytes("big/one.bin")) == data
    if isinstance(store, S3Storage):
        etag = run(store.etag("big/one.bin"))
        assert etag.endswith("-2"), f"expected a 2-part multipart upload, ETag {etag}"


def test_missing_key(store, tmp_path):
    with pytest.raises(KeyNotFound) as info:
        run(store.get_bytes("nope/missing.bin"))
    assert info.value.key == "nope/missing.bin"
    assert store.url in str(info.value) and "nope/missing.bin" in str(info.value)
    with pytest.raises(KeyNotFound, match="missing.bin"):
        run(store.get("nope/missing.bin", tmp_path / "x.bin"))
    assert not (tmp_path / "x.bin").exists()
    assert run(store.exists("nope/missing.bin")) is False


def test_missing_key_names_s3_url(s3_env):
    store = open_storage(f"s3://{BUCKET}/pre/fix")
    with pytest.raises(KeyNotFound) as info:
        run(store.get_bytes("k/x"))
    assert str(info.value) == f"no such object: s3://{BUCKET}/pre/fix/k/x"


def test_exists_and_delete(store):
    run(store.put_bytes(b"x", "d/k"))
    assert run(store.exists("d/k")) is True
    assert run(store.exists("d")) is False  # a "directory" is not an object
    run(store.delete("d/k"))
    assert run(store.exists("d/k")) is False
    run(store.delete("d/k"))  # deleting again is not an error
    with pytest.raises(KeyNotFound):
        run(store.get_bytes("d/k"))


def test_list_by_prefix(store):
    keys = [
        "vid-png16/00000001.png",
        "vid-png16/00000002.png",
        "vid-png16/00000010.png",
        "vid-png160/00000001.png",
        "vid-y4m_06/00000000.y4m",
        "other/deep/a/b.bin",
        "top.txt",
    ]

    async def fill():
        await asyncio.gather(*(store.put_bytes(k.encode(), k) for k in keys))

    run(fill())
    assert run(store.list("vid-png16/")) == keys[:3]
    assert run(store.list("vid-png16")) == keys[:4]  # a string prefix, not only a directory
    assert run(store.list("vid-png16/0000000")) == keys[:2]
    assert run(store.list("vid-")) == sorted(keys[:5])
    assert run(store.list("other/de")) == ["other/deep/a/b.bin"]
    assert run(store.list("")) == sorted(keys)
    assert run(store.list("absent/")) == []


def test_put_missing_local_file(store, tmp_path):
    with pytest.raises(StorageError, match="does not exist|cannot read"):
        run(store.put(tmp_path / "not-there.bin", "k"))


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "./a", "a/.", "", "a\\..\\b"]
)
def test_bad_keys_refused(store, key):
    with pytest.raises(StorageError) as info:
        run(store.put_bytes(b"x", key))
    assert not isinstance(info.value, KeyNotFound)
    assert store.url in str(info.value)
    with pytest.raises(StorageError):
        run(store.get_bytes(key))


def test_concurrent_puts_distinct_keys(store):
    async def go():
        await asyncio.gather(
            *(store.put_bytes(f"payload {i}".encode() * 1000, f"c/{i:03d}") for i in range(40))
        )
        return await asyncio.gather(*(store.get_bytes(f"c/{i:03d}") for i in range(40)))

    got = run(go())
    assert got == [f"payload {i}".encode() * 1000 for i in range(40)]
    assert run(store.list("c/")) == [f"c/{i:03d}" for i in range(40)]


def test_concurrent_puts_same_key_never_partial(store):
    """Writers race on one key while a reader polls it: every read is one whole payload."""
    payloads = [bytes([i]) * (256 * 1024) for i in range(1, 13)]

    async def go():
        await store.put_bytes(payloads[0], "race")
        seen = []
        done = asyncio.Event()

        async def reader():
            while not done.is_set():
                seen.append(await store.get_bytes("race"))

        task = asyncio.create_task(reader())
        await asyncio.gather(*(store.put_bytes(p, "race") for p in payloads))
        done.set()
        await task
        return seen, await store.get_bytes("race")

    seen, final = run(go())
    assert final in payloads
    assert seen, "the reader never ran"
    for data in seen:
        assert data in payloads


# ---------------------------------------------------------------- local-only behaviour


def test_local_keys_cannot_escape_root(tmp_path):
    root = tmp_path / "root"
    store = LocalStorage(root)
    for key in ["../outside", "x/../../outside", "/tmp/outside"]:
        with pytest.raises(StorageError, match="key"):
            run(store.put_bytes(b"x", key))
    assert not (tmp_path / "outside").exists()
    # A symlink inside the root that points out of it is refused too.
    root.mkdir(exist_ok=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError, match="outside the storage root"):
        run(store.put_bytes(b"x", "link/file"))
    assert list((tmp_path / "elsewhere").iterdir()) == []
    (tmp_path / "elsewhere" / "secret").write_bytes(b"s")
    with pytest.raises(StorageError, match="outside the storage root"):
        run(store.get_bytes("link/secret"))
    with pytest.raises(StorageError, match="outside the storage root"):
        run(store.list("link/"))


def test_local_writes_leave_no_temp_files(tmp_path):
    store = LocalStorage(tmp_path / "s")
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc" * 1000)
    run(store.put(src, "a/f.bin"))
    run(store.put_bytes(b"z", "a/g.bin"))
    run(store.get("a/f.bin", tmp_path / "dl" / "f.bin"))
    assert sorted(p.name for p in (tmp_path / "s" / "a").iterdir()) == ["f.bin", "g.bin"]
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["f.bin"]


def test_open_storage_forms(tmp_path, s3_env):
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    local = open_storage(f"file://{tmp_path}/d")
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "d"
    assert local.url == (tmp_path / "d").as_uri()
    s3 = open_storage(f"s3://{BUCKET}/a/b/")
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.url) == (BUCKET, "a/b", f"s3://{BUCKET}/a/b")
    assert open_storage(f"s3://{BUCKET}").url == f"s3://{BUCKET}"
    with pytest.raises(StorageError, match="unsupported"):
        open_storage("gs://bucket/x")
    with pytest.raises(StorageError, match="bucket"):
        open_storage("s3://")


# ---------------------------------------------------------------- S3-only behaviour


def test_s3_prefix_isolates_keys(s3_env):
    a = open_storage(f"s3://{BUCKET}/iso-a")
    b = open_storage(f"s3://{BUCKET}/iso-b")
    run(a.put_bytes(b"1", "k"))
    assert run(b.exists("k")) is False
    assert run(a.list("")) == ["k"]
    whole = open_storage(f"s3://{BUCKET}")
    assert "iso-a/k" in run(whole.list("iso-a/"))


def test_s3_endpoint_url_s3_takes_precedence(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_env)
    store = open_storage(f"s3://{BUCKET}/prec")
    assert store.endpoint_url == s3_env
    run(store.put_bytes(b"ok", "k"))
    assert run(store.get_bytes("k")) == b"ok"


def test_s3_unreachable_endpoint_is_one_clear_line(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    store = S3Storage(BUCKET, "x")
    with pytest.raises(StorageError) as info:
        run(store.get_bytes("k"))
    msg = str(info.value)
    assert "\n" not in msg and f"s3://{BUCKET}/x/k" in msg and "endpoint" in msg


def test_s3_missing_bucket(s3_env):
    store = open_storage("s3://no-such-bucket-here/p")
    with pytest.raises(StorageError, match="no-such-bucket-here.*does not exist"):
        run(store.put_bytes(b"x", "k"))


def test_s3_no_credentials_message(s3_env, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    store = open_storage(f"s3://{BUCKET}/creds")
    with pytest.raises(StorageError) as info:
        run(store.get_bytes("k"))
    msg = str(info.value)
    assert "credentials" in msg and "AWS_ACCESS_KEY_ID" in msg and f"s3://{BUCKET}/creds/k" in msg
    assert "\n" not in msg


def test_s3_reads_other_writers_objects(s3_env):
    """Objects written by a plain boto3 client (as another tool would) are visible, and back."""
    import boto3

    client = boto3.client("s3")  # finds moto through AWS_ENDPOINT_URL too
    client.put_object(Bucket=BUCKET, Key="ext/in.bin", Body=b"from outside")
    store = open_storage(f"s3://{BUCKET}/ext")
    assert run(store.get_bytes("in.bin")) == b"from outside"
    run(store.put_bytes(b"from us", "out.bin"))
    assert client.get_object(Bucket=BUCKET, Key="ext/out.bin")["Body"].read() == b"from us"
