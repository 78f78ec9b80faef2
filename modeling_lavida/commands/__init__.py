"""Subcommands of the ``lavida`` CLI: one module each, with ``add_arguments`` and ``run``."""
