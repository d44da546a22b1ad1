"""Render an item into chat messages with the suite's Jinja2 templates (system, few-shot, user).

Templates run in Jinja2's immutable sandbox with StrictUndefined: a suite folder may come from
anyone, and a misspelt field must fail loudly rather than render as an empty string. The sandbox
stops a template from touching Python; it does not stop one from spinning or filling memory, so
here templates are read only from inside the suite folder (symlinks included), and a rendering is
bounded in time and in the size of what it builds.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import jinja2
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from harness.errors import HarnessError
from harness.records import ImagePart, Item, Message, Prompt, TextPart
from harness.suite import Suite
from harness.suite.images import ImageProblem, image_part, read_raw
from harness.untrusted import inside, read_text

MAX_RENDER_CHARS = 8 * 1024 * 1024  # one rendered prompt, and any string or list a template builds
MAX_RENDER_SECONDS = 5.0  # one rendering; a prompt renders in milliseconds
_CHECK_EVERY = 4096  # loop steps between two looks at the clock

# What `{{ image(n) }}` renders to in a template: split out again into an image part at that place.
_IMAGE_MARK = "\x00image:{}\x00"
_IMAGE_MARK_RE = re.compile("\x00image:(\\d+)\x00")


class RenderLimit(jinja2.TemplateError):
    """A template that ran too long or built too much."""


class _SuiteLoader(jinja2.BaseLoader):
    """Templates (and their includes) from inside the suite folder only, as bounded regular files."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def get_source(self, environment, template):
        path = self.folder.joinpath(*split_template_path(template))
        if not path.exists():
            raise jinja2.TemplateNotFound(template)
        inside(path, self.folder, "template")
        text = read_text(path, "template")
        mtime = os.path.getmtime(path)
        return text, str(path), lambda: os.path.getmtime(path) == mtime


def _too_big(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_RENDER_CHARS


class _BoundedNamespace(Namespace):
    """`namespace()` whose attributes cannot grow past the size limit (a loop doubling a string)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if _too_big(value):
            raise RenderLimit(f"a value over {MAX_RENDER_CHARS} characters")
        super().__setitem__(name, value)


class _Bounded:
    """An iterable handed out by a template call (range): looks at the clock as it is stepped through."""

    def __init__(self, inner, env: "_BoundedEnvironment"):
        self.inner, self.env = inner, env

    def __iter__(self):
        for i, value in enumerate(self.inner):
            if i % _CHECK_EVERY == 0:
                self.env.tick()
            yield value

    def __len__(self) -> int:
        return len(self.inner)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with limits: every call, arithmetic on sequences and loop over a range are checked."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.globals["namespace"] = _BoundedNamespace
        self._deadline = threading.local()

    def tick(self) -> None:
        deadline = getattr(self._deadline, "at", None)
        if deadline is not None and time.monotonic() > deadline:
            raise RenderLimit(f"rendering took over {MAX_RENDER_SECONDS:g} s")

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        self.tick()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, bytes, list, tuple))
                    and isinstance(n, int)
                    and len(seq) * n > MAX_RENDER_CHARS
                ):
                    raise RenderLimit(f"a value over {MAX_RENDER_CHARS} characters")
        elif operator == "**":
            if (
                isinstance(right, (int, float))
                and abs(right) > 1000
                and isinstance(left, (int, float))
                and abs(left) > 1
            ):
                raise RenderLimit("an exponent over 1000")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            if len(left) + len(right) > MAX_RENDER_CHARS:
                raise RenderLimit(f"a value over {MAX_RENDER_CHARS} characters")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        __self.tick()
        if any(_too_big(a) for a in (*args, *kwargs.values())):
            raise RenderLimit(f"a value over {MAX_RENDER_CHARS} characters")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, range):
            return _Bounded(result, __self)
        if _too_big(result):
            raise RenderLimit(f"a value over {MAX_RENDER_CHARS} characters")
        return result

    @contextmanager
    def limits(self) -> Iterator[None]:
        """The time limit over everything rendered inside (one prompt: its system, shots and question).

        On the main thread a timer signal also interrupts loops that make no call (over a long
        string); it is armed once per prompt, not per template (arming costs ~12 us)."""
        if getattr(self._deadline, "at", None) is not None:  # already inside a prompt's limits
            yield
            return
        self._deadline.at = time.monotonic() + MAX_RENDER_SECONDS
        alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        previous = None
        if alarm:

            def expired(signum, frame):
                raise RenderLimit(f"rendering took over {MAX_RENDER_SECONDS:g} s")

            previous = signal.signal(signal.SIGALRM, expired)
            signal.setitimer(signal.ITIMER_REAL, MAX_RENDER_SECONDS)
        try:
            yield
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            self._deadline.at = None

    def render(self, template: jinja2.Template, fields: Mapping[str, Any]) -> str:
        """Render within the time and size limits (the output is collected piece by piece, capped)."""
        if getattr(self._deadline, "at", None) is None:
            with self.limits():
                return self._collect(template, fields)
        return self._collect(template, fields)

    @staticmethod
    def _collect(template: jinja2.Template, fields: Mapping[str, Any]) -> str:
        out: list[str] = []
        size = 0
        for piece in template.root_render_func(template.new_context(dict(fields))):
            size += len(piece)
            if size > MAX_RENDER_CHARS:
                raise RenderLimit(f"output over {MAX_RENDER_CHARS} characters")
            out.append(piece)
        return "".join(out)


def template_environment(folder) -> _BoundedEnvironment:
    return _BoundedEnvironment(
        loader=_SuiteLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # prompts are plain text, not HTML
    )


class PromptBuilder:
    """Builds the `Prompt` for each item of one suite; templates and shots are prepared once."""

    def __init__(self, suite: Suite):
        self.suite = suite
        env = self._env = template_environment(suite.dir)
        if suite.request_field:  # replayed traffic: the item is the request, there is nothing to render
            self._system = self._answer = self._reference = None
            self._pool, self._system_text = [], None
            return
        self._user = self._load(env, suite.template)
        self._system = self._load(env, suite.system) if suite.system else None
        self._answer = self._load(env, suite.fewshot.answer_template) if suite.fewshot.answer_template else None
        self._pool = suite.fewshot_pool() if suite.fewshot.k > 0 else []
        if suite.fewshot.k > 0 and (not self._pool or self._answer is None):
            raise HarnessError(
                f"suite '{suite.name}': fewshot k={suite.fewshot.k} needs fewshot data and an answer_template "
                f"in {suite.dir / 'suite.yaml'} (or set fewshot: 0 in the plan)"
            )
        self._reference = env.from_string(suite.reference_response) if suite.reference_response else None
        self._system_text = self._render(self._system, {}, "system") if self._system else None

    def _load(self, env, name: str) -> jinja2.Template:
        try:
            return env.get_template(name)
        except jinja2.TemplateNotFound:
            raise HarnessError(f"suite '{self.suite.name}': template {name} not found in {self.suite.dir}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise HarnessError(f"{self.suite.dir / name}:{exc.lineno}: template syntax error: {exc.message}") from None

    def _render(self, template: jinja2.Template, fields: Mapping[str, Any], what: str) -> str:
        try:
            return self._env.render(template, fields).strip()
        except RenderLimit as exc:
            raise HarnessError(
                f"suite '{self.suite.name}': {what} template {template.name or ''} stopped: {exc} "
                f"(a prompt template must render quickly to a prompt of at most {MAX_RENDER_CHARS} characters)"
            ) from None
        except (MemoryError, RecursionError, OverflowError) as exc:
            raise HarnessError(
                f"suite '{self.suite.name}': {what} template {template.name or ''} failed: "
                f"{type(exc).__name__} (it builds too much or recurses without end)"
            ) from None
        except jinja2.UndefinedError as exc:
            raise HarnessError(
                f"suite '{self.suite.name}': {what} template {template.name or ''} uses an undefined field: {exc.message}"
            ) from None
        except jinja2.TemplateError as exc:
            raise HarnessError(f"suite '{self.suite.name}': {what} template failed: {exc}") from None

    def shots(self, item: Item) -> list[Mapping[str, Any]]:
        """The k few-shot examples for an item: the first k of the pool, same-group first if asked."""
        k = self.suite.fewshot.k
        if k == 0:
            return []
        pool = [row for row in self._pool if row is not item.fields]
        field = self.suite.fewshot.match_field
        if field:
            same = [row for row in pool if row.get(field) == item.fields.get(field)]
            pool = same + [row for row in pool if row.get(field) != item.fields.get(field)]
        return pool[:k]

    def build(self, item: Item) -> Prompt:
        if self.suite.request_field:
            return self._replayed(item)
        try:
            with self._env.limits():
                return self._build(item)
        except RenderLimit as exc:  # the clock ran out between two templates
            raise HarnessError(f"suite '{self.suite.name}': building the prompt of {item.id} stopped: {exc}") from None

    def _build(self, item: Item) -> Prompt:
        messages: list[Message] = []
        if self._system_text:
            messages.append(Message("system", self._system_text))
        for shot in self.shots(item):
            messages.append(Message("user", self._render(self._user, shot, "prompt")))
            messages.append(Message("assistant", self._render(self._answer, shot, "few-shot answer")))
        if self.suite.tools or self.suite.agent:
            from harness.suite.tool_items import tool_prompt

            return tool_prompt(self.suite, item, messages, lambda: self._render(self._user, item.fields, "prompt"))
        if self.suite.images_field:
            messages.append(Message("user", self._with_images(item)))
        else:
            messages.append(Message("user", self._render(self._user, item.fields, "prompt")))
        return Prompt(tuple(messages))

    def images(self, item: Item) -> list[ImagePart]:
        """The item's images read, checked and encoded, once per item (retries reuse the Prompt)."""
        suite, root = self.suite, self.suite.image_root()
        try:
            return [
                image_part(read_raw(ref, root, suite.image_settings), suite.image_settings)
                for ref in suite.item_images(item)
            ]
        except ImageProblem as exc:
            raise HarnessError(f"suite '{suite.name}', item {item.id}: {exc}") from None

    def _with_images(self, item: Item) -> tuple[TextPart | ImagePart, ...]:
        """The user turn as parts: the template's text, each image where `{{ image(n) }}` put it (1-based),
        and the images it did not place after the text, in the item's order."""
        images = self.images(item)

        def image(n: int) -> str:
            if not isinstance(n, int) or not 1 <= n <= len(images):
                raise HarnessError(
                    f"suite '{self.suite.name}', item {item.id}: the template asks for image({n!r}) "
                    f"but the item has {len(images)} image(s)"
                )
            return _IMAGE_MARK.format(n)

        text = self._render(self._user, {**item.fields, "image": image}, "prompt")
        parts: list[TextPart | ImagePart] = []
        placed: set[int] = set()
        for index, piece in enumerate(_IMAGE_MARK_RE.split(text)):
            if index % 2:
                placed.add(int(piece))
                parts.append(images[int(piece) - 1])
            elif piece.strip():
                parts.append(TextPart(piece.strip()))
        parts.extend(img for n, img in enumerate(images, 1) if n not in placed)
        return tuple(parts)

    def _replayed(self, item: Item) -> Prompt:
        from harness.traffic.request import RequestError, prompt_from_openai

        try:
            return prompt_from_openai(item.fields.get(self.suite.request_field) or {})
        except RequestError as exc:
            raise HarnessError(
                f"suite '{self.suite.name}': item {item.id}: its {self.suite.request_field} cannot be sent ({exc}); "
                f"fix or drop the item in {self.suite.dir}"
            ) from None

    def reference_response(self, item: Item) -> str:
        """A response that must grade correct (used by `harness suites validate`)."""
        if self._reference is None:
            raise HarnessError(f"suite '{self.suite.name}' has no reference_response in its suite.yaml")
        try:
            return self._env.render(self._reference, item.fields)
        except (jinja2.TemplateError, MemoryError, RecursionError) as exc:
            raise HarnessError(f"suite '{self.suite.name}': reference_response failed on {item.id}: {exc}") from None
