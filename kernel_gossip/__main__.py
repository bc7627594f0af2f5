from kernel_gossip.cli.main import main

raise SystemExit(main())
