"""``python -m cli`` is the ``fanout`` command."""

from cli.main import main

main()
