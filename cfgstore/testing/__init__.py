"""The backend contract suite, shipped as a pytest plugin.

Every test here runs unchanged against any installed backend chain::

    pip install 'cfgstore[testing]' your-backend
    python -m pytest --pyargs cfgstore.testing --cfgstore-chain=memory,NAME

Settings of the store under test come from ``CFGSTORE_*`` variables or repeatable
``--cfgstore-setting KEY=VALUE`` options (:mod:`cfgstore.testing.plugin`). Tests that need
several instances on one storage run when the backend declares the capability in its
descriptor (:data:`cfgstore.adapters.backend.SHARED`, ``SHARED_LOGINS``). A failure names
the broken rule and the hookspec it belongs to (:mod:`cfgstore.testing.rules`).
"""
