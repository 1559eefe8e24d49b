"""The ``mmrec`` command line: one module per command, composed in :mod:`mmrec.cli.main`."""
