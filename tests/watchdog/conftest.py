import pytest

from tests.watchdog.harness import Onitu


@pytest.fixture
def onitu_factory(tmp_path):
    runs: list[Onitu] = []

    def make(extra: str = "") -> Onitu:
        run = Onitu(tmp_path, extra)
        runs.append(run)
        return run

    yield make
    for run in runs:
        try:
            run.stop()
        finally:
            run.kill_everything()
