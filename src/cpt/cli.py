"""`cpt <verb>`: every workflow step, usable without Snakemake.

Sub-commands live next to their logic (each module exposes a click command named in COMMANDS); they are
imported only when called, so `cpt --help` stays fast and a broken optional dependency of one verb does not
break the others.
"""

from __future__ import annotations

import functools
import importlib
import sys

import click

# verb -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "build-corpus": "cpt.corpus:cli_build_corpus",
    "split-corpus": "cpt.corpus:cli_split_corpus",
    "validate-records": "cpt.records:cli_validate",
    "base-tokenizer": "cpt.tokenizer.cli:cli_base_tokenizer",
    "select-pieces": "cpt.tokenizer.cli:cli_select_pieces",
    "extend-tokenizer": "cpt.tokenizer.cli:cli_extend_tokenizer",
    "compression": "cpt.tokenizer.cli:cli_compression",
    "base-model": "cpt.model.cli:cli_base_model",
    "init-embeddings": "cpt.model.cli:cli_init_embeddings",
    "prepare-pretrain": "cpt.dataset.cli:cli_prepare_pretrain",
    "prepare-sft": "cpt.dataset.cli:cli_prepare_sft",
    "train": "cpt.train.cli:cli_train",
    "evaluate": "cpt.evaluate.cli:cli_evaluate",
    "bpb": "cpt.evaluate.cli:cli_bpb",
    "generate": "cpt.evaluate.cli:cli_generate",
    "idioms-set": "cpt.evaluate.cli:cli_idioms",
    "clean": "cpt.clean:cli_clean",
    "report": "cpt.report:cli_report",
}

# verb -> the parameters naming what it writes: each is locked for the verb's run (a second writer gets one clear
# error) and given umask modes afterwards (cpt.locks.writing). tests/unit/test_locks.py checks every verb.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "build-corpus": ("out", "sft_out"),
    "split-corpus": ("out",),
    "validate-records": (),
    "base-tokenizer": ("out",),
    "select-pieces": ("out_dir",),
    "extend-tokenizer": ("out",),
    "compression": ("out",),
    "base-model": ("out_dir",),
    "init-embeddings": ("out_dir",),
    "prepare-pretrain": ("data_output_dirs", "cache_dir"),
    "prepare-sft": ("data_output_dirs", "cache_dir"),
    "train": ("output",),
    "evaluate": ("out_dir",),
    "bpb": ("out_path",),
    "generate": (),
    "idioms-set": ("out_dir",),
    "clean": ("out_dir", "work_dirs"),
    "report": ("out_dir",),
}


def parse_pairs(items, option: str, expected: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated `--option KEY=VALUE` values -> dict; a value without '=' is a usage error naming the option."""
    out = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected {expected}", param_hint=option)
        key, value = item.split("=", 1)
        out[key] = value
    return out


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def format_commands(self, ctx, formatter):
        # list verbs without importing their modules (torch, transformers ... are slow to import)
        rows = [(name, COMMANDS[name].split(":")[0]) for name in self.list_commands(ctx)]
        with formatter.section("Commands (see `cpt <verb> --help`)"):
            formatter.write_dl(rows)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise click.ClickException(f"`cpt {name}` is not available: module {module_name} is missing") from exc
            raise
        return _with_output_locks(name, getattr(module, attr))


def output_paths(verb: str, params: dict) -> list[str]:
    """The paths a verb writes, from its parsed parameters (cpt.cli.OUTPUTS)."""
    paths = []
    for key in OUTPUTS.get(verb, ()):
        value = params.get(key)
        if value is None:
            continue
        paths.extend(str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return paths


def _with_output_locks(verb: str, command: click.Command) -> click.Command:
    """Run the command's callback inside cpt.locks.writing(its outputs); done once per command object."""
    if getattr(command, "_cpt_locked", False) or command.callback is None:
        return command
    callback = command.callback

    @functools.wraps(callback)
    def locked(*args, **kwargs):
        from cpt.locks import writing

        with writing(output_paths(verb, kwargs)):
            return callback(*args, **kwargs)

    command.callback = locked
    command._cpt_locked = True
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cpt")
def cli():
    """Colossal-LLaMA-2 continual pre-training recipe (see README.md)."""


EXIT_ERROR = 2  # every error of the library (CptError): one message naming file:line / config key / path


def main(argv=None):
    from cpt.errors import CptError, describe

    try:
        return cli.main(args=argv, prog_name="cpt", standalone_mode=False)
    except CptError as exc:
        click.echo(f"error: {describe(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)


if __name__ == "__main__":
    main()
