"""Running aikit work on a Ray cluster (``pip install 'aikit[ray]'``).

- :mod:`.cluster` connects to the cluster (``[ray] address`` in aikit.toml, ``aikit mission run
  --ray ADDRESS``, or a local one) and turns an address that does not answer into a clear error.
- :mod:`.steps` is the ``ray`` placement of the workflow engine (``Workflow.executor = "ray"``,
  see ``workflows/engine/placement.py``): tool, command, HTTP, LLM, agent and function steps run
  as Ray tasks, everything around them (scheduling, retries, timeouts, hooks, events, the run
  record) stays in the calling process.
- :mod:`.shipping` says which steps can be shipped to a worker, before a run starts.
- :mod:`.worker` is what runs inside a worker: one attempt of one step.
- :mod:`.tracing` carries the W3C trace context into the worker.
- :mod:`.embedding` fans RAG embedding out to workers.

Nothing here imports ``ray`` at import time: only a run that asks for Ray pays for it.
"""
