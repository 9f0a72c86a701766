from supportd.cli import main

raise SystemExit(main())
