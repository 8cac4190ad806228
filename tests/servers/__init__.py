"""Real storage servers on 127.0.0.1 for the remote drivers' tests: moto S3, OpenSSH sftp, pyftpdlib, wsgidav.

Each module has a session fixture that starts its server process once (``*_session``) and a per-test fixture
(``s3_server``, ``sftp_server``, ``ftp_server``, ``webdav_server``) that gives the test a bucket or folder of its own
and a dataclass with the driver's ``options``. The ``*_process`` context managers start a private server, for tests
that stop, freeze or kill it. Every server dies with the test process (PR_SET_PDEATHSIG)."""

from tests.servers.ftp import FtpServer, ftp_server, ftp_session
from tests.servers.s3 import S3Server, s3_server, s3_session
from tests.servers.sftp import SftpServer, sftp_server, sftp_session
from tests.servers.webdav import WebdavServer, webdav_server, webdav_session

__all__ = ["FtpServer", "S3Server", "SftpServer", "WebdavServer", "ftp_server", "ftp_session", "s3_server",
           "s3_session", "sftp_server", "sftp_session", "webdav_server", "webdav_session"]
