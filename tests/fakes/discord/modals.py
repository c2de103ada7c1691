"""Modals: the one a bot answers with (callback type 9), checked as Discord checks it, and the
MODAL_SUBMIT a person sends back, in the published wire shapes.

Sources (tests/contracts/discord-limits.yaml, `modal`): discord-api-docs
developers/interactions/receiving-and-responding.mdx (Modal: title, 1-5 components) and
developers/components/reference.mdx (Label 18, Text Input 4, File Upload 19, Radio Group 21,
Checkbox Group 22, Checkbox 23, each with its interaction response structure). An optional
field sent as null (discord.py sends `"max_values": null` when none is set) counts as left out.

A submit mirrors the modal the bot sent: every input is answered, filled with what the test
gives (by custom_id) or, like a client, with what the modal pre-filled: a text input's `value`,
a radio group's or checkbox group's `default` options, a checkbox's `default`, no files. What a
client could not send is refused with ValueError (a radio value that is no option, too many
files, a required input left empty); a text longer than the input's `max_length` is cut to it,
as a client's text box keeps only the first `max_length` characters of a longer paste.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tests.fakes.contracts import discord_limits

from .messages import invalid_form_body
from .models import JSON, AttachmentSpec, attachment_payload

LIMITS = discord_limits()["modal"]

ACTION_ROW = 1
TEXT_INPUT = 4
TEXT_DISPLAY = 10
LABEL = LIMITS["label"]
FILE_UPLOAD = LIMITS["file_upload"]["type"]
RADIO_GROUP = 21
CHECKBOX_GROUP = 22
CHECKBOX = 23
SELECTS = (3, 5, 6, 7, 8)

__all__ = ["ModalAnswer", "rows_submit", "validate_modal"]

CdnUrls = Callable[[AttachmentSpec], tuple[str, str]]


# ------------------------------------------------------------ the modal a bot sends


def validate_modal(data: JSON) -> None:
    """Refuse (50035, naming the field) a modal Discord would refuse."""
    _length(data.get("title"), 1, LIMITS["title"], "data.title")
    _length(data.get("custom_id"), 1, LIMITS["custom_id"], "data.custom_id")
    components = data.get("components")
    if not isinstance(components, list) or not (
        LIMITS["components_min"] <= len(components) <= LIMITS["components_max"]
    ):
        raise invalid_form_body(
            "data.components",
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between {LIMITS['components_min']} and {LIMITS['components_max']} in length.",
        )
    seen: set[str] = set()
    for index, component in enumerate(components):
        where = f"data.components.{index}"
        kind = component.get("type")
        if kind not in LIMITS["top_level_types"]:
            raise invalid_form_body(
                f"{where}.type",
                "COMPONENT_TYPE_INVALID",
                f"Component type {kind} is not allowed here",
            )
        if kind == LABEL:
            _length(component.get("label"), 1, LIMITS["label_text"], f"{where}.label")
            if component.get("description") is not None:
                _length(
                    component["description"], 0, LIMITS["label_description"], f"{where}.description"
                )
            child = component.get("component")
            if not isinstance(child, dict) or child.get("type") not in LIMITS["label_child_types"]:
                raise invalid_form_body(
                    f"{where}.component",
                    "COMPONENT_TYPE_INVALID",
                    "This component can't be in a label",
                )
            _validate_input(child, f"{where}.component", seen)
        elif kind == ACTION_ROW:
            for number, child in enumerate(component.get("components") or []):
                if child.get("type") != TEXT_INPUT:
                    raise invalid_form_body(
                        f"{where}.components.{number}.type",
                        "COMPONENT_TYPE_INVALID",
                        "Only text inputs in a modal's action row",
                    )
                _validate_input(child, f"{where}.components.{number}", seen)


def _validate_input(component: JSON, where: str, seen: set[str]) -> None:
    custom_id = component.get("custom_id")
    _length(custom_id, 1, LIMITS["custom_id"], f"{where}.custom_id")
    if custom_id in seen:
        raise invalid_form_body(
            f"{where}.custom_id",
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        )
    seen.add(str(custom_id))
    kind = component["type"]
    required = component.get("required", True)  # every input's default
    if kind == TEXT_INPUT:
        top = LIMITS["text_input_max"]
        low = int(component.get("min_length") or 0)
        high = int(component.get("max_length") or top)
        if not (0 <= low <= top and 1 <= high <= top and low <= high):
            raise invalid_form_body(
                f"{where}.max_length",
                "NUMBER_TYPE_MAX",
                f"int value should be less than or equal to {top}.",
            )
        if component.get("value") is not None:
            _length(component["value"], 0, high, f"{where}.value")
        if component.get("placeholder") is not None:
            _length(component["placeholder"], 0, LIMITS["placeholder"], f"{where}.placeholder")
    elif kind == FILE_UPLOAD:
        spec = LIMITS["file_upload"]
        for key in ("min_values", "max_values"):
            value, (low, high) = component.get(key), spec[key]
            if value is not None and not low <= int(value) <= high:
                raise invalid_form_body(
                    f"{where}.{key}",
                    "NUMBER_TYPE_MAX",
                    f"int value should be between {low} and {high}.",
                )
        _counts(component, where, required, top=spec["max_values"][1], default_max=1)
    elif kind == RADIO_GROUP:
        options = _options(
            component, where, LIMITS["radio_options_min"], LIMITS["radio_options_max"]
        )
        if sum(bool(o.get("default")) for o in options) > 1:
            raise invalid_form_body(
                f"{where}.options",
                "RADIO_GROUP_MULTIPLE_DEFAULTS",
                "Only one option can be the default",
            )
    elif kind == CHECKBOX_GROUP:
        options = _options(
            component, where, LIMITS["checkbox_options_min"], LIMITS["checkbox_options_max"]
        )
        _counts(component, where, required, top=len(options), default_max=len(options))


def _options(component: JSON, where: str, low: int, high: int) -> list[JSON]:
    options = component.get("options")
    if not isinstance(options, list) or not low <= len(options) <= high:
        raise invalid_form_body(
            f"{where}.options",
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between {low} and {high} in length.",
        )
    values = set()
    for number, option in enumerate(options):
        for key in ("value", "label"):
            _length(option.get(key), 1, LIMITS["option_text"], f"{where}.options.{number}.{key}")
        if option.get("description") is not None:
            _length(
                option["description"],
                0,
                LIMITS["option_text"],
                f"{where}.options.{number}.description",
            )
        values.add(option["value"])
    if len(values) != len(options):
        raise invalid_form_body(
            f"{where}.options",
            "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
            "Option values must be unique",
        )
    return options


def _counts(component: JSON, where: str, required: bool, *, top: int, default_max: int) -> None:
    low = component.get("min_values")
    high = default_max if component.get("max_values") is None else component["max_values"]
    if low is not None and not 0 <= int(low) <= top:
        raise invalid_form_body(
            f"{where}.min_values", "NUMBER_TYPE_MAX", f"int value should be between 0 and {top}."
        )
    if not 1 <= int(high) <= top or (low is not None and int(low) > int(high)):
        raise invalid_form_body(
            f"{where}.max_values", "NUMBER_TYPE_MAX", f"int value should be between 1 and {top}."
        )
    if required and low is not None and int(low) < 1:
        raise invalid_form_body(
            f"{where}.min_values",
            "BASE_TYPE_MIN",
            "min_values must be at least 1 for a required component",
        )


def _length(value: Any, low: int, high: int, where: str) -> None:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise invalid_form_body(
            where, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length."
        )


# ------------------------------------------------------------ what a person sends back


class ModalAnswer:
    """The `data` of a MODAL_SUBMIT for `modal`, filled with `values` by custom_id: text for a
    text input, a list of AttachmentSpec for a file upload, an option value (or None) for a
    radio group, a list of values for a checkbox group, a bool for a checkbox."""

    def __init__(self, modal: JSON, values: Mapping[str, Any], cdn_urls: CdnUrls) -> None:
        self.modal = modal
        self.values = values
        self._cdn_urls = cdn_urls
        self.attachments: list[AttachmentSpec] = []
        self._resolved: dict[str, JSON] = {}
        self._ids = iter(range(1, 1000))

    def data(self) -> JSON:
        unknown = set(self.values) - {c["custom_id"] for c in _inputs(self.modal)}
        if unknown:
            raise ValueError(
                f"modal {self.modal.get('custom_id')!r} has no inputs {sorted(unknown)}"
            )
        components = [self._top(c) for c in self.modal.get("components", [])]
        data: JSON = {"custom_id": self.modal["custom_id"], "components": components}
        if self._resolved:
            data["resolved"] = {"attachments": self._resolved}
        return data

    def _top(self, component: JSON) -> JSON:
        answered: JSON = {"type": component["type"], "id": self._id(component)}
        if component["type"] == LABEL:
            answered["component"] = self._input(component["component"])
        elif component["type"] == ACTION_ROW:
            answered["components"] = [self._input(c) for c in component.get("components", [])]
        else:  # a text display comes back as it was
            answered["content"] = component.get("content", "")
        return answered

    def _input(self, component: JSON) -> JSON:
        kind = component["type"]
        custom_id = component["custom_id"]
        answered: JSON = {"type": kind, "id": self._id(component), "custom_id": custom_id}
        given = self.values.get(custom_id)
        required = component.get("required", True)
        if kind == TEXT_INPUT:
            text = str(component.get("value") or "") if given is None else str(given)
            high = int(component.get("max_length") or LIMITS["text_input_max"])
            text = text[:high]  # a client's box keeps the first max_length characters
            if required and not text:
                raise ValueError(f"text input {custom_id!r} is required")
            if len(text) < int(component.get("min_length") or 0):
                raise ValueError(
                    f"text input {custom_id!r} needs {component['min_length']}+ characters"
                )
            answered["value"] = text
        elif kind == FILE_UPLOAD:
            files = list(given or [])
            if not all(isinstance(f, AttachmentSpec) for f in files):
                raise TypeError(f"file upload {custom_id!r} takes AttachmentSpecs")
            if required and not files:
                raise ValueError(f"file upload {custom_id!r} is required")
            self._check_count(component, custom_id, len(files), required, default_max=1,
                              what="files")  # fmt: skip
            answered["values"] = [self._attach(f) for f in files]
        elif kind == RADIO_GROUP:
            options = [o["value"] for o in component.get("options", [])]
            default = next(
                (o["value"] for o in component.get("options", []) if o.get("default")), None
            )
            value = default if given is None else given
            if value is not None and value not in options:
                raise ValueError(f"radio group {custom_id!r} has no option {value!r} ({options})")
            if required and value is None:
                raise ValueError(f"radio group {custom_id!r} is required")
            answered["value"] = value
        elif kind == CHECKBOX_GROUP:
            options = [o["value"] for o in component.get("options", [])]
            chosen = (
                [o["value"] for o in component.get("options", []) if o.get("default")]
                if given is None
                else list(given)
            )
            if set(chosen) - set(options) or len(set(chosen)) != len(chosen):
                raise ValueError(
                    f"checkbox group {custom_id!r}: {chosen} is not a choice of {options}"
                )
            self._check_count(component, custom_id, len(chosen), required, default_max=len(options))
            answered["values"] = chosen
        elif kind == CHECKBOX:
            answered["value"] = bool(component.get("default", False) if given is None else given)
        elif kind in SELECTS:
            answered["values"] = list(given or [])
        return answered

    def _check_count(
        self,
        component: JSON,
        custom_id: str,
        count: int,
        required: bool,
        *,
        default_max: int,
        what: str = "choices",
    ) -> None:
        low = component.get("min_values")
        low = (1 if required else 0) if low is None else int(low)
        high = int(default_max if component.get("max_values") is None else component["max_values"])
        if not low <= count <= high:
            raise ValueError(f"{custom_id!r} takes {low} to {high} {what}, not {count}")

    def _attach(self, attachment: AttachmentSpec) -> str:
        url, proxy_url = self._cdn_urls(attachment)
        payload = attachment_payload(
            attachment.id,
            attachment.filename,
            attachment.effective_size,
            attachment.effective_content_type,
            url,
            proxy_url,
            attachment.description,
        )
        payload["ephemeral"] = True  # uploads in an interaction are ephemeral attachments
        self._resolved[str(attachment.id)] = payload
        self.attachments.append(attachment)
        return str(attachment.id)

    def _id(self, component: JSON) -> int:
        """The component's id: the bot's own, else numbered as Discord numbers them."""
        given = component.get("id")
        return int(given) if given else next(self._ids)


def rows_submit(custom_id: str, values: Mapping[str, str]) -> JSON:
    """A submit for a modal the test did not see sent: one text input per action row."""
    rows = [
        {"type": ACTION_ROW, "components": [{"type": TEXT_INPUT, "custom_id": key, "value": value}]}
        for key, value in values.items()
    ]
    return {"custom_id": custom_id, "components": rows}


def _inputs(modal: JSON) -> Iterator[JSON]:
    for component in modal.get("components", []):
        children: Sequence[JSON] = (
            [component["component"]]
            if "component" in component
            else component.get("components", [])
        )
        yield from (c for c in children if "custom_id" in c)
