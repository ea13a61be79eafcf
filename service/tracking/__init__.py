"""Tracking state in the store: number pools and leases, visits, the experiments' ledger, the
conversion log, decision tokens, the spool for outages and retention.
"""
