"""``python -m slidestream.cli``: the same as the ``slidestream`` command."""

from slidestream.cli import main

main()
