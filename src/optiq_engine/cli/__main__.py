"""``python -m optiq_engine.cli``: the ``optiq`` command."""

from .commands import main

if __name__ == "__main__":
    main()
