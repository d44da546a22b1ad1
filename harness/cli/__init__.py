"""The `harness` command line: parse arguments, call one stage, print the result.

Heavy libraries (datasets, matplotlib, scipy, llama_cpp, openai) are imported inside the
commands that need them, so `harness --help` and light commands start fast.
"""

from __future__ import annotations

import sys

import click

from harness.cli.common import echo_err
from harness.errors import HarnessError


class LazyGroup(click.Group):
    """A click group whose commands live in their own modules, imported only when named (or listed by --help).

    Add a command: write it in its own module under harness/cli/ and name it in COMMANDS.
    """

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        import importlib

        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


# command name -> "module:click command"
COMMANDS = {
    "check": "harness.cli.check:check",
    "compare": "harness.cli.compare:compare",
    "export": "harness.cli.report:export",
    "grade": "harness.cli.suites:grade",
    "import": "harness.cli.traffic:import_",
    "labels": "harness.cli.traffic:labels",
    "pairwise": "harness.cli.traffic:pairwise",
    "load": "harness.cli.load:load",
    "recommend": "harness.cli.recommend:recommend",
    "report": "harness.cli.report:report",
    "run": "harness.cli.run:run",
    "runs": "harness.cli.runs:runs",
    "schedule": "harness.cli.schedule:schedule",
    "suites": "harness.cli.suites:suites",
}


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="harness", prog_name="harness")
def cli():
    """Evaluate LLMs on your workload: quality with 95% CIs, cost, latency and availability.

    \b
    Quick start:
      harness run                          # embedded model on every bundled suite
      harness run evals/weekly.yaml        # your models through an OpenAI-compatible gateway
      harness report                       # HTML report of the latest run
      harness compare                      # which model wins, and is it significant?
    """


def main() -> None:
    from harness.errors import install_log_redaction

    install_log_redaction()
    try:
        cli.main(standalone_mode=False)
    except HarnessError as exc:
        echo_err(f"error: {exc}")
        sys.exit(2)
    except click.exceptions.Abort:
        echo_err("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
