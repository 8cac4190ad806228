import os

# Tests never broadcast: discovery lookups stay on loopback (inherited by every process a test starts).
os.environ["ONITU_DISCOVERY_HOSTS"] = "127.0.0.1"

from tests.helpers import server  # noqa: F401  (fixture)
