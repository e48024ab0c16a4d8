"""Named shared environments (``envbuild environments``, ``check``, ``--environment``).

One module per job: ``names.py`` (``NAME[:VERSION]``), ``record.py`` (a version and what is
installed in it), ``store.py`` (the registry on disk: atomic, immutable versions), ``probe.py``
(asking an environment's own interpreter what it holds), ``wanted.py`` (what a model asks for:
its lock or its requirement lines), ``verdict.py`` (the rows: ok, missing, version, marker,
local-label, python, conflict), ``union.py`` (one environment for several models),
``create.py`` (building or registering a version), ``use.py`` (choosing one for a model).
``envs/shared.py`` is the backend that runs models there; ``image/shared.py`` and
``image/environment.py`` the images.
"""
