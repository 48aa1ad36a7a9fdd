from __future__ import annotations

import pytest

from consumers.rabbitmq import job_delivery_mode
from contracts.settings import Settings


@pytest.mark.parametrize(("queue_type", "mode"), [("classic", 1), ("quorum", 2)])
def test_jobs_are_persisted_only_where_the_queue_replicates_them(queue_type: str,
                                                                 mode: int) -> None:
    assert job_delivery_mode(Settings(queue_type=queue_type)) == mode
