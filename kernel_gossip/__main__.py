from kernel_gossip.cli import main

raise SystemExit(main())
