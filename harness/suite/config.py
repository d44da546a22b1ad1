"""The keys a suite.yaml may have, their types, and its validation with the plan's one-line errors.

To add a suite.yaml key: add one typed line to `SuiteFile` below (`X | None` when it is optional and
may be written as null); unknown-key rejection, type checks and the error message follow.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from annotated_types import Ge
from typing_extensions import Annotated, NotRequired, Required, TypedDict

from harness.errors import HarnessError
from harness.plan import _CHECKED, GenerationOptions, _describe_error  # the plan's rules and error style

NonNegativeInt = Annotated[int, Ge(0)]


class GraderConfig(TypedDict):
    """`grader: {name: exact, options: {...}}` (or just `grader: exact`)."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic reads it; mypy expects only fields
    name: str
    options: NotRequired[dict[str, Any] | None]


class FewShotConfig(TypedDict, total=False):
    """`fewshot:`: how many worked examples, from which file, shown how, chosen how."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic reads it; mypy expects only fields
    k: NonNegativeInt
    data: str | None
    answer_template: str | None
    match_field: str | None  # choose shots whose field equals the item's (e.g. C-Eval subject)


class SuiteFile(TypedDict, total=False):
    """Every key of a suite.yaml (see suites/README.md); `template` and `grader` are required."""

    __pydantic_config__ = _CHECKED  # type: ignore[misc]  # pydantic reads it; mypy expects only fields
    name: str
    description: str | None
    family: str | None
    version: int | str | None
    data: str | None
    loader: str | None
    options: dict[str, Any] | None
    id_field: str | None
    id_format: str | None
    group_field: str | None
    reference_field: str | None
    reference_response: str | None
    template: str  # required unless request_field names whole logged requests (checked in load_suite)
    system: str | None
    fewshot: FewShotConfig | None
    grader: Required[GraderConfig]  # `grader: NAME` is read as {name: NAME}
    generation: GenerationOptions | None
    sandbox: dict[str, Any] | None
    images_field: str | None  # the item field naming its images (harness/suite/images.py)
    images: dict[str, Any] | None  # image settings: max_edge, detail, max_bytes, max_pixels, remote
    tools: dict[str, Any] | None  # which item fields carry the offered tools and the conversation (suite/tool_items.py)
    request_field: str | None  # items hold a whole logged chat request, replayed as is (harness/traffic/)
    agent: dict[str, Any] | None  # the tool environment and loop limits of an agent suite (engine/agent.py)


def check_suite_file(raw: Any, source: str) -> dict[str, Any]:
    """Validate a suite.yaml already read from YAML; an error is one line naming `source` and the field."""
    if not isinstance(raw, dict):
        raise HarnessError(f"{source}: a suite.yaml is a YAML mapping with at least 'template' and 'grader'")
    grader = raw.get("grader")
    if isinstance(grader, str):
        raw = {**raw, "grader": {"name": grader}}
    elif "grader" in raw and not isinstance(grader, dict):
        raise HarnessError(
            f"{source}: grader: must be a grader's name or {{name: NAME, options: {{...}}}}, got {grader!r}"
        )
    from pydantic import ValidationError

    try:
        return _validator().validate_python(raw)
    except ValidationError as exc:
        raise HarnessError(_describe_error(exc, source, {}, SuiteFile)) from None


@cache
def _validator():
    # Built on first use, like the plan's: `harness --help` does not pay for pydantic.
    from pydantic import TypeAdapter

    return TypeAdapter(SuiteFile)
