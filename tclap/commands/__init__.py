"""Sub-commands of the ``tclap`` CLI (see :mod:`tclap.cli`)."""
