"""Subcommands of the ``unnoise`` command line (see :mod:`unnoise.cli`)."""
