"""The decbench CLI: mounts one module per command; errors map to exit codes in main()."""

from __future__ import annotations

import sys

import click
import typer

from decbench.cli import (
    calibrate,
    compare,
    distill,
    generate,
    methods,
    models,
    profile_cmd,
    profiles,
    quantize,
    speed_report,
    suites,
)
from decbench.cli.output import Output
from decbench.errors import DecbenchError

app = typer.Typer(
    name="decbench",
    help="A workbench for LLM decoding methods: which is fastest on your model, at what cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(generate.generate)
app.command()(methods.methods)
app.command()(quantize.quantize)
app.command()(distill.distill)
app.add_typer(models.app, name="models")
app.add_typer(profiles.app, name="profiles")
app.command()(compare.compare)
app.command("profile")(profile_cmd.profile)
app.command("speed-report")(speed_report.speed_report)
app.command("calibrate-entropy")(calibrate.calibrate_entropy_cmd)
app.add_typer(suites.app, name="suites")

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def main() -> None:
    """Console entry point: one catch, one mapping from error class to exit code."""
    out = Output()
    try:
        # Without standalone mode Typer returns exit codes instead of exiting; it turns Ctrl-C
        # into 130 itself.
        code = app(standalone_mode=False)
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except DecbenchError as e:
        if _state["debug"]:
            raise
        out.error(str(e))
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        out.error("interrupted")
        sys.exit(130)
    except KeyboardInterrupt:
        out.error("interrupted")
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(2 if isinstance(e, click.UsageError) else e.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as e:
        if _state["debug"]:
            raise
        out.error(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        sys.exit(1)
