"""Warehouse adapters: the interface in :mod:`.base`, one module per warehouse type.

Nothing is imported here, so ``import rocky_runner.adapters.base`` stays cheap and a
runner loads only the client library of the warehouse it talks to.
"""
