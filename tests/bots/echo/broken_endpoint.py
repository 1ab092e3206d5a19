"""An endpoint module that cannot start: importing it fails (a missing dependency, a typo)."""

raise RuntimeError("this endpoint cannot start: its model is missing")
