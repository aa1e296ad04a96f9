"""``python -m bnn_nas.cli``: the same as the ``bnn-nas`` command."""

from bnn_nas.cli import main

main()
