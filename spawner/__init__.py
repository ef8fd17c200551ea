"""Quota-aware JupyterHub spawners: a lease from the quota service before every workspace."""
