"""Render an item into chat messages with the suite's Jinja2 templates (system, few-shot, user).

Templates run in Jinja2's immutable sandbox with StrictUndefined: a suite folder may come from
anyone, and a misspelt field must fail loudly rather than render as an empty string.
"""

from __future__ import annotations

from typing import Any, Mapping

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness.errors import HarnessError
from harness.records import Item, Message, Prompt
from harness.suite import Suite


def template_environment(folder) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # prompts are plain text, not HTML
    )


class PromptBuilder:
    """Builds the `Prompt` for each item of one suite; templates and shots are prepared once."""

    def __init__(self, suite: Suite):
        self.suite = suite
        env = template_environment(suite.dir)
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
            return template.render(**fields).strip()
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
        messages: list[Message] = []
        if self._system_text:
            messages.append(Message("system", self._system_text))
        for shot in self.shots(item):
            messages.append(Message("user", self._render(self._user, shot, "prompt")))
            messages.append(Message("assistant", self._render(self._answer, shot, "few-shot answer")))
        messages.append(Message("user", self._render(self._user, item.fields, "prompt")))
        return Prompt(tuple(messages))

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
            return self._reference.render(**item.fields)
        except jinja2.TemplateError as exc:
            raise HarnessError(f"suite '{self.suite.name}': reference_response failed on {item.id}: {exc}") from None
