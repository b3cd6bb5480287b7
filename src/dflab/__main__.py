"""``python -m dflab``: the same as the ``dflab`` command."""

from dflab.cli import main

main()
