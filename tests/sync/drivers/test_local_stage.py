"""Staged local writes: which filesystems a batch is made durable on with one syncfs."""

from __future__ import annotations

import os

from onitu.sync.drivers import local_stage


def test_syncfs_stands_for_flushes_only_on_local_disk_filesystems():
    assert not local_stage._syncfs_makes_durable(os.stat("/proc").st_dev), "procfs taken for a disk"
    assert not local_stage._syncfs_makes_durable(-1 & 0xFFFFFFFF), "an unknown device taken for a disk"
