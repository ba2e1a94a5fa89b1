"""The rules of a resource's pydantic model, checked on its JSON without building the model.

Building the fhir.resources model of a resource runs Python code for every nested element (its
`__init__`, a before-validator over all of its fields, an after-validator), which made it most of
the cost of a write. Yet for a body whose every element is one the model defines, in the shape it
defines, the model's verdict comes down to three things, each read from the model itself: every
primitive value passes its field's own annotated type (run by pydantic-core, the same validator
the model runs), the required fields are present, and no choice (value[x]) has two types.

`fits_model` says True only then. Whatever it cannot account for (an unknown element, a null,
a contained resource, a model with validators of its own) makes it say False, and the caller
builds the model, which names the issues. So it may only say True where the model accepts.
"""
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo

from app.model.registry import model_class

# What every model runs, and what the shape accounts for: nulls in lists (refused here), required fields and choices.
SHARED_VALIDATORS = frozenset({"reject_null_complex_elements", "validate_after_model_construction"})
UNIONS = (typing.Union, types.UnionType)
VALUE_ERRORS = (ValueError, TypeError)  # pydantic's ValidationError is a ValueError, and so are the model's own checks


@dataclass(frozen=True, slots=True)
class Field:
    """One JSON name of a model: a primitive checked by the model's own annotated type, or a nested model."""

    repeats: bool
    check: Callable | None = None  # a primitive's validator, as pydantic-core runs it in the model
    model: type | None = None  # None for a primitive, and for a nested resource (contained), which only the model checks


@dataclass(frozen=True)
class Shape:
    """What a model class accepts, as the fit of a JSON object needs it."""

    fields: dict[str, Field]  # by JSON name
    required: frozenset[str]
    choices: tuple[tuple[frozenset[str], bool], ...]  # the JSON names of each value[x], and whether one is required
    checks: tuple[Callable, ...]  # the model's own before-validators beyond the shared ones, called with the JSON object


def fits_model(type_name: str, body: dict) -> bool:
    """True when the model of `type_name` accepts `body`, known without building it; False when only the model can tell."""
    shape = shape_of(model_class(type_name))
    return shape is not None and fits(shape, body)


def fits(shape: Shape, value: dict) -> bool:
    fields = shape.fields
    for key, item in value.items():
        field = fields.get(key)
        if field is None or item is None:
            return False
        if field.check is None:
            if not fits_nested(field, item):
                return False
            continue
        try:
            field.check(item)
        except VALUE_ERRORS:
            return False
    if not shape.required <= value.keys():
        return False
    return (not shape.choices or one_type_each(shape.choices, value)) and (not shape.checks or passes(shape.checks, value))


def fits_nested(field: Field, item) -> bool:
    shape = shape_of(field.model) if field.model else None
    if shape is None:
        return False
    if field.repeats:
        return isinstance(item, list) and all(isinstance(entry, dict) and fits(shape, entry) for entry in item)
    return isinstance(item, dict) and fits(shape, item)


def one_type_each(choices: tuple[tuple[frozenset[str], bool], ...], value: dict) -> bool:
    """At most one type of each choice element (exactly one of a required one)."""
    for names, required in choices:
        given = len(names & value.keys())
        if given > 1 or (required and not given):
            return False
    return True


def passes(checks: tuple[Callable, ...], value: dict) -> bool:
    try:
        for check in checks:
            check(value)
    except VALUE_ERRORS:
        return False
    return True


@cache
def shape_of(model: type) -> Shape | None:
    """The shape of a model class; None for one whose rules it cannot hold (validators after or around its own)."""
    decorators = model.__pydantic_decorators__
    own = [found for name, found in decorators.model_validators.items() if name not in SHARED_VALIDATORS]
    if decorators.field_validators or any(found.info.mode != "before" for found in own) or model.__init__ is not FHIRAbstractModel.__init__:
        return None
    fields = {info.alias or name: field_of(info, model) for name, info in model.model_fields.items()}
    if model.has_resource_base():  # the model takes (and checks) its resourceType besides its fields
        fields["resourceType"] = Field(False, core_validator(typing.Literal[model.get_resource_type()], ()))
    return Shape(fields, required_names(model), choice_names(model), tuple(found.func for found in own))


def field_of(info: FieldInfo, model: type) -> Field:
    annotation = info.annotation
    nested = fhir_type_in(annotation)
    if nested is None:  # a primitive, or a list of them: its annotation says which
        return Field(False, core_validator(annotation, tuple(model.model_config.items())))
    return Field(is_list(annotation), model=None if issubclass(nested, FhirElementOrResourceBase) else nested.get_model_klass())


def fhir_type_in(annotation) -> type | None:
    """The FHIR complex type an annotation names (CodingType in list[CodingType] | None); None for a primitive."""
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        return annotation
    return next((found for argument in typing.get_args(annotation) if (found := fhir_type_in(argument))), None)


def is_list(annotation) -> bool:
    """True for a list annotation, optional or not (list[CodingType] | None)."""
    origin = typing.get_origin(annotation)
    return origin is list or (origin in UNIONS and any(is_list(argument) for argument in typing.get_args(annotation)))


@cache
def core_validator(annotation, config: tuple) -> Callable:
    """The validator pydantic-core runs for a primitive field: its annotated type under its model's config (as items)."""
    return TypeAdapter(annotation, config=dict(config) or None).validator.validate_python


def required_names(model: type) -> frozenset[str]:
    """The JSON names the model requires: pydantic's required fields, and the required primitives it checks after
    (which R4 lets an extension stand in for: such a body is left to the model). get_required_fields and
    get_one_of_many_fields are instance methods that return constants: the class stands in for an instance."""
    fields = model.model_fields
    required = {info.alias or name for name, info in fields.items() if info.is_required()}
    return frozenset(required | {fields[name].alias or name for name, _ in model.get_required_fields(model)})


def choice_names(model: type) -> tuple[tuple[frozenset[str], bool], ...]:
    fields = model.model_fields
    return tuple((frozenset(fields[name].alias or name for name in names), fields[names[0]].json_schema_extra["one_of_many_required"])
                 for names in model.get_one_of_many_fields(model).values())
