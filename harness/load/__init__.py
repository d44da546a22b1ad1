"""Load profiles: how a model's latency, throughput and errors hold up as concurrent users rise.

`profile` (stages, SLOs) -> `generator` (closed loop and Poisson open loop over `wire`, a lean
streaming client that timestamps bytes in the kernel) -> `stats` (per-stage percentiles) ->
`capacity` (SLO search) -> `results` (the store's load tables). `runner` drives a plan through it.
"""
