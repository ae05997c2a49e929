"""The shared test harness: plain modules that the suites' conftests wrap as fixtures, and that
the test modules and bench/ import. Not part of the product (the image leaves it out).

- `helpers`: ports, polling waits, git, child OpenTrace processes.
- `signer`: the HMACs of SPEC §5 and §6, written from the SPEC, independent of `contract/`.
- `agent`: the agent's fake project, the fake backend written from SPEC §6, signed triggers,
  running `python -m host_agent`.
- `registry_server`: a registry on 127.0.0.1, signing keys and envelopes (SPEC §4).
- `e2e`: a real install (upstream, `run_local.py`, the agent) driven over HTTP.
- `agent_client`, `factories`, `policies`, `beat`: the update flow's requests, runs, policies
  and Celery beat; `channels`, `webhook_receiver`, `smtp`: notices; `tracking`, `clickhouse`.
"""
