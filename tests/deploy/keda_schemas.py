"""JSON schemas for the two KEDA kinds deploy/k8s uses, which the Kubernetes schemas do not cover.

Written here (not downloaded) from KEDA 2.x's CustomResourceDefinitions (kedacore/keda,
config/crd/bases/keda.sh_scaledobjects.yaml and keda.sh_triggerauthentications.yaml) and the redis
scaler's documented parameters (keda.sh/docs/2.x/scalers/redis-lists). Strict like the Kubernetes
"-strict" schemas: an unknown field fails. Fields genq does not use are typed, not described.
"""

from __future__ import annotations

from typing import Any

INT32: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
DIGITS: dict[str, Any] = {"type": "string", "pattern": "^[0-9]+$"}
REDIS_PARAMETERS = (
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "username",
    "usernameFromEnv",
    "passwordFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "databaseIndex",
    "enableTLS",
    "unsafeSsl",
)
REDIS_AUTH_PARAMETERS = ("address", "host", "port", "username", "password", "tls", "ca", "cert", "key")


def _strict(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


METADATA = _strict(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "name",
)

REDIS_TRIGGER = {
    "if": {"properties": {"type": {"const": "redis"}}},
    "then": {
        "properties": {
            "metadata": {
                "propertyNames": {"enum": list(REDIS_PARAMETERS)},
                "required": ["listName"],
                "properties": {"listLength": DIGITS, "activationListLength": DIGITS, "databaseIndex": DIGITS},
            }
        }
    },
}

TRIGGER = {
    **_strict(
        {
            "type": {"type": "string", "minLength": 1},
            "name": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "authenticationRef": _strict(
                {
                    "name": {"type": "string"},
                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                },
                "name",
            ),
            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
            "useCachedMetrics": {"type": "boolean"},
        },
        "type",
        "metadata",
    ),
    **REDIS_TRIGGER,
}

SCALED_OBJECT = _strict(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": _strict(
            {
                "scaleTargetRef": _strict(
                    {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                    "name",
                ),
                "pollingInterval": INT32,
                "cooldownPeriod": INT32,
                "initialCooldownPeriod": INT32,
                "idleReplicaCount": INT32,
                "minReplicaCount": INT32,
                "maxReplicaCount": INT32,
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
            },
            "scaleTargetRef",
            "triggers",
        ),
    },
    "apiVersion",
    "kind",
    "metadata",
    "spec",
)

TRIGGER_AUTHENTICATION = _strict(
    {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA,
        "spec": _strict(
            {
                "secretTargetRef": {
                    "type": "array",
                    "items": _strict(
                        {
                            "parameter": {"enum": list(REDIS_AUTH_PARAMETERS)},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                        "parameter",
                        "name",
                        "key",
                    ),
                },
                "env": {"type": "array"},
                "configMapTargetRef": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
                "azureKeyVault": {"type": "object"},
                "awsSecretManager": {"type": "object"},
                "gcpSecretManager": {"type": "object"},
                "boundServiceAccountToken": {"type": "array"},
            }
        ),
    },
    "apiVersion",
    "kind",
    "metadata",
    "spec",
)

SCHEMAS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}
