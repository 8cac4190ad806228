"""``python -m onitu.sync.plug --service NAME``: run one service's plug."""

from onitu.sync.plug.plug import main

raise SystemExit(main())
