"""``python -m captum_polycam``: the same command line as ``captum-polycam``."""

from captum_polycam.cli.main import main

raise SystemExit(main())
