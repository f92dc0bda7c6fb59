"""``python -m rocky_runner``: the same as the ``rocky-runner`` console script."""

from rocky_runner.main import main

raise SystemExit(main())
