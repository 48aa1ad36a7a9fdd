from __future__ import annotations

import pytest

from dispatcher.allowlist import WorkerAllowlist


@pytest.mark.parametrize(("entries", "address", "allowed"), [
    (["*"], "http://10.1.2.3:21002", True),
    (["*"], "https://worker.internal", True),
    (["*"], "file:///etc/passwd", False),
    (["*"], "gopher://127.0.0.1:6379", False),
    (["*"], "http://user:pw@worker:21002", False),
    (["*"], "http://:80", False),
    (["10.0.0.0/8"], "http://10.9.8.7:21002", True),
    (["10.0.0.0/8"], "http://169.254.169.254/latest/meta-data", False),
    (["[10.0.0.0/8]:21002"], "http://10.0.0.5:21002", True),
    (["[10.0.0.0/8]:21002"], "http://10.0.0.5:6379", False),
    (["*.workers.internal"], "http://gpu-1.workers.internal:21002", True),
    (["*.workers.internal"], "http://evil.com", False),
    (["worker:21002"], "http://worker:21002", True),
    (["worker:21002"], "http://worker:21003", False),
    (["worker"], "http://WORKER:1", True),
    (["127.0.0.1:80"], "http://127.0.0.1", True),
])
def test_rules(entries: list[str], address: str, allowed: bool) -> None:
    assert WorkerAllowlist(entries).allows(address) is allowed
