"""``python -m langgraph_fanout.cli`` is the ``fanout`` command."""

from langgraph_fanout.cli.main import main

main()
