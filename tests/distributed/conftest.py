"""The Ray tests' session fixture, defined once here: imported into each test module it would be a
fixture per module, and a second ``ray.init`` in one process fails."""

from tests.support.ray_cluster import ray_cluster  # noqa: F401  (the session fixture)
