from __future__ import annotations

from api.auth import key_matches


def test_key_matching() -> None:
    keys = [b"sk-one", b"sk-two"]
    assert key_matches(b"sk-two", keys)
    assert not key_matches(b"sk-tw", keys)
    assert not key_matches(b"", keys)
    assert not key_matches(b"sk-one ", keys)
