"""``python -m skvmf``: the ``skvmf`` command line (see :mod:`skvmf.cli`)."""

from skvmf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
