"""Missing material fails a test; XC_ALLOW_MISSING_MATERIAL=1 makes it a skip naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from _shared_paths import ALLOW_MISSING, shared_dir, vectors_dir


def test_missing_material_fails_unless_allowed(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCAMERA_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.delenv("XC_TEST_VECTORS", raising=False)
    monkeypatch.delenv(ALLOW_MISSING, raising=False)
    with pytest.raises(pytest.fail.Exception, match="missing test material: .*no-shared"):
        shared_dir()
    with pytest.raises(pytest.fail.Exception, match="no-shared"):
        vectors_dir()
    (tmp_path / "no-shared" / "clips").mkdir(parents=True)
    assert shared_dir() == tmp_path / "no-shared"
    with pytest.raises(pytest.fail.Exception, match="VP8 test vectors at .*vp8-test-vectors"):
        vectors_dir()
    monkeypatch.setenv("XC_TEST_VECTORS", str(tmp_path / "no-vectors"))
    with pytest.raises(pytest.fail.Exception, match="no-vectors"):
        vectors_dir()
    (tmp_path / "no-vectors").mkdir()
    assert vectors_dir() == tmp_path / "no-vectors"
    monkeypatch.setenv("EXCAMERA_SHARED", str(tmp_path / "still-none"))
    monkeypatch.setenv(ALLOW_MISSING, "1")
    with pytest.raises(pytest.skip.Exception, match=r"NOT RUN \(XC_ALLOW.*still-none"):
        shared_dir()
