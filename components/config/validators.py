"""Validators more than one concern's keys share: Fargate's task sizes, CloudWatch Logs' retention
values and the image-pinning rule."""

from __future__ import annotations

import re

from components.config.reader import ConfigError
# The image-pinning rule is the policy pack's (stdlib only, so the program can import it).
from policies.worker_rules import image_is_pinned, image_tag

# Fargate's valid task sizes (Linux, platform 1.4.0): CPU units -> allowed memory in MiB.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

# The values CloudWatch Logs accepts for retentionInDays (0, "never expire", is refused on purpose).
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

# [registry[:port]/]repository[:tag][@sha256:digest]
IMAGE_NAME = re.compile(r"^([a-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_image(image: str, key: str) -> str:
    """Pinned means a digest, or a tag that does not say latest: those (latest, 3-latest, ...) move
    under a running service."""
    accepted = ("an image pinned by tag or digest, e.g. <repository>:<version> or "
                "<repository>@sha256:<digest>, not a tag containing 'latest'")
    repository, tag, digest = image_tag(image)
    well_formed = (
        IMAGE_NAME.match(repository)
        and (tag is None or IMAGE_TAG.match(tag))
        and (not digest or IMAGE_DIGEST.match(digest))
    )
    if not well_formed or not image_is_pinned(image):
        raise ConfigError(key, image, accepted)
    return image


def check_fargate_size(cpu: int, memory: int, cpu_key: str = "workerCpu",
                        memory_key: str = "workerMemory") -> None:
    if cpu not in FARGATE_SIZES:
        raise ConfigError(cpu_key, cpu, "one of Fargate's CPU sizes: "
                          + ", ".join(map(str, FARGATE_SIZES)))
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        raise ConfigError(
            memory_key, memory,
            f"with {cpu_key} {cpu}, Fargate accepts {allowed[0]}..{allowed[-1]} MiB in steps of "
            f"{allowed[1] - allowed[0]}: " + ", ".join(map(str, allowed)),
        )
