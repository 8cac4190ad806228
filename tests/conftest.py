import os
import tempfile

from hypothesis import settings

# Tests never broadcast: discovery lookups stay on loopback (inherited by every process a test starts).
os.environ["ONITU_DISCOVERY_HOSTS"] = "127.0.0.1"
# Nor do they take the API's default port (tests run side by side): a test that wants the API says where.
os.environ["ONITU_API_LISTEN"] = ""
# Running launchers record their config here: the suite's, not the user's.
os.environ["ONITU_RUNTIME"] = tempfile.mkdtemp(prefix="onitu-runtime-")

from tests.helpers import server  # noqa: F401  (fixture)
from tests.servers import (  # noqa: F401  (fixtures)
    ftp_server,
    ftp_session,
    s3_server,
    s3_session,
    sftp_server,
    sftp_session,
    webdav_server,
    webdav_session,
)

# Property tests check what happens, not how fast: on a 2-core machine running three test workers and the servers
# they start, an example may take seconds, and hypothesis's default 200 ms deadline would fail it for that alone.
settings.register_profile("onitu", deadline=None)
settings.load_profile("onitu")


def pytest_addoption(parser):
    parser.addoption("--soak", type=int, default=None,
                     help="kill the space server / primary this many times in the fault tests (default 8 / 20)")


def pytest_configure(config):
    if config.getoption("--soak"):
        os.environ["ONITU_SOAK"] = str(config.getoption("--soak"))
