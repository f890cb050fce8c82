"""The ``marginflow`` command-line tool: one module per command group, registered in
:mod:`marginflow.cli.app`. Output is a readable table, or JSON with ``--json``."""
