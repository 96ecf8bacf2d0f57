"""`cpt <verb>`: every workflow step, usable without Snakemake.

Sub-commands live next to their logic (each module exposes a click command named in COMMANDS); they are
imported only when called, so `cpt --help` stays fast and a broken optional dependency of one verb does not
break the others.
"""

from __future__ import annotations

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
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cpt")
def cli():
    """Colossal-LLaMA-2 continual pre-training recipe (see README.md)."""


def main(argv=None):
    from cpt.errors import CptError

    try:
        return cli.main(args=argv, prog_name="cpt", standalone_mode=False)
    except CptError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)


if __name__ == "__main__":
    main()
