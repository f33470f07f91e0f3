"""``python -m scrapl ...`` runs the ``scrapl`` command line (:mod:`scrapl.cli`)."""

from scrapl.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    raise SystemExit(main())
