"""One real local Ray for every cluster test (Ray starts slowly: it is started once)."""

import pytest


@pytest.fixture(scope="session")
def local_ray():
    """``ray.init(num_cpus=2)`` for the session; shut down after the last cluster test.
    ``Cluster("local")`` in the tests uses this instance and leaves it running."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
