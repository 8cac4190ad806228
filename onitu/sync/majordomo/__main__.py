from onitu.sync.majordomo.server import main

raise SystemExit(main())
