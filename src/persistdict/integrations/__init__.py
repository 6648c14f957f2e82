"""Integrations of persistdict with other libraries.

Each submodule imports the library it integrates with, and only that submodule
does: ``import persistdict`` never imports any of them. Install the matching extra
first, e.g. ``pip install "persistdict[langchain]"`` for
:mod:`persistdict.integrations.langchain`.
"""

__all__: list[str] = []
