"""Load generators: when requests are sent and how many are in flight; records what happened.

`static` runs batches back to back; `streaming` keeps a concurrency (closed loop) or follows an
arrival schedule (open loop) against a backend's `request`. Neither knows which engine it drives.
"""
