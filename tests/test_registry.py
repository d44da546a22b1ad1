"""A new provider, grader and executor are each one module plus one registration.

The provider and the grader come in as a plugin package would: modules on sys.path and an installed
distribution's entry points (a real `.dist-info` folder that importlib.metadata reads), in the
`harness.providers` and `harness.graders` groups. The executor is registered by one call. A run of
a plan then uses all three, and the plan's checks come from the provider's registration.
"""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from harness.engine import executors
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.graders import _plugins, needs_of
from harness.plan import load_plan
from harness.providers import registry
from harness.store import Store

# The three examples, as a newcomer would write them (each file is the whole module).
TOY_PROVIDER = '''
"""A provider that answers with the prompt's last line reversed, and notes how many requests overlap."""
import asyncio
from harness.providers import Capabilities, ProviderInfo, register_provider
from harness.records import Completion

class Reverser:
    in_flight = most = 0
    def __init__(self, spec):
        self.spec = spec
    async def complete(self, request):
        Reverser.in_flight += 1
        Reverser.most = max(Reverser.most, Reverser.in_flight)
        await asyncio.sleep(0.002)
        Reverser.in_flight -= 1
        text = request.prompt.messages[-1].text.strip().splitlines()[-1][::-1]
        return Completion(text=text, finish_reason="stop", prompt_tokens=3, completion_tokens=1, usage_estimated=True)
    async def close(self):
        pass

register_provider(ProviderInfo("reverser", Reverser, Capabilities(timed=False), fields=frozenset({"path"})))
'''

TOY_GRADER = '''
"""A grader passing an answer that is the item's reference spelled backwards."""
from harness.graders import Needs
from harness.records import Grade

def backwards(response, item):
    return Grade.of(response.strip() == item.reference[::-1], "reversed" if response.strip() else "empty")

backwards.harness_needs = Needs(inline=True)  # text only: graded on the event loop
'''

TOY_EXECUTOR = '''
"""An executor running the local engine with every model one request at a time."""
import asyncio
from harness.engine.executors import register_executor
from harness.engine.local import LocalExecutor
from harness.engine.pacing import AdaptiveLimiter, RateLimiter

class Serial:
    def __init__(self, plan, store, options):
        self.shard = options.shard
    def run(self, job):
        one = lambda spec: (AdaptiveLimiter(1), RateLimiter(None, None))
        return asyncio.run(LocalExecutor(job.plan, job.suites, job.store, job.run_id, job.options, limits=one).run())
    def close(self):
        pass

register_executor("serial", Serial)
'''

ENTRY_POINTS = """
[harness.providers]
reverser = toy_provider

[harness.graders]
backwards = toy_grader:backwards

[harness.executors]
one-at-a-time = toy_executor:Serial
"""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """The three toy modules on sys.path, the provider and grader installed as a plugin distribution."""
    root = tmp_path / "site"
    root.mkdir()
    for name, text in (("toy_provider", TOY_PROVIDER), ("toy_grader", TOY_GRADER), ("toy_executor", TOY_EXECUTOR)):
        (root / f"{name}.py").write_text(textwrap.dedent(text).lstrip())
    dist = root / "toy_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    # Leave the registries as they were for the tests that run after these in this process.
    registry._registered.pop("reverser", None)
    executors._executors.pop("serial", None)
    _plugins.pop("backwards", None)
    for name in ("toy_provider", "toy_grader", "toy_executor"):
        sys.modules.pop(name, None)


def _suite_and_plan(tmp_path, monkeypatch, model: dict) -> str:
    folder = tmp_path / "suites" / "mirror"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        "name: mirror\ndescription: synthetic\nfamily: reasoning\nversion: 1\ndata: items.jsonl\nid_field: id\n"
        'reference_field: answer\nreference_response: "{{ answer[::-1] }}"\ntemplate: prompt.j2\n'
        "grader: {name: backwards}\ngeneration: {max_tokens: 8, temperature: 0.0}\n"
    )
    (folder / "prompt.j2").write_text("Spell the last line backwards.\n{{ shown }}\n")
    rows = [{"id": f"q{i}", "answer": f"word{i}", "shown": f"word{i}"} for i in range(12)]
    rows[3]["shown"] = "something else"  # the provider reverses what it is shown: this one must fail
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "toys", "models": {"rev": model}, "suites": ["mirror"]}))
    return str(path)


def test_toy_provider_grader_and_executor_run_a_plan(plugins, tmp_path, monkeypatch, db_url):
    plan = load_plan(_suite_and_plan(tmp_path, monkeypatch, {"provider": "reverser", "concurrency": 8}))
    importlib.import_module("toy_executor")  # its one registration
    assert registry.provider_info("reverser").capabilities.timed is False
    assert needs_of("backwards").inline and not needs_of("backwards").sandbox
    store = Store(db_url)
    result = execute_plan(plan, store, executor="serial")
    assert result.status == "finished"
    samples = {s.item_id: s for s in store.samples(result.run_id)}
    assert len(samples) == 12
    assert {i for i, s in samples.items() if not s.passed} == {"q3"}
    assert samples["q0"].completion == "0drow"
    # The serial executor ran it: one request at a time although the model allows 8.
    toy = sys.modules["toy_provider"].Reverser
    assert toy.most == 1 and toy.in_flight == 0
    # The same plan on the local executor overlaps requests: the executor, not the plan, made it serial.
    toy.most = 0
    again = execute_plan(plan, store, new=True)
    assert again.status == "finished" and toy.most > 1
    # The same executor class installed as a plugin under another name, through its entry point.
    toy.most = 0
    plugin = execute_plan(plan, store, new=True, executor="one-at-a-time")
    assert plugin.status == "finished" and toy.most == 1


def test_plan_fields_and_names_come_from_the_registration(plugins, tmp_path, monkeypatch):
    path = _suite_and_plan(tmp_path, monkeypatch, {"provider": "reverser", "base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(HarnessError, match=r"models\.rev: unknown key\(s\) base_url for provider reverser"):
        load_plan(path)
    path = _suite_and_plan(tmp_path / "b", monkeypatch, {"provider": "mirror-image"})
    with pytest.raises(
        HarnessError, match=r"models\.rev\.provider: must be 'openai', .*'reverser', got 'mirror-image'"
    ):
        load_plan(path)
    with pytest.raises(HarnessError, match=r"batch: needs provider openai"):
        load_plan(_suite_and_plan(tmp_path / "c", monkeypatch, {"provider": "reverser", "batch": True}))


def test_unknown_executor_is_one_line(plugins, tmp_path, monkeypatch, db_url):
    path = _suite_and_plan(tmp_path, monkeypatch, {"provider": "reverser"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), *sys.path])}
    command = [sys.executable, "-c", "from harness.cli import main; main()", "run", path, "--db", db_url]
    result = subprocess.run([*command, "--executor", "warp", "--no-report"], env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["error: unknown executor 'warp' (known: local, ray, one-at-a-time)"]


def test_built_in_capabilities_answer_for_stored_names():
    assert registry.capabilities_of("openai").endpoint and registry.capabilities_of("openai").batch
    assert registry.capabilities_of("samples").timed is False
    assert not registry.capabilities_of("llamacpp").served_model
    # A stored run's provider that is no longer installed reads as the defaults, not an error.
    assert registry.capabilities_of("gone-plugin") == registry.Capabilities()


def test_require_capability_refuses_in_one_line():
    from harness.plan import parse_plan

    plan = parse_plan(
        {
            "models": {"local": {"provider": "llamacpp"}, "api": {"provider": "openai", "base_url": "http://h/v1"}},
            "suites": ["s"],
        }
    )
    local, api = plan.models
    assert api.capabilities.images and not local.capabilities.images
    registry.require_capability(api, "images", "suite 'charts'")
    with pytest.raises(HarnessError) as err:
        registry.require_capability(local, "images", "suite 'charts' (its prompts carry images)")
    assert str(err.value) == (
        "model 'local': provider llamacpp has no images capability, needed for suite 'charts' "
        "(its prompts carry images); use a provider with it (openai)"
    )


def test_a_provider_s_own_settings_are_checked_by_its_registration(tmp_path, monkeypatch):
    from dataclasses import dataclass

    from annotated_types import Gt
    from typing_extensions import Annotated

    @dataclass(frozen=True)
    class EchoSettings:
        __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}
        prefix: str = ">"
        volume: Annotated[float, Gt(0)] = 1.0

    registry.register_provider(registry.ProviderInfo("echo-settings", "builtins:print", settings=EchoSettings))
    try:
        path = _suite_and_plan(tmp_path, monkeypatch, {"provider": "echo-settings", "settings": {"volume": 2}})
        (model,) = load_plan(path).models
        assert model.settings == {"prefix": ">", "volume": 2.0}
        bad = _suite_and_plan(tmp_path / "b", monkeypatch, {"provider": "echo-settings", "settings": {"volume": -1}})
        with pytest.raises(HarnessError) as err:
            load_plan(bad)
        assert str(err.value) == f"{bad}: models.rev.settings.volume: must be greater than 0, got -1"
        typo = _suite_and_plan(tmp_path / "c", monkeypatch, {"provider": "echo-settings", "settings": {"loud": 1}})
        with pytest.raises(
            HarnessError, match=r"models\.rev\.settings: unknown key\(s\) loud \(known: prefix, volume\)"
        ):
            load_plan(typo)
        # A provider without its own settings refuses the key, naming itself.
        other = _suite_and_plan(tmp_path / "d", monkeypatch, {"provider": "llamacpp", "settings": {"volume": 2}})
        with pytest.raises(HarnessError, match=r"unknown key\(s\) settings for provider llamacpp"):
            load_plan(other)
    finally:
        registry._registered.pop("echo-settings", None)
