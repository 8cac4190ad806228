import pytest

from tests.api.harness import ApiHub


@pytest.fixture(scope="module")
def api_hub(tmp_path_factory):
    """One hub with its API for a whole test module (starting one takes seconds; tests use their own paths)."""
    hub = ApiHub(tmp_path_factory.mktemp("api"))
    try:
        yield hub.start()
    finally:
        try:
            hub.stop()
        finally:
            hub.kill_everything()
