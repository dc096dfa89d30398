from star.cli import main

raise SystemExit(main())
