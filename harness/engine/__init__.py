"""Execute a plan: fan its requests out across models concurrently, grade each answer, store each sample.

The only package that knows about concurrency. `units` enumerates the work, `runner` runs one unit,
`local` drives them on one asyncio loop, `batch` sends a `batch:` model's units through its
provider's Batch API instead (on the same loop, through the same runner and writer; `harness.store.batches`
holds what it stores), `pacing` keeps each model within its limits, `writer` commits finished
samples, `runs` creates/resumes/finishes runs around an executor, `estimate` prices a plan without
sending it. `executors` is the executor seam: executors registered by name (`local` in local.py,
`ray` in ray_executor.py), the one `RunOptions` value they all take, and `RunOutcome`; `tuning`
is the only place that tunes the process (garbage collector, GIL switch interval).

The scale-out seam is two small pieces:

* `plan_units(plan, model, suites, done, shard=(i, n))` lazily enumerates a model's remaining work
  as `WorkUnit`s (items stream from disk, prompts are built one at a time); `shard` keeps the
  units whose stable hash falls in shard i of n, so n workers split a plan without talking.
* `UnitRunner.run(unit) -> SampleRecord | None` requests (with retries), grades and hands one unit
  to a sink, independently of every other unit (None: a fatal error, bad key or unknown model or
  nothing listening, left it unstored for a rerun; a few in a row stop the model, `ModelState.failed`).

`LocalExecutor` drives both on one asyncio loop (what `harness run` uses). A distributed
executor (e.g. Ray) would: create or resume the run once (`harness.engine.runs.choose_run`), then on
each of n machines build the `PreparedSuite`s, read `store.done_keys(run_id)`, and run
`plan_units(..., shard=(i, n))` through a `UnitRunner` whose sink is that machine's
`StoreWriter` on the shared database. The store's unique key (run, model, suite, item,
sample index) makes a unit finished twice harmless; `harness.engine.runs.finish_status` marks the run
finished once every expected sample is stored. `harness run --shard I/N --resume RUN` does
exactly this from the command line.

Scheduling, per model: a dispatcher takes a concurrency slot (an AIMD window, see
`AdaptiveLimiter`) and a request-rate/token-rate token (`RateLimiter`), then pulls the next unit
and starts it. A unit that must retry gives its slot back while it waits out its backoff, so
other units keep every connection busy; its retry goes to the front of the queue for the next
free slot. Graders known to be cheap run inline on the loop; any other grader (code in the
sandbox, plugins) runs on a thread pool. Finished samples go to `StoreWriter`, a thread that
commits whatever is ready in one transaction each time, so a sample is durable milliseconds
after it is graded and a kill -9 loses only what was in flight.
"""
