from tests.helpers import server  # noqa: F401  (fixture)
