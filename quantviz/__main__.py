from quantviz.cli import main

raise SystemExit(main())
