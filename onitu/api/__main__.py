"""``python -m onitu.api``: the API process (see :mod:`onitu.api.process`)."""

from onitu.api.process import main

raise SystemExit(main())
