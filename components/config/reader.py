"""The config reader: typed access to the stack's keys, and `ConfigError`, the one error a bad
value raises (a `pulumi.RunError`, so `pulumi preview` stops with the message and no stack trace).

Every key lives in the `prefect-ecs-worker:` namespace and is declared, with its default, in
`Pulumi.yaml` and nowhere else: the CLI merges those defaults under the stack file before the program
starts, so a key the program reads always carries a value (an empty string, `[]` or `0` where
Pulumi.yaml says "unset"). The message names the key, shows the value (never a secret's) and says
what is accepted.
"""

from __future__ import annotations

import json
from typing import Any, Optional, get_args

import pulumi

# The project's name: the config namespace, and the package of the components' type tokens.
NAMESPACE = "prefect-ecs-worker"


class ConfigError(pulumi.RunError):
    """A configuration value that the stack refuses; raised before any resource exists."""

    def __init__(self, key: str, value: Any, accepted: str, *, secret: bool = False):
        shown = "[secret]" if secret else json.dumps(value)
        self.key = f"{NAMESPACE}:{key}"
        super().__init__(f"{self.key} = {shown} is not valid: {accepted}")



class Reader:
    """Typed access to plain config values, each failure a `ConfigError` naming the key.

    A key's default is Pulumi.yaml's alone: the reader takes none. `optional` is for keys whose
    default is "" (unset); every other read needs the key present, as the CLI guarantees.
    """

    def __init__(self, config: pulumi.Config):
        self._config = config

    def optional(self, key: str) -> Optional[str]:
        """The value, or None where it is unset (empty, or absent)."""
        value = self._config.get(key)
        return None if value is None or value == "" else value

    def required(self, key: str) -> str:
        value = self.optional(key)
        if value is None:
            raise ConfigError(
                key, None, f"it is required: pulumi config set {key} <value>"
            )
        return value

    def string(self, key: str) -> str:
        """A key Pulumi.yaml gives a default: absent only when the program runs without the CLI."""
        value = self._config.get(key)
        if value is None:
            raise ConfigError(key, None, "a value; Pulumi.yaml declares its default, which the CLI "
                              "merges under the stack file")
        return value

    def integer(self, key: str, *, minimum: Optional[int] = None,
                maximum: Optional[int] = None) -> int:
        raw = self.string(key)
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(key, raw, "a whole number") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ConfigError(key, value, f"a whole number from {minimum} to {maximum}")
        return value

    def choice(self, key: str, accepted: Any) -> Any:
        """One of the values of the `Literal` type `accepted`."""
        values = get_args(accepted)
        value = self.string(key)
        if value not in values:
            raise ConfigError(key, value, "one of " + ", ".join(values))
        return value

    def boolean(self, key: str) -> bool:
        raw = self.string(key)
        if raw.lower() not in ("true", "false"):
            raise ConfigError(key, raw, "true or false")
        return raw.lower() == "true"

    def choice_int(self, key: str, accepted: tuple[int, ...]) -> int:
        value = self.integer(key)
        if value not in accepted:
            raise ConfigError(key, value, "one of " + ", ".join(map(str, accepted)))
        return value

    def _json(self, key: str, kind: type, description: str) -> Any:
        raw = self.optional(key)
        if raw is None:
            return kind()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(key, raw, description) from None
        if not isinstance(value, kind):
            raise ConfigError(key, value, description)
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        description = "a list of strings, e.g. pulumi config set --path '" + key + "[0]' value"
        value = self._json(key, list, description)
        if not all(isinstance(item, str) and item for item in value):
            raise ConfigError(key, value, description)
        return tuple(value)
