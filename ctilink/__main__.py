from ctilink.cli import main

raise SystemExit(main())
