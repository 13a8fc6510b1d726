"""``lic``: encode, decode, inspect, train and evaluate learned image codecs."""
from __future__ import annotations

import os
import sys
import warnings

import click

from liccodec import __version__
from liccodec.errors import EXIT_CODES, LicError


def _exit_code_help() -> str:
    return "\b\nExit codes:\n" + "\n".join(f"  {c}  {t}" for c, t in sorted(EXIT_CODES.items()))


class LicGroup(click.Group):
    """Turns every error into one line on stderr and a documented exit code (no traceback)."""

    def invoke(self, ctx: click.Context):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")
        try:
            return super().invoke(ctx)
        except LicError as e:
            click.echo(f"lic: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("lic: interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # noqa: BLE001 - the CLI promises no tracebacks
            if os.environ.get("LICCODEC_DEBUG"):
                raise
            click.echo(f"lic: internal error: {type(e).__name__}: {e} "
                       "(set LICCODEC_DEBUG=1 for a traceback)", err=True)
            ctx.exit(1)


@click.group(cls=LicGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=_exit_code_help())
@click.version_option(__version__, prog_name="lic")
def main() -> None:
    """liccodec: a learned image codec.

    \b
    lic encode photo.png              -> photo.lic
    lic decode photo.lic -o out.png   -> out.png
    lic info photo.lic                header without decoding
    lic models                        shipped models and their quality ranges
    """
    if sys.platform != "win32":  # `lic info x.lic | head` ends quietly
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def run() -> None:  # pragma: no cover - console entry point
    main(prog_name="lic")


from liccodec.cli import codec as _codec  # noqa: E402,F401  (registers subcommands)
from liccodec.cli import train as _train  # noqa: E402,F401
from liccodec.cli import eval as _eval  # noqa: E402,F401
from liccodec.cli import bench as _bench  # noqa: E402,F401
from liccodec.cli import perceptual as _perceptual  # noqa: E402,F401
