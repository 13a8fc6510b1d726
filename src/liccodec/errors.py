"""One exception hierarchy; each class maps to one documented exit code of ``lic``."""
from __future__ import annotations


class LicError(Exception):
    """Base class of every error liccodec raises on purpose."""

    exit_code = 1


class UsageError(LicError):
    """Bad arguments (quality out of range, unknown option value)."""

    exit_code = 2


class InputImageError(LicError):
    """The input image cannot be read or is not supported."""

    exit_code = 3


class FormatError(LicError):
    """A .lic file is malformed: wrong magic, bad header, declared sizes over the limits."""

    exit_code = 4


class VersionError(FormatError):
    """A .lic file has a format major version this reader does not know."""

    exit_code = 5


class ChecksumError(FormatError):
    """The checksum does not match, or the file is truncated or has trailing bytes."""

    exit_code = 6


class ModelError(LicError):
    """Unknown model id, missing weights, or weights whose digest does not match."""

    exit_code = 7


class TargetError(LicError):
    """A rate/quality target (``--target-size`` ...) cannot be met."""

    exit_code = 8


class BatchError(LicError):
    """One or more files of a folder conversion failed (the others were written)."""

    exit_code = 9


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error",
    UsageError.exit_code: "usage error (bad option value, output exists or cannot be written, image over the pixel limit)",
    InputImageError.exit_code: "input image unreadable or unsupported",
    FormatError.exit_code: "malformed .lic file",
    VersionError.exit_code: "unsupported .lic format version",
    ChecksumError.exit_code: "corrupted .lic file (checksum, truncation, trailing data)",
    ModelError.exit_code: "unknown model, missing weights or weights digest mismatch",
    TargetError.exit_code: "target cannot be met",
    BatchError.exit_code: "some files of a folder conversion failed",
}
