"""The workflow engine: validate a :class:`~.model.Workflow`, then run it on the current asyncio
loop and record what happened in a :class:`~.model.RunRecord` stored in State.

```python
problems = validate(wf, components=c, inputs={"city": "Oslo"})   # every problem at once
record = await run(wf, components=c, inputs={"city": "Oslo"})
record.status, record.steps["fetch"].output
```

Scheduling (the same rules as Airflow and Argo)
-----------------------------------------------

- **Dependencies.** ``mode="dag"``: a step starts when every step in its ``depends_on`` has
  finished. ``"sequential"``: each step also depends on the one declared before it.
  ``"parallel"``: only explicit ``depends_on`` (usually none). Ready steps start in declaration
  order; at most ``Workflow.max_concurrency`` run at once (None: unbounded).
- **Conditions** (``Step.when``) are checked when the step becomes ready. False -> the step is
  ``skipped`` and its dependents still run (a skipped step's ``{{steps.ID.output...}}`` is None).
  Only failures propagate.
- **Failures.** A step that fails (or times out) marks every step downstream of it
  ``upstream_failed`` (they never run), and the run ends ``failed``. With ``fail_fast`` (the
  default) no new step starts after a failure; steps already running finish, and steps that
  never started are ``cancelled``. Without it, independent branches go on.
- **continue_on_error.** The step is recorded ``failed`` (or ``timed_out``) but counts as done
  for scheduling: its dependents run and see its output as None, fail_fast is not triggered, and
  the run can still succeed.
- **Retries.** ``Step.retries`` (default ``Workflow.retry_attempts``) more attempts after a
  failure or a per-step timeout, waiting ``retry_delay_s * backoff ** (n - 1)`` before retry n.
  Not retried: a hook's cancel, unresolvable templates and ``invalid_argument`` errors. ``StepRecord.attempts`` counts tries.
  A looping step is retried as a whole.
- **Timeouts.** ``Step.timeout_s`` bounds each attempt: the attempt's task is cancelled, and the
  cancellation reaches the tool call (``run_process`` kills the program's process group), and a
  ``function`` step must stop when cancelled (the Lua binding stops Lua code even mid-computation)
  -> ``timed_out``. ``Workflow.timeout_s`` bounds the run: running steps are cancelled and marked
  ``timed_out``, steps not started ``cancelled``, and the run ends ``timed_out``.
- **Loops** (``Step.loop``) run iterations one after another inside the step; the output is the
  list of iteration outputs. ``range`` is inclusive (``[1, 3]`` -> 1, 2, 3), ``over`` a list (a
  map iterates ``{key, value}`` pairs), ``while_`` a condition checked before each iteration.
  An iteration output ``{"break": true, ...}`` ends the loop. ``max_iterations`` caps every
  form: a longer ``over``/``range`` is an error; a ``while_`` loop just stops there.
  ``{{loop.item}}``, ``{{loop.index}}`` (0-based), ``{{loop.previous}}`` resolve per iteration.

Step kinds
----------

``tool`` -> ``components.tools.acall(target, params)``; ``command`` -> the ``run_process`` tool
(``params.command`` an argv list or a string split like a shell; a non-zero exit fails the step
unless ``params.check`` is false); ``agent`` -> ``components.new_agent(spec).run(params.input)``
(``target``: an AgentSpec, a dict of its fields, or the name of an ``[agents.NAME]`` config
table; output ``AgentResult.to_dict()``); ``llm`` -> one completion of ``params.prompt`` (with
``system``, ``model`` (default "default"), ``temperature``, ``max_tokens``, ``fallback`` models),
made as an agent makes its model calls (``agents.llm_call``: hooks and events ``llm.*`` naming
``{workflow, run_id, step}``), output ``{text, model, usage, stop_reason}`` plus ``refusal`` when a
content filter stopped it; ``workflow`` -> a nested run (inputs = params, run id
``<run_id>.<step>``), output its record as a dict; ``function`` -> ``fn(params, ctx)`` with a
:class:`StepContext` (sync functions run in the loop's thread; async ones are awaited);
``noop`` -> its params.

Hooks and events
----------------

A step's work is an operation of kind ``workflow.step`` (``steps.WORKFLOW_STEP``) run through the
operation pipeline (``components.pipeline``, see :mod:`aikit_components.operations`), which fires
the hooks and publishes ``workflow.step.started``; the step's own retries, backoff and timeouts
happen inside it. Hook ``workflow.step.before`` (payload ``{workflow, run_id, step, kind,
params}``): cancel -> the step fails with code ``cancelled``; replace -> the step succeeds with
that output without running; changing ``payload["params"]`` changes the arguments (for looping
steps the params are still templates). ``workflow.step.after`` (``output``, ``attempt``): replace
-> a different output; cancel -> the step fails (code ``cancelled``); retry -> one more attempt.
``workflow.step.error`` (``error``, ``attempts``; after the step's own retries are used up):
replace -> the step succeeds with that output; retry -> one more attempt. At most 3 hook retries
per step (``operations.MAX_RETRIES``). Events: ``workflow.started``, ``workflow.finished``,
``workflow.step.started`` (``{workflow, run_id, step, kind}`` when the step's work starts, again
after a hook's retry; not when a before-hook cancelled or replaced it),
``workflow.step.finished`` (succeeded or skipped), ``workflow.step.failed`` (any other final
status; these two once per step, with ``status``, ``attempts``, ``duration_ms``),
``workflow.step.retrying`` (the step's own retries). ``on_event(kind, step_id, record)`` is called
(in the loop's thread; keep it short) with kind ``run.started`` / ``run.finished`` (step_id None,
the RunRecord) and ``step.started`` / ``step.finished`` (the StepRecord; its status says how it
ended).

Persistence and resume
----------------------

The record lives in State, scope ``workflow:<run_id>``: key ``run`` holds the whole record
(steps still pending are left out until they change) and the journal the steps finished since
the last full write, one segment per write (keys ``journal``, ``journal.1``, ``journal.2``, ...:
each write stores only the steps it adds). Writes: at the start; after a step of any kind other than ``noop`` finishes
or any step fails (before the next step starts: one write covers every step that finished in the
same loop iteration); for ``noop`` and skipped steps at most every ``persist_interval_s``
(0.25 s, longer when writing the record costs more than a fifth of that time); and at the end.
``run(..., durable_steps=False)`` puts every successful step on that interval schedule (a
durable write costs an fsync, 2-4 ms, which dominates runs of many trivial steps).
Small writes go to the journal; the full record is rewritten when the journal holds
``max(32, sqrt(steps))`` segments, so a big run does not rewrite everything after every step.
:func:`load_run` merges both. A crash can thus lose at most the last ``persist_interval_s`` of
noop steps, which simply run again. The writes go through ``State.aset``: the record is encoded
on the loop, its commit and fsync run in the store's writer thread while the run's other steps go
on, one write at a time per run (the steps that finish during a commit go into the next write);
"before the next step starts" is kept by the step instead: a step that starts after a durable
step ended first awaits the commit of that step's record, as every step awaits the start's write;
``run`` returns once the final write is committed.

``run(..., resume=record_or_run_id)`` reuses every step that ``succeeded`` (or was ``skipped``)
whose upstream steps are all reused too, with their outputs, and runs the rest under the same
run id. Nested workflows resume from their own records.

The parts of a run
------------------

:func:`run` (``runner``) checks the workflow (``validation.analyze``), then builds one run from
parts that are each given what they need: a :class:`~.scheduler.RunScheduler` (the DAG: ready
queue, concurrency limit, failures, teardown) hands each step to a :class:`~.steps.StepRunner`
(its condition, then the step as a ``workflow.step`` operation through the pipeline: hooks,
attempts, retries, per-attempt timeout); an attempt's work is done by :class:`~.loops.StepWork`
(loop iterations) and the :class:`~.executors.StepExecutors` registry (one executor per step
kind; ``Workflow.executor = "ray"`` wraps that registry in a placement that runs the step kinds
it can as Ray tasks, see :mod:`~.placement`). A :class:`~.conditions.ConditionEvaluator` checks
``when`` and ``while_``, a
:class:`~.records.RunRecorder` keeps the record in State and :class:`~.events.RunEvents`
publishes the run's events and calls ``on_event``.
"""

from __future__ import annotations

from ..validation import layers, run_scope, validate
from .context import StepContext
from .records import PERSIST_INTERVAL_S, load_run
from .runner import run

__all__ = ["PERSIST_INTERVAL_S", "StepContext", "layers", "load_run", "run", "run_scope", "validate"]
