"""`cpt <verb>`: every workflow step, usable without Snakemake.

Sub-commands live next to their logic (each module exposes a click command named in COMMANDS); they are
imported only when called, so `cpt --help` stays fast (it lists each verb's one line from COMMANDS) and a broken
optional dependency of one verb does not break the others.

Verbs that read an experiment config share `config_options`: `--config FILE` (validated by cpt.core.config, with the
schema's defaults), `--set KEY=VALUE` (one config key, parsed with the schema's types) and `--print-config` (the
resolved settings the verb would run with, as YAML, then exit).
"""

from __future__ import annotations

import functools
import importlib
import sys

import click

# verb -> ("module:attribute" of a click.Command, what it does in one line)
COMMANDS: dict[str, tuple[str, str]] = {
    "build-corpus": ("cpt.corpus.cli:cli_build_corpus", "raw corpus jsonl per category (+ idiom SFT data)"),
    "split-corpus": ("cpt.corpus.cli:cli_split_corpus", "seeded train / held-out split of each category"),
    "validate-records": ("cpt.corpus.cli:cli_validate", "check jsonl files against the pretraining or SFT schema"),
    "clean": ("cpt.clean.cli:cli_clean", "normalise, filter, deduplicate and score corpus jsonl; write a report"),
    "base-tokenizer": ("cpt.tokenizer.cli:cli_base_tokenizer", "the LLaMA-2 tokenizer as a verified HF directory"),
    "select-pieces": ("cpt.tokenizer.cli:cli_select_pieces", "candidate pieces -> filtered, ranked pieces.jsonl"),
    "extend-tokenizer": ("cpt.tokenizer.cli:cli_extend_tokenizer", "append pieces and save the extended tokenizer"),
    "compression": ("cpt.tokenizer.cli:cli_compression", "tokens per character, base vs extended tokenizer"),
    "base-model": ("cpt.model.cli:cli_base_model", "a tiny seeded LLaMA, or a checked link to a local one"),
    "init-embeddings": ("cpt.model.cli:cli_init_embeddings", "extend a LLaMA's embeddings to a new tokenizer"),
    "prepare-pretrain": ("cpt.dataset.cli:cli_prepare_pretrain", "tokenize jsonl into ordered buckets of packed "
                                                                 "sequences"),
    "prepare-sft": ("cpt.dataset.cli:cli_prepare_sft", "tokenize conversations with a template (loss on replies)"),
    "train": ("cpt.train.cli:cli_train", "train one stage with ColossalAI's Booster (resumable)"),
    "evaluate": ("cpt.evaluate.cli:cli_evaluate", "score benchmarks by first-token logits"),
    "bpb": ("cpt.evaluate.cli:cli_bpb", "bits per byte of a model on held-out text"),
    "generate": ("cpt.evaluate.cli:cli_generate", "continue a prompt with a model directory"),
    "idioms-set": ("cpt.evaluate.cli:cli_idioms", "build the Chinese idiom multiple-choice set"),
    "report": ("cpt.report.cli:cli_report", "tables, plots and summary.md of one experiment"),
    "model-card": ("cpt.report.cli:cli_model_card", "rewrite a final/'s model card with its evaluation and cost"),
    "export-gguf": ("cpt.model.cli:cli_export_gguf", "a model directory as a GGUF llama.cpp loads (both "
                                                     "tokenizer families)"),
    "smoke-inputs": ("cpt.workflow.smoke:cli_smoke_inputs", "tiny LLaMA-2 + small real corpus for a locked config's CPU "
                                                   "smoke run"),
}

# verb -> the parameters naming what it writes: each is locked for the verb's run (a second writer gets one clear
# error) and given umask modes afterwards (cpt.core.locks.writing). tests/unit/test_locks.py checks every verb.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "build-corpus": ("out", "sft_out"),
    "split-corpus": ("out",),
    "validate-records": (),
    "clean": ("out_dir", "work_dirs"),
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
    "report": ("out_dir",),
    "model-card": ("final",),
    "export-gguf": ("out",),
    "smoke-inputs": (),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)  # in recipe order

    def format_commands(self, ctx, formatter):
        # one line per verb without importing its module (torch, transformers ... are slow to import)
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands (see `cpt <verb> --help`)"):
            formatter.write_dl(rows)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
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
    """Run the command's callback inside cpt.core.locks.writing(its outputs); done once per command object."""
    if getattr(command, "_cpt_locked", False) or command.callback is None:
        return command
    callback = command.callback

    @functools.wraps(callback)
    def locked(*args, **kwargs):
        from cpt.core.locks import writing

        with writing(output_paths(verb, kwargs)):
            return callback(*args, **kwargs)

    command.callback = locked
    command._cpt_locked = True
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cpt")
def cli():
    """Colossal-LLaMA-2 continual pre-training recipe: each workflow step as a verb (see README.md)."""


EXIT_ERROR = 2  # every error of the library (CptError): one message naming file:line / config key / path


def main(argv=None):
    from cpt.core.errors import CptError, describe

    try:
        return cli.main(args=argv, prog_name="cpt", standalone_mode=False)
    except CptError as exc:
        click.echo(f"error: {describe(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)


if __name__ == "__main__":
    main()
