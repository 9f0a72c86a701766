from supportd.service.cli import main

raise SystemExit(main())
