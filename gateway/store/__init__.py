"""Durable state: one async interface (:class:`gateway.store.base.Store`), SQLite by default."""
