"""``python -m graphs`` is the ``fanout`` command."""

from graphs.cli import main

main()
