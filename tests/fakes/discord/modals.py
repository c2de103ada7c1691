"""Modals as Discord publishes them (tests/contracts/discord-limits.yaml, `modal`): what a bot
may answer with (callback type 9), checked as Discord checks it, and what a person's submit of
a file upload carries (type 19: the attachment ids as `values`, the attachments themselves in
`data.resolved.attachments`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .messages import LIMITS, invalid_form_body
from .models import JSON, AttachmentSpec

MODAL = LIMITS["modal"]
COMPONENT_ACTION_ROW = 1
COMPONENT_TEXT_INPUT = 4
COMPONENT_TEXT_DISPLAY = 10
COMPONENT_LABEL = MODAL["label"]
COMPONENT_FILE_UPLOAD = MODAL["file_upload"]["type"]


def validate_modal(data: JSON) -> None:
    """A modal the bot sends: 1 to 5 top-level components (labels, text displays, or the older
    action rows of text inputs); a text input at most 4000
    characters; a file upload only inside a label, its min/max values in the published
    ranges. Anything else is Discord's 50035 naming the field."""
    components = data.get("components") or []
    low, high = MODAL["components_min"], MODAL["components_max"]
    if not low <= len(components) <= high:
        raise invalid_form_body("data.components", "BASE_TYPE_BAD_LENGTH",
                                f"Must be between {low} and {high} in length.")  # fmt: skip
    for i, component in enumerate(components):
        where = f"data.components.{i}"
        if component.get("type") == COMPONENT_LABEL:
            _check_input(component.get("component") or {}, f"{where}.component", in_label=True)
        elif component.get("type") == COMPONENT_ACTION_ROW:
            for j, child in enumerate(component.get("components") or []):
                _check_input(child, f"{where}.components.{j}", in_label=False)
        elif component.get("type") != COMPONENT_TEXT_DISPLAY:
            raise invalid_form_body(
                f"{where}.type", "UNION_TYPE_CHOICES", 'Value of field "type" must be one of '
                "(1, 10, 18).",
            )  # fmt: skip


def _check_input(component: JSON, where: str, *, in_label: bool) -> None:
    kind = component.get("type")
    if kind == COMPONENT_TEXT_INPUT:
        if int(component.get("max_length") or 0) > MODAL["text_input_max"]:
            most = MODAL["text_input_max"]
            raise invalid_form_body(f"{where}.max_length", "NUMBER_TYPE_MAX",
                                    f"int value should be <= {most}.")  # fmt: skip
        return
    if kind != COMPONENT_FILE_UPLOAD:
        return
    spec = MODAL["file_upload"]
    if not in_label:
        raise invalid_form_body(f"{where}.type", "COMPONENT_TYPE_INVALID",
                                "A file upload must be inside a label.")  # fmt: skip
    longest = spec["custom_id_max"]
    if not 1 <= len(str(component.get("custom_id") or "")) <= longest:
        raise invalid_form_body(f"{where}.custom_id", "BASE_TYPE_BAD_LENGTH",
                                f"Must be between 1 and {longest} in length.")  # fmt: skip
    for key in ("min_values", "max_values"):
        value = component.get(key)
        low, high = spec[key]
        if value is not None and not low <= int(value) <= high:
            raise invalid_form_body(f"{where}.{key}", "NUMBER_TYPE_MAX",
                                    f"int value should be between {low} and {high}.")  # fmt: skip
    if int(component.get("min_values", 1) or 0) > int(component.get("max_values", 1) or 1):
        raise invalid_form_body(f"{where}.min_values", "NUMBER_TYPE_MAX",
                                "min_values must not exceed max_values.")  # fmt: skip


def uploaded_files(component: JSON, given: Any) -> list[AttachmentSpec]:
    """The files a person puts in the bot's file upload `component`: as many as it allows
    (the client does not let a form be sent otherwise); a test that asks for more or fewer
    is told so."""
    if given is None:
        given = []
    if not isinstance(given, Sequence) or not all(isinstance(f, AttachmentSpec) for f in given):
        raise TypeError(f"file upload {component['custom_id']!r} takes AttachmentSpecs, "
                        f"got {given!r}")  # fmt: skip
    files = list(given)
    low = int(component.get("min_values", 1) if component.get("min_values") is not None else 1)
    high = int(component.get("max_values") or 1)
    required = component.get("required", MODAL["file_upload"]["required_default"])
    if required and not files:
        raise ValueError(f"file upload {component['custom_id']!r} is required")
    if (files and len(files) < low) or len(files) > high:
        raise ValueError(f"file upload {component['custom_id']!r} takes {low} to {high} files, "
                         f"not {len(files)}")  # fmt: skip
    return files
