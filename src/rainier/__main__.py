"""``python -m rainier``: the same as the ``rainier`` command."""

from rainier.cli import main

if __name__ == "__main__":
    main()
