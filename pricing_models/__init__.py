"""Pricing models: plugins behind one small interface and a registry.

A plan in the configuration lists models by name with their parameters;
`billing.pricing` applies them in order. The built-in models register
themselves with `@register("name")` in the modules imported here; another
package offers a model through the entry-point group
"hub_billing.pricing_models", loaded only when a plan names it. A plan never
names a module or class. See README.md, "Adding a pricing model".
"""
from __future__ import annotations

from pydantic import ValidationError

from pricing_models import cloud, discount, fees, minimum, subsidy, usage  # noqa: F401  (registers the built-in models)
from pricing_models.base import (ENTRY_POINT_GROUP, Charge, CloudCost, PricingContext, PricingModel, known_models,
                                 model_class, register)


def build_model(name: str, params: dict) -> PricingModel:
    cls = model_class(name)
    return cls(cls.Params.model_validate(params))


def validate_plan(plan) -> list[str]:
    """Problems with a plan's models and parameters, as 'charges[i]...: message' strings."""
    problems = []
    for i, spec in enumerate(plan.charges):
        try:
            build_model(spec.model, spec.params)
        except KeyError as err:
            problems.append(f"charges[{i}].model: {err.args[0]}")
        except ValidationError as err:
            for e in err.errors():
                loc = "".join(f".{p}" for p in e["loc"])
                value = e.get("input")
                shown = "" if isinstance(value, (dict, list)) else f" (got {value!r})"
                problems.append(f"charges[{i}] ({spec.model}){loc}: {e['msg'].removeprefix('Value error, ')}{shown}")
        except ValueError as err:
            problems.append(f"charges[{i}] ({spec.model}): {err}")
    return problems


__all__ = ["ENTRY_POINT_GROUP", "Charge", "CloudCost", "PricingContext", "PricingModel", "build_model", "known_models",
           "model_class", "register", "validate_plan"]
