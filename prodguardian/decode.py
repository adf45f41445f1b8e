"""LogEntry JSON decoded into typed structs of only the fields the pipeline reads.

Entries are decoded straight into these structs: only the fields the pipeline reads are built, everything
else in an entry is skipped unread, and attribute access beats dict lookups in the extraction loop. Each
nested struct sits in a union with every other JSON value, so a field of an unexpected type never fails a
decode. Entries from elsewhere (the live source, a list in a test) are converted to the same structs.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

NOT_AN_OBJECT = str | int | float | bool | list[Any] | None


class Labels(msgspec.Struct, gc=False):
    """Labels of the resource (service, revision, region, project) or of the entry (instance)."""

    service_name: Any = None
    revision_name: Any = None
    location: Any = None
    project_id: Any = None
    instanceId: Any = None  # the API's name


class Resource(msgspec.Struct, gc=False):
    type: Any = None
    labels: Labels | NOT_AN_OBJECT = None


class Status(msgspec.Struct, gc=False):
    message: Any = None


class ProtoPayload(msgspec.Struct, gc=False, rename="camel"):
    """An audit log's payload: the status message (a revision not ready...) and the resource it is about
    (`namespaces/P/revisions/R`, `projects/P/locations/L/services/S/revisions/R`)."""

    status: Status | NOT_AN_OBJECT = None
    resource_name: Any = None


class HttpRequest(msgspec.Struct, gc=False, rename="camel"):
    request_method: Any = None
    request_url: Any = None
    status: Any = None
    latency: Any = None
    protocol: Any = None
    user_agent: Any = None


class LogEntry(msgspec.Struct, gc=False, rename="camel"):
    """The fields of a LogEntry that the pipeline reads."""

    timestamp: Any = None
    insert_id: Any = None
    log_name: Any = None
    severity: Any = None
    text_payload: Any = None
    json_payload: Any = None
    proto_payload: ProtoPayload | NOT_AN_OBJECT = None
    error_groups: Any = None
    trace: Any = None
    source_location: Any = None
    resource: Resource | NOT_AN_OBJECT = None
    labels: Labels | NOT_AN_OBJECT = None
    http_request: HttpRequest | NOT_AN_OBJECT = None


NO_LABELS = Labels()
_ENTRIES = list[LogEntry | NOT_AN_OBJECT]
_DECODER = msgspec.json.Decoder(_ENTRIES | LogEntry | str | int | float | bool | None)


def decode_entries(data: bytes | memoryview) -> Any:
    """A JSON array of entries, or one entry, decoded into `LogEntry` structs (a `source.Decode`).

    What msgspec refuses (a number out of its range, malformed JSON) orjson decodes into dicts, which
    `as_entries` converts, or rejects with the exact error the reader reports.
    """
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return orjson.loads(data)


def as_entries(batch: list[Any]) -> list[Any]:
    """The batch as `LogEntry` structs (dicts converted, structs as they are; anything else left as is)."""
    try:
        return msgspec.convert(batch, _ENTRIES)
    except msgspec.ValidationError:
        return [_as_entry(entry) for entry in batch]


def _as_entry(entry: Any) -> Any:
    try:
        return msgspec.convert(entry, LogEntry | NOT_AN_OBJECT)
    except msgspec.ValidationError:  # a value msgspec cannot hold (a huge number): not a usable entry
        return None
