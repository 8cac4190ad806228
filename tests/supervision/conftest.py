import pytest

from tests.supervision.harness import Onitu


@pytest.fixture
def onitu_factory(tmp_path):
    runs: list[Onitu] = []

    def make(extra: str = "", fast_crash: float = 5.0, busy: float = 15.0) -> Onitu:
        run = Onitu(tmp_path, extra, fast_crash, busy=busy)
        runs.append(run)
        return run

    yield make
    for run in runs:
        try:
            run.stop()
        finally:
            run.kill_everything()
