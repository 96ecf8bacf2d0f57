"""Options shared by the verbs of every box: `--config FILE` (validated by cpt.core.config, with the schema's
defaults), `--set KEY=VALUE` (one config key, parsed with the schema's types) and `--print-config` (the resolved
settings the verb would run with, as YAML, then exit). A box's verbs (cpt.<box>.cli) use these; the command line
(cpt.cli) assembles the verbs.
"""

from __future__ import annotations

import click


def config_options(section: str, example: str, config_help: str = "", set_help: str = ""):
    """--config / --set / --print-config for a verb whose settings are the config section `section` (click
    parameters config_file, overrides, print_config)."""
    def deco(f):
        f = click.option("--print-config", "print_config", is_flag=True,
                         help="Print the resolved settings (config + --set + schema defaults) as YAML and exit.")(f)
        f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                         help=set_help or f"Override one config key, e.g. --set {example} (`{section}.` may be "
                                          f"left out; the value is parsed with the schema's type). Keys and "
                                          f"defaults: workflow/schemas/{section}.schema.yaml.")(f)
        f = click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
                         help=config_help or "Experiment config YAML (validated, with the schema's defaults).")(f)
        return f
    return deco


def resolve_config(config_file, overrides, section: str) -> dict | None:
    """The experiment config of --config with --set applied, validated (None without --config)."""
    from cpt.core.config import load

    return load(config_file, overrides, prefix=section) if config_file else None


def show_config(settings) -> None:
    """--print-config: the resolved settings as YAML on stdout, then exit 0."""
    import yaml

    click.echo(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, default_flow_style=False), nl=False)
    raise click.exceptions.Exit(0)


def require(**options) -> None:
    """Options that are required unless --print-config is given: {"--name": value}."""
    missing = [name for name, value in options.items() if value in (None, "", ())]
    if missing:
        raise click.UsageError(f"Missing option{'s' if len(missing) > 1 else ''} {', '.join(missing)}.")


def read_section(config_file, section: str) -> dict:
    """The `section` settings in --config: a whole experiment config (validated as a whole, its `section` taken)
    or a file that holds the section alone (its keys as they are; the step completes them with the schema's
    defaults). {} without a file. The one way a verb that takes one section reads --config."""
    if not config_file:
        return {}
    from cpt.core.config import read, validate

    data = read(config_file)
    if "experiment" in data:
        return dict(validate(data, source=str(config_file))[section])
    return dict(data.get(section, data))
