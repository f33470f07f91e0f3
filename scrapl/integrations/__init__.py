"""Optional integrations with training frameworks.

Each submodule imports its framework and is only importable when that framework is
installed (``pip install "scrapl[lightning]"`` for :mod:`scrapl.integrations.lightning`);
nothing in the core imports them.
"""
