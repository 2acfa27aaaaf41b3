"""The archive bucket: the S3 implementation (on an in-memory S3 client) and the fake
beside it keep the same contract, so unit tests on the fake say something about S3."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.archiver.repository import Archive, ArchiveRejected, FakeArchive, S3Archive
from tests.support.archiver import FakeS3

pytestmark = pytest.mark.unit

GZ = "application/gzip"


def _s3() -> Archive:
    return S3Archive(FakeS3(page_size=2, fail_keys={"bad.gz": "EntityTooLarge"}), "b")


def _fake() -> Archive:
    return FakeArchive(rejected={"bad.gz": "EntityTooLarge"})


ARCHIVES: dict[str, Callable[[], Archive]] = {"s3": _s3, "fake": _fake}


@pytest.fixture(params=sorted(ARCHIVES))
def archive(request: pytest.FixtureRequest) -> Archive:
    return ARCHIVES[request.param]()


async def test_objects_round_trip_whole_or_by_range(archive: Archive) -> None:
    await archive.ensure_bucket()
    assert await archive.ping()
    await archive.put_bytes("a/b/1.gz", b"0123456789", content_type=GZ)
    await archive.put_bytes("a/b/1.gz", b"abcdefghij", content_type=GZ)
    assert await archive.get_bytes("a/b/1.gz") == b"abcdefghij"
    assert await archive.get_bytes("a/b/1.gz", start=2, length=3) == b"cde"
    assert await archive.get_bytes("a/b/1.gz", start=7) == b"hij"
    await archive.put_bytes("p.json", b'{"key": "a/b/1.gz"}', content_type="application/json")
    assert await archive.get_json("p.json") == {"key": "a/b/1.gz"}
    assert await archive.get_bytes("missing.gz") is None
    assert await archive.get_json("missing.json") is None


async def test_listing_pages_and_folders(archive: Archive) -> None:
    for key in ("a/x/1.json", "a/x/2.json", "a/y/1.json", "b/1.json", "top.json"):
        await archive.put_bytes(key, b"{}", content_type="application/json")
    assert [k async for k in archive.keys("a/")] == ["a/x/1.json", "a/x/2.json", "a/y/1.json"]
    assert await archive.children("") == ["a/", "b/"]
    assert await archive.children("a/") == ["a/x/", "a/y/"]
    assert await archive.delete(["a/x/1.json", "a/y/1.json"]) == 2
    assert [k async for k in archive.keys("")] == ["a/x/2.json", "b/1.json", "top.json"]


async def test_an_object_never_storable_is_rejected(archive: Archive) -> None:
    with pytest.raises(ArchiveRejected) as caught:
        await archive.put_bytes("bad.gz", b"", content_type=GZ)
    assert caught.value.code == "EntityTooLarge"


async def test_no_lifecycle_rules_on_either() -> None:
    assert not await _s3().apply_lifecycle(30)
    assert not await _fake().apply_lifecycle(30)
