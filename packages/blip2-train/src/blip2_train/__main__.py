"""``python -m blip2_train stage1|stage2 ...`` (the same as the ``blip2-train`` command)."""

from blip2_train.cli import main

raise SystemExit(main())
